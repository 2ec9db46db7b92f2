"""Synthetic sweeps with planted effects, to check that the analysis finds what
is there and only that.

Factors of :func:`make_sweep` (all drawn uniformly over their declared range,
log-uniformly for the log-scale one, seeded):

================  ===========================  =====================================
factor            spec                          planted effect on the success logit
================  ===========================  =====================================
``mass``          continuous [0.5, 2.0]         monotone: heavier fails more
``friction``      continuous log [0.01, 1.0]    non-monotone: best in the middle
``object``        categorical cube/can/mug      ``can`` is harder
``light``         continuous [0, 2000]          none
``camera_height`` continuous [0.8, 1.6]         none
``background``    categorical plain/checker     none
``wind``, ``tilt`` continuous (``interaction``)  a pure saddle: no main effect at all
================  ===========================  =====================================

``effect=0`` makes every factor irrelevant (a null dataset).

Example:
    >>> sweep = make_sweep(n=200, seed=3)
    >>> len(sweep.records), sorted(sweep.planted)
    (200, ['friction', 'mass', 'object'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.special import expit

from trialrun.runfiles import EPISODES_FILE, EpisodeLogWriter, RunLayout, write_json_atomic
from trialrun.runfiles.schema import (
    EpisodeRecord,
    FactorSpec,
    FactorValue,
    JobManifest,
    Manifest,
)

#: Success logit at the design's centre (about a 60% base rate).
BASE_LOGIT = 0.4
#: Episode time limit of the synthetic task.
MAX_STEPS = 200

_OBJECT_LOGIT = {"cube": 0.5, "can": -0.9, "mug": 0.4}


@dataclass
class SyntheticSweep:
    """Records and factor specs of one synthetic sweep, plus the truth."""

    records: list[EpisodeRecord]
    specs: list[FactorSpec]
    planted: dict[str, str] = field(default_factory=dict)
    irrelevant: list[str] = field(default_factory=list)
    interacting: tuple[str, str] | None = None
    job: str = "synthetic"

    def as_inputs(self) -> tuple[list[EpisodeRecord], list[FactorSpec]]:
        """``(records, specs)``, the two inputs of the analysis."""
        return self.records, self.specs

    def factors_yaml(self) -> str:
        """The specs in the factors-YAML format of ``analyze_records``."""
        out: dict[str, dict[str, object]] = {}
        for s in self.specs:
            if s.kind == "continuous":
                entry: dict[str, object] = {"type": "continuous", "range": [s.low, s.high]}
                if s.scale == "log":
                    entry["scale"] = "log"
            else:
                entry = {"type": "categorical", "choices": list(s.values or [])}
            out[s.name] = entry
        return str(yaml.safe_dump({"factors": out}, sort_keys=False))

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``episodes.jsonl`` and ``factors.yaml`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        episodes = directory / EPISODES_FILE
        with EpisodeLogWriter(episodes) as w:
            for r in self.records:
                w.append(r)
        factors = directory / "factors.yaml"
        factors.write_text(self.factors_yaml(), encoding="utf-8")
        return episodes, factors

    def write_run(self, run_dir: Path, extra_jobs: dict[str, SyntheticSweep] | None = None) -> Path:
        """Write a minimal run directory (manifest + episode log), as a real run
        would leave it, holding this sweep's job and any ``extra_jobs``."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        sweeps = {self.job: self, **(extra_jobs or {})}
        jobs = {
            name: JobManifest(
                name=name,
                status="completed",
                planned=len(s.records),
                completed=len(s.records),
                factors=s.specs,
            )
            for name, s in sweeps.items()
        }
        manifest = Manifest(
            run="synthetic",
            seed=0,
            config={"synthetic": True},
            started_at="2026-01-01T00:00:00Z",
            ended_at="2026-01-01T00:01:00Z",
            jobs=jobs,
        )
        write_json_atomic(RunLayout(run_dir).manifest, manifest.model_dump(mode="json", by_alias=True))
        with EpisodeLogWriter(run_dir / EPISODES_FILE) as w:
            for name, s in sweeps.items():
                for r in s.records:
                    w.append(r.model_copy(update={"job": name}))
        return run_dir


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=n)


