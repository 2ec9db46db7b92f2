"""Entry points of the sensitivity analysis.

* :func:`analyze_run` — a run directory: factor specs from ``manifest.json``,
  records from ``episodes.jsonl``, outputs in ``RUN_DIR/analysis/`` (one
  sub-folder per job when several jobs have factors).
* :func:`analyze_records` — an episode log made elsewhere plus a factors YAML.
* :func:`analyze` — the same on in-memory records and specs.

The factors YAML reader lives in :mod:`trialrun.analysis.factors_file` and the
CLI's table in :mod:`trialrun.analysis.table`.

Outputs: ``sensitivity.json`` (:class:`SensitivityResult`), ``sensitivity.png``,
``interaction.png`` (top screened pair) and, with ``method="posterior"``,
``posterior.png``. All of it reads run files only; nothing here imports the
rollout side.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> run = make_sweep(n=300, seed=0).write_run(pathlib.Path(tempfile.mkdtemp()))
    >>> res = analyze_run(run)["synthetic"]
    >>> sorted(res.significant_factors())
    ['friction', 'mass', 'object']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from trialrun.analysis.binned import bin_factor, bin_pair
from trialrun.analysis.dataset import Dataset, prepare_dataset
from trialrun.analysis.factors_file import load_factors_yaml
from trialrun.analysis.glm import GlmAnalysis, analyze_glm
from trialrun.analysis.glm_interactions import interaction_surface
from trialrun.analysis.importance import FactorImportance, permutation_importance_check
from trialrun.analysis.models import (
    FactorResult,
    InteractionView,
    SensitivityResult,
)
from trialrun.analysis.plots import (
    write_interaction_png,
    write_posterior_png,
    write_sensitivity_png,
)
from trialrun.analysis.posterior import posterior_analysis, require_sbi
from trialrun.analysis.sampling import sample_job_records, subsample_note
from trialrun.errors import InputError
from trialrun.runfiles import (
    ANALYSIS_DIR,
    INTERACTION_FIGURE,
    POSTERIOR_FIGURE,
    SENSITIVITY_FIGURE,
    SENSITIVITY_FILE,
    RunLayout,
    read_manifest,
    read_summary,
    write_json_atomic,
)
from trialrun.runfiles.outputs import writing_output
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, Summary
from trialrun.runfiles.sensitivity import read_sensitivity

logger = logging.getLogger(__name__)

Method = Literal["glm", "posterior"]
METHODS: tuple[Method, ...] = ("glm", "posterior")
RESULT_FILE = SENSITIVITY_FILE
FIGURE_FILE = SENSITIVITY_FIGURE
INTERACTION_FILE = INTERACTION_FIGURE
POSTERIOR_FILE = POSTERIOR_FIGURE


def _check_args(method: str, alpha: float) -> None:
    if method not in METHODS:
        raise InputError(f"method '{method}' is not allowed; allowed: {', '.join(METHODS)}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    if method == "posterior":
        require_sbi()


# --------------------------------------------------------------------------- the core


def analyze(
    records: Sequence[EpisodeRecord],
    specs: Sequence[FactorSpec],
    outcome: str = "success",
    *,
    out_dir: Path | str | None = None,
    method: str = "glm",
    alpha: float = 0.05,
    seed: int = 0,
    job: str | None = None,
    source: str = "records",
    spec_source: str = "factor spec",
    notes: Sequence[str] = (),
    importance: bool = True,
    interactions: bool = True,
) -> SensitivityResult:
    """Analyse in-memory ``records`` against ``specs``; write the outputs to
    ``out_dir`` when given.

    ``source`` and ``spec_source`` name the files in error messages.
    ``importance=False`` skips the gradient-boosted cross-check (the slowest
    part) and ``interactions=False`` the pair screen.

    Raises:
        InputError: bad arguments or data (see :mod:`trialrun.analysis.dataset`).

    Example:
        >>> from trialrun.analysis.synthetic import make_sweep
        >>> res = analyze(*make_sweep(n=400, seed=2).as_inputs(), importance=False)
        >>> res.factor("light").significant, res.factor("mass").significant
        (False, True)
    """
    _check_args(method, alpha)
    with threadpool_limits(limits=1):
        # Small dense problems: BLAS/OpenMP threads only add contention (the
        # trees were 50x slower with two busy threads on a 2-core machine).
        ds = prepare_dataset(
            records, specs, outcome, episodes_source=source, spec_source=spec_source, job=job
        )
        for message in notes:
            ds.note(message)
        glm = analyze_glm(ds, alpha=alpha, seed=seed, interactions=interactions)
        imp: dict[str, FactorImportance] = {}
        imp_info = None
        if glm is not None and importance:
            imp, imp_info = permutation_importance_check(ds, seed=seed)
        post = posterior_analysis(ds, seed=seed) if method == "posterior" else None
        result = _assemble(ds, glm, imp, alpha, seed, method)
        result.importance_info = imp_info
        result.posterior = post
        result.notes = list(ds.notes)
        if out_dir is not None:
            write_outputs(result, ds, Path(out_dir))
    return result


def _assemble(
    ds: Dataset,
    glm: GlmAnalysis | None,
    imp: dict[str, FactorImportance],
    alpha: float,
    seed: int,
    method: str,
) -> SensitivityResult:
    factors: list[FactorResult] = []
    for col in ds.columns:
        bins, chi2_p = bin_factor(col, ds.y, ds.kind)
        g = glm.factors.get(col.name) if glm else None
        fi = imp.get(col.name)
        status: Literal["analysed", "constant", "not_modelled"] = (
            "constant" if col.constant else ("analysed" if g else "not_modelled")
        )
        spec = col.spec
        factors.append(
            FactorResult(
                name=col.name,
                kind=col.kind,
                scale=spec.scale,
                low=spec.low,
                high=spec.high,
                levels=list(spec.values) if spec.values else None,
                units=spec.units,
                status=status,
                df=g.df if g else None,
                statistic=g.statistic if g else None,
                p_value=g.p_value if g else None,
                p_adjusted=g.p_adjusted if g else None,
                significant=g.significant if g else False,
                effect=g.effect if g else None,
                effect_ci=g.effect_ci if g else None,
                rank=0,
                bins=bins,
                partial_dependence=g.partial_dependence if g else None,
                chi2_p=chi2_p,
                importance=fi.importance if fi else None,
                importance_null_p=fi.null_p if fi else None,
                note=(
                    f"constant in the records ({col.values[0]!r})"
                    if col.constant
                    else (None if g else "no model fitted (see notes)")
                ),
            )
        )

    def key(f: FactorResult) -> tuple[Any, ...]:
        if f.p_adjusted is not None:
            return (0, f.p_adjusted, -(f.statistic or 0.0), f.name)
        if f.chi2_p is not None:
            return (1, f.chi2_p, 0.0, f.name)
        return (2, 1.0, 0.0, f.name)

    for rank, f in enumerate(sorted(factors, key=key), start=1):
        f.rank = rank

    view = None
    if glm is not None and glm.interactions:
        top = glm.interactions[0]
        xa, xb, surface = interaction_surface(top, glm.rows, glm.info.family)
        ca, cb = top.term.columns
        x_bins, y_bins, n, succ, rate = bin_pair(ca, cb, ds.y, ds.kind)
        view = InteractionView(
            factors=(ca.name, cb.name),
            p_value=top.interaction.p_value,
            p_adjusted=top.interaction.p_adjusted,
            x=xa,  # type: ignore[arg-type]
            y=xb,  # type: ignore[arg-type]
            model=[[float(v) for v in row] for row in surface],
            x_bins=x_bins,
            y_bins=y_bins,
            n=n,
            successes=succ,
            rate=rate,
        )
    return SensitivityResult(
        job=ds.job,
        source=ds.source,
        outcome=ds.outcome,
        outcome_kind=ds.kind,
        method=method,  # type: ignore[arg-type]
        n=ds.n,
        n_excluded=ds.n_excluded,
        base_rate=float(np.mean(ds.y)),
        alpha=alpha,
        seed=seed,
        model=glm.info if glm else None,
        factors=factors,
        interactions=[r.interaction for r in glm.interactions] if glm else [],
        interaction_view=view,
    )


def write_outputs(result: SensitivityResult, ds: Dataset, out_dir: Path) -> dict[str, Path]:
    """Write ``sensitivity.json`` and the figures into ``out_dir``; figures of a
    previous analysis that this one does not produce are removed, so the folder
    never mixes two analyses.

    Raises:
        InputError: ``out_dir`` cannot be written (naming the path).
    """
    with writing_output(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {"json": out_dir / RESULT_FILE}
        write_json_atomic(written["json"], result.model_dump(mode="json", by_alias=True))
        written["figure"] = write_sensitivity_png(result, ds, out_dir / FIGURE_FILE)
        if result.interaction_view is not None:
            written["interaction"] = write_interaction_png(
                result.interaction_view, ds, result, out_dir / INTERACTION_FILE
            )
        else:
            (out_dir / INTERACTION_FILE).unlink(missing_ok=True)
        if result.posterior is not None:
            written["posterior"] = write_posterior_png(result.posterior, result, out_dir / POSTERIOR_FILE)
        else:
            (out_dir / POSTERIOR_FILE).unlink(missing_ok=True)
        for path in written.values():
            logger.info("wrote %s", path)
    return written


def analyze_records(
    episodes_path: Path | str,
    factors_yaml_path: Path | str,
    outcome: str = "success",
    out_dir: Path | str | None = None,
    *,
    job: str | None = None,
    method: str = "glm",
    alpha: float = 0.05,
    seed: int = 0,
) -> SensitivityResult:
    """Analyse an episode log made elsewhere against a factors YAML.

    The default ``out_dir`` is ``analysis/`` next to the episodes file. A file
    holding several jobs needs ``job``.

    Example:
        >>> import tempfile, pathlib
        >>> from trialrun.analysis.synthetic import make_sweep
        >>> eps, fac = make_sweep(n=300, seed=0).write(pathlib.Path(tempfile.mkdtemp()))
        >>> analyze_records(eps, fac).factor("object").significant
        True
    """
    episodes_path, factors_yaml_path = Path(episodes_path), Path(factors_yaml_path)
    _check_args(method, alpha)
    specs = load_factors_yaml(factors_yaml_path)
    # Every job of the file is sampled (at most MAX_ROWS each): the jobs are
    # only known once it is read, and a file of several jobs without --job is refused.
    samples = sample_job_records(episodes_path, seed=seed)
    jobs = sorted(samples)
    if job is not None:
        if job not in jobs:
            raise InputError(
                f"{episodes_path}: no episodes of job '{job}'; jobs in the file: "
                f"{', '.join(jobs) or '(none)'}"
            )
    elif len(jobs) > 1:
        raise InputError(
            f"{episodes_path}: holds episodes of several jobs ({', '.join(jobs)}); choose one with --job"
        )
    name = job or (jobs[0] if jobs else None)
    records = samples[name].records() if name is not None else []
    note = subsample_note(name, len(records), samples[name].offered) if name is not None else None
    out = Path(out_dir) if out_dir is not None else episodes_path.parent / ANALYSIS_DIR
    return analyze(
        records,
        specs,
        outcome,
        out_dir=out,
        method=method,
        alpha=alpha,
        seed=seed,
        job=name,
        source=str(episodes_path),
        spec_source=str(factors_yaml_path),
        notes=[note] if note else (),
    )


def analyze_run(
    run_dir: Path | str,
    job: str | None = None,
    outcome: str = "success",
    out_dir: Path | str | None = None,
    method: str = "glm",
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, SensitivityResult]:
    """Analyse the jobs of a run directory that have factors (or only ``job``).

    Outputs go to ``out_dir`` (default ``RUN_DIR/analysis``) when one job of the
    run has factors, else to ``out_dir/<job>/``, whether or not ``job`` was
    given, so a job's analysis always lives in the same place. When several jobs
    are analysed, one whose data cannot be analysed is skipped with a warning;
    the error is raised only when no job could be analysed.

    Returns:
        ``{job: result}`` for every job analysed.
    """
    run_dir = Path(run_dir)
    _check_args(method, alpha)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    layout = RunLayout(run_dir)
    manifest = read_manifest(run_dir)
    manifest_path = layout.manifest
    with_factors = [name for name, jm in manifest.jobs.items() if jm.factors]
    if job is not None:
        if job not in manifest.jobs:
            raise InputError(
                f"{manifest_path}: no job '{job}'; jobs in this run: {', '.join(manifest.jobs) or '(none)'}"
            )
        if not manifest.jobs[job].factors:
            raise InputError(
                f"{manifest_path}: job '{job}' has no factors to analyse; jobs with factors: "
                f"{', '.join(with_factors) or '(none)'}"
            )
        selected = [job]
    else:
        if not with_factors:
            raise InputError(
                f"{manifest_path}: no job declares factors, so there is nothing to analyse "
                f"(jobs: {', '.join(manifest.jobs) or '(none)'})"
            )
        selected = with_factors
    episodes_path = layout.episodes
    samples = sample_job_records(episodes_path, manifest.jobs, selected, seed=seed)
    summary = read_summary(run_dir) if layout.summary.is_file() else None
    root = Path(out_dir) if out_dir is not None else layout.analysis_dir
    nested = len(with_factors) > 1

    results: dict[str, SensitivityResult] = {}
    errors: list[InputError] = []
    for name in selected:
        jm = manifest.jobs[name]
        notes = []
        if jm.status != "completed":
            notes.append(
                f"job '{name}' is {jm.status} ({jm.completed} of {jm.planned} planned episodes): "
                "the analysis covers the episodes recorded so far"
            )
        sample = samples.pop(name)
        sampled = subsample_note(name, len(sample), sample.offered)
        if sampled:
            notes.append(sampled)
        try:
            refuse_absent_success(summary, name, outcome, layout.summary)
            results[name] = analyze(
                sample.records(),  # parsed here: one job's records in memory at a time
                jm.factors,
                outcome,
                out_dir=root / name if nested else root,
                method=method,
                alpha=alpha,
                seed=seed,
                job=name,
                source=str(episodes_path),
                spec_source=f"{manifest_path} (job '{name}')",
                notes=notes,
            )
        except InputError as exc:
            if len(selected) == 1:
                raise
            logger.warning("job '%s' not analysed: %s", name, exc)
            errors.append(exc)
    if not results:
        raise errors[0]
    return results


def refuse_absent_success(summary: Summary | None, job: str, outcome: str, source: Path) -> None:
    """Raise when ``outcome`` is ``success`` and the summary says the job's
    success was never reported (every episode would count as a failure).

    Example:
        >>> from trialrun.stats import summarize_run
        >>> s = summarize_run("r", [], {"pendulum": 0}, {}, 0, success_seen={"pendulum": False})
        >>> refuse_absent_success(s, "pendulum", "success", Path("summary.json"))
        Traceback (most recent call last):
        ...
        trialrun.errors.InputError: summary.json: job 'pendulum' never reported success ...
    """
    if outcome != "success" or summary is None:
        return
    js = summary.jobs.get(job)
    if js is not None and js.success_status == "absent":
        raise InputError(
            f"{source}: job '{job}' never reported success (its env has no info['success'] or "
            "info['is_success'] and the job sets no success rule), so every episode counts as a "
            "failure; analyse another outcome, e.g. --outcome return, or set success: survived / "
            "{min_return: X} / {key: NAME} in the job and run it again"
        )


def load_sensitivity(path: Path | str) -> SensitivityResult:
    """Read a ``sensitivity.json`` (a file, or a folder holding one).

    Example:
        >>> import tempfile, pathlib
        >>> from trialrun.analysis.synthetic import make_sweep
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> _ = analyze(*make_sweep(n=100).as_inputs(), out_dir=out, importance=False)
        >>> load_sensitivity(out).n
        100
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such analysis file (run 'trialrun analyze' first)")
    return read_sensitivity(path)


def load_run_analyses(run_dir: Path | str) -> dict[str, SensitivityResult]:
    """Every analysis stored under ``RUN_DIR/analysis`` keyed by job (for the
    report); empty when the run was never analysed."""
    root = Path(run_dir) / ANALYSIS_DIR
    found: dict[str, SensitivityResult] = {}
    for path in sorted([root / RESULT_FILE, *root.glob(f"*/{RESULT_FILE}")]):
        if path.is_file():
            res = load_sensitivity(path)
            found[res.job or path.parent.name] = res
    return found
