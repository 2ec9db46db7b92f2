"""``method="posterior"``: neural posterior estimation of the factors given the
outcome, with sbi (optional extra ``trialrun[posterior]``: sbi + torch).

Treat the sweep as a simulation-based-inference data set: parameters are the
factor values, the "observation" is the outcome. NPE (continuous factors only)
or MNPE (when any factor is categorical; sbi's mixed-parameter estimator,
categorical codes after the continuous columns) learns ``p(factors | outcome)``,
and each factor's posterior marginal given the conditioning outcome (success
for a binary outcome, the 90th percentile for a continuous one) is compared
with the sampling design's marginal.

Why this is not the default (see ``docs/analysis.md``): for a binary outcome
the posterior given success is just the success-rate curve times the design
density, rescaled, so it carries no more information than the binned rates,
while a flow fitted on a bounded box grows humps that are pure estimation
noise. Every marginal is therefore drawn against a noise floor, the same
estimator trained on shuffled labels ``n_null`` times, and its shift from the
design (total-variation distance) gets a shuffled-label p-value.

Example (needs sbi; about a minute, so shown as code, and run by
tests/test_analysis_posterior.py)::

    from trialrun.analysis.synthetic import make_sweep
    from trialrun.analysis.dataset import prepare_dataset
    ds = prepare_dataset(*make_sweep(n=300).as_inputs(), "success")
    posterior_analysis(ds, seed=0, n_null=1).method   # 'MNPE'
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
import warnings
from typing import Any, Literal

import numpy as np

from trialrun.analysis.binned import n_bins_for
from trialrun.analysis.dataset import Dataset
from trialrun.analysis.models import PosteriorMarginal, PosteriorResult
from trialrun.errors import InputError

logger = logging.getLogger(__name__)

#: Shuffled-label trainings for the noise floor.
N_NULL = 4
#: Posterior samples drawn per trained estimator.
N_SAMPLES = 2000
#: Training epochs at most (sbi stops earlier on a validation plateau).
MAX_EPOCHS = 150

INSTALL_HINT = (
    "method 'posterior' needs the optional packages sbi and torch: "
    "pip install 'trialrun[posterior]' (or use --method glm, the default)"
)


def require_sbi() -> None:
    """Raise :class:`InputError` with the install hint when sbi is missing."""
    try:
        import sbi  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def posterior_analysis(
    ds: Dataset,
    seed: int = 0,
    n_null: int | None = None,
    n_samples: int | None = None,
    max_epochs: int | None = None,
) -> PosteriorResult | None:
    """Posterior marginals of every varying factor given the outcome, against the
    design and a shuffled-label noise floor. ``None`` (with a note) when there
    is nothing to condition on (constant outcome) or no continuous factor.

    ``n_null``, ``n_samples`` and ``max_epochs`` default to the module's
    ``N_NULL``, ``N_SAMPLES`` and ``MAX_EPOCHS`` (read at call time)."""
    require_sbi()
    import torch

    n_null = N_NULL if n_null is None else n_null
    n_samples = N_SAMPLES if n_samples is None else n_samples
    max_epochs = MAX_EPOCHS if max_epochs is None else max_epochs

    cont = [c for c in ds.active if c.kind == "continuous"]
    cat = [c for c in ds.active if c.kind == "categorical"]
    if not ds.outcome_varies:
        ds.note("posterior method skipped: the outcome never varies")
        return None
    if not cont:
        ds.note(
            "posterior method skipped: sbi's estimators need at least one continuous factor; "
            "the binned rates already give each level's posterior exactly"
        )
        return None
    method: Literal["NPE", "MNPE"] = "MNPE" if cat else "NPE"
    columns = [np.asarray(c.u, dtype=float) for c in cont]
    columns += [np.asarray(c.codes, dtype=float) for c in cat]
    theta = np.column_stack(columns)
    if ds.kind == "binary":
        x = ds.y.astype(float)
        condition = 1.0
        x_o = 1.0
    else:
        mean, sd = float(ds.y.mean()), float(ds.y.std()) or 1.0
        x = (ds.y - mean) / sd
        condition = float(np.quantile(ds.y, 0.9))
        x_o = (condition - mean) / sd
        ds.note(
            f"posterior conditioned on '{ds.outcome}' = {condition:.4g} (its 90th percentile)",
            level=logging.INFO,
        )
    ds.note(
        "posterior method: for a binary outcome the posterior given success is the success-rate "
        "curve times the design density, rescaled; read it against the shuffled-label noise "
        "floor, and use the GLM tests for significance",
        level=logging.INFO,
    )
    seeds = np.random.SeedSequence([seed, 0x9B]).generate_state(n_null + 2)
    shuffle = np.random.default_rng(seeds[0])
    with torch.random.fork_rng(), _quiet():
        torch.set_num_threads(1)
        real = _fit_and_sample(method, theta, x, x_o, len(cont), int(seeds[1]), n_samples, max_epochs)
        nulls = [
            _fit_and_sample(
                method,
                theta,
                shuffle.permutation(x),
                x_o,
                len(cont),
                int(seeds[2 + k]),
                n_samples,
                max_epochs,
            )
            for k in range(n_null)
        ]

    marginals = []
    nb = n_bins_for(ds.n)
    edges = np.linspace(0.0, 1.0, nb + 1)
    for j, col in enumerate([*cont, *cat]):
        xs: list[Any]
        if col.kind == "continuous":
            xs = [float(v) for v in col.from_unit((edges[:-1] + edges[1:]) / 2)]
        else:
            xs = list(col.levels)

        def hist(v: np.ndarray, continuous: bool = col.kind == "continuous", k: int = len(xs)) -> np.ndarray:
            if continuous:
                h = np.histogram(np.clip(v, 0.0, 1.0), bins=edges)[0].astype(float)
            else:
                h = np.bincount(np.clip(np.rint(v).astype(int), 0, k - 1), minlength=k).astype(float)
            return np.asarray(h / max(float(h.sum()), 1.0))

        design = hist(theta[:, j])
        post = hist(real[:, j])
        null_h = np.array([hist(s[:, j]) for s in nulls]) if nulls else post[None, :] * np.nan
        shift = 0.5 * float(np.abs(post - design).sum())
        null_shifts = [0.5 * float(np.abs(h - design).sum()) for h in null_h] if nulls else []
        count = sum(s >= shift for s in null_shifts)
        marginals.append(
            PosteriorMarginal(
                name=col.name,
                kind=col.kind,
                x=xs,
                design=[float(v) for v in design],
                posterior=[float(v) for v in post],
                null_low=[float(v) for v in (null_h.min(axis=0) if nulls else post)],
                null_high=[float(v) for v in (null_h.max(axis=0) if nulls else post)],
                shift=shift,
                null_shifts=null_shifts,
                null_p=(1 + count) / (1 + len(null_shifts)),
            )
        )
    return PosteriorResult(method=method, condition=condition, n_null=n_null, marginals=marginals)


class _NullTracker:
    """sbi tracker that records nothing (sbi's default writes TensorBoard logs
    into ``./sbi-logs`` of the current directory)."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Dropped."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Dropped."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Dropped."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Dropped."""

    def flush(self) -> None:
        """Dropped."""


def _no_logging_options(cls: Any, logdir: str) -> dict[str, Any]:
    """Constructor options that keep sbi from writing ``./sbi-logs``: a null
    tracker where sbi has one (>= 0.25), else a summary writer in ``logdir``."""
    params = inspect.signature(cls.__init__).parameters
    if "tracker" in params:
        return {"tracker": _NullTracker()}
    from torch.utils.tensorboard import SummaryWriter

    return {"summary_writer": SummaryWriter(log_dir=logdir)}


@contextlib.contextmanager
def _quiet() -> Any:
    """sbi prints training progress to stdout and warns about its internals;
    keep both out of the user's terminal (they go to the debug log)."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.simplefilter("ignore")
        yield
    if buf.getvalue().strip():
        logger.debug("sbi: %s", buf.getvalue().strip())