def make_sweep(
    n: int = 1000,
    seed: int = 0,
    *,
    effect: float = 1.0,
    interaction: float = 0.0,
    job: str = "synthetic",
) -> SyntheticSweep:
    """A seeded synthetic sweep of ``n`` episodes.

    Args:
        n: number of episodes.
        seed: seed of every draw (``numpy.random.default_rng``).
        effect: multiplier of the planted main effects (0 gives a null dataset).
        interaction: strength of a pure ``wind`` x ``tilt`` interaction; when
            non-zero those two factors are added (with no main effect).
        job: job name in the records.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E]))
    u: dict[str, np.ndarray] = {}
    specs = [
        FactorSpec(name="mass", kind="continuous", low=0.5, high=2.0, units="kg"),
        FactorSpec(name="friction", kind="continuous", low=0.01, high=1.0, scale="log"),
        FactorSpec(name="object", kind="categorical", values=["cube", "can", "mug"]),
        FactorSpec(name="light", kind="continuous", low=0.0, high=2000.0, units="lux"),
        FactorSpec(name="camera_height", kind="continuous", low=0.8, high=1.6, units="m"),
        FactorSpec(name="background", kind="categorical", values=["plain", "checker"]),
    ]
    if interaction:
        specs += [
            FactorSpec(name="wind", kind="continuous", low=0.0, high=10.0, units="m/s"),
            FactorSpec(name="tilt", kind="continuous", low=-15.0, high=15.0, units="deg"),
        ]
    values: dict[str, list[FactorValue]] = {}
    for s in specs:
        if s.kind == "continuous":
            u[s.name] = _uniform(rng, n)
            low, high = float(s.low), float(s.high)  # type: ignore[arg-type]
            if s.scale == "log":
                x = np.exp(math.log(low) + u[s.name] * (math.log(high) - math.log(low)))
            else:
                x = low + u[s.name] * (high - low)
            values[s.name] = [float(v) for v in np.clip(x, low, high)]
        else:
            levels = list(s.values or [])
            codes = rng.integers(0, len(levels), size=n)
            values[s.name] = [levels[c] for c in codes]

    logit = np.full(n, BASE_LOGIT)
    logit += effect * -2.4 * (u["mass"] - 0.5)
    bump = np.exp(-(((u["friction"] - 0.5) / 0.2) ** 2))
    logit += effect * 2.2 * (bump - 0.354)
    logit += effect * np.array([_OBJECT_LOGIT[str(v)] for v in values["object"]])
    if interaction:
        logit += interaction * 2.5 * (2 * u["wind"] - 1) * (2 * u["tilt"] - 1)
    success = rng.uniform(size=n) < expit(logit)

    noise = rng.normal(size=n)
    time_to_success = np.round(40 + 60 * effect * u["mass"] + 8 * noise + 10 * rng.uniform(size=n)).clip(
        1, MAX_STEPS - 1
    )
    returns = 100.0 * success + 15.0 * effect * (1 - u["mass"]) + 10.0 * rng.normal(size=n)
    at_end = success & (rng.uniform(size=n) > 0.05)
    seeds = rng.integers(0, 2**32 - 1, size=n)

    records = []
    for k in range(n):
        ok = bool(success[k])
        length = int(time_to_success[k]) if ok else MAX_STEPS
        records.append(
            EpisodeRecord(
                run="synthetic",
                job=job,
                episode=k,
                seed=int(seeds[k]),
                env_index=k % 4,
                factors={name: vals[k] for name, vals in values.items()},
                outcome={
                    "success": ok,
                    "success_at_end": bool(at_end[k]),
                    "return": float(returns[k]),
                    "length": length,
                    "terminated": ok,
                    "truncated": not ok,
                    "time_to_success": length if ok else None,
                },
                started_at="2026-01-01T00:00:00.000Z",
                ended_at="2026-01-01T00:00:01.000Z",
            )
        )
    planted = (
        {
            "mass": "monotone decreasing",
            "friction": "non-monotone (best mid-range, log scale)",
            "object": "categorical ('can' is harder)",
        }
        if effect
        else {}
    )
    irrelevant = [s.name for s in specs if s.name not in planted]
    interacting: tuple[str, str] | None = None
    if interaction:
        interacting = ("wind", "tilt")
        irrelevant = [n_ for n_ in irrelevant if n_ not in interacting]
    return SyntheticSweep(
        records=records,
        specs=specs,
        planted=planted,
        irrelevant=irrelevant,
        interacting=interacting,
        job=job,
    )