def _fit_and_sample(
    method: str,
    theta: np.ndarray,
    x: np.ndarray,
    x_o: float,
    n_cont: int,
    seed: int,
    n_samples: int,
    max_epochs: int,
) -> np.ndarray:
    """Train one estimator on ``(theta, x)`` and sample ``p(theta | x_o)``."""
    import torch
    from sbi.inference import MNPE, NPE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    th = torch.tensor(theta, dtype=torch.float32)
    xx = torch.tensor(x, dtype=torch.float32)[:, None]
    with tempfile.TemporaryDirectory(prefix="trialrun-sbi-") as logdir:
        options = _no_logging_options(NPE, logdir)
        if method == "NPE":
            prior = BoxUniform(torch.zeros(n_cont), torch.ones(n_cont))
            estimator = "maf" if n_cont > 1 else "mdn"
            inference: Any = NPE(
                prior=prior, density_estimator=estimator, show_progress_bars=False, **options
            )
        else:
            inference = MNPE(show_progress_bars=False, **options)
        inference.append_simulations(th, xx)
        inference.train(max_num_epochs=max_epochs, training_batch_size=100)
        posterior = inference.build_posterior()
    samples = posterior.sample(
        (n_samples,), x=torch.tensor([[x_o]], dtype=torch.float32), show_progress_bars=False
    )
    out = np.asarray(samples.detach().cpu().numpy(), dtype=float)
    # MNPE has no bounded prior: keep continuous draws inside the declared box.
    inside = np.all((out[:, :n_cont] >= 0.0) & (out[:, :n_cont] <= 1.0), axis=1)
    if inside.sum() >= n_samples // 4:
        out = out[inside]
    return out
