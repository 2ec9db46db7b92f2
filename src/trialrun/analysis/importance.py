"""Cross-check: gradient-boosted trees with held-out permutation importance.

The GLM assumes additive, smooth effects. A tree ensemble does not, so when it
ranks factors very differently (or finds one that the GLM calls null) the
effect has a shape the GLM misses. Learned importances are never zero on noise,
though, so each is compared with a noise floor: the same model refitted on
shuffled labels, ``n_null`` times. ``importance_null_p`` is the fraction of
shuffled-label importances (for that factor) at least as large as the real
one, ``(1 + count) / (1 + n_null)``; with the default 19 shuffles it cannot go
below 0.05, which is fine for a cross-check and keeps it affordable.

Example:
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> from trialrun.analysis.dataset import prepare_dataset
    >>> ds = prepare_dataset(*make_sweep(n=400, seed=0).as_inputs(), "success")
    >>> scores, info = permutation_importance_check(ds, seed=0, n_null=3)
    >>> sorted(scores)[:2], info.n_null
    (['background', 'camera_height'], 3)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from trialrun.analysis.dataset import Dataset
from trialrun.analysis.models import ImportanceInfo

logger = logging.getLogger(__name__)

#: Shuffled-label refits for the noise floor.
N_NULL = 19
#: Held-out fraction on which permutation importance is measured.
TEST_FRACTION = 0.3
#: Permutations per factor and fit.
N_REPEATS = 3
#: Above this many episodes the cross-check uses a seeded subsample (noted).
MAX_ROWS = 4000
#: Fewest episodes (and fewest of the rarer class) for the cross-check.
MIN_ROWS, MIN_CLASS = 60, 10


@dataclass
class FactorImportance:
    """Held-out permutation importance of one factor and its null p-value."""

    importance: float
    null_p: float


def _model(
    binary: bool, seed: int, categorical: np.ndarray
) -> HistGradientBoostingClassifier | HistGradientBoostingRegressor:
    common: dict[str, Any] = {
        "categorical_features": categorical if categorical.any() else None,
        "max_iter": 60,
        "learning_rate": 0.1,
        "max_depth": 3,
        "min_samples_leaf": 20,
        "l2_regularization": 1.0,
        "early_stopping": False,
        "random_state": seed,
    }
    if binary:
        return HistGradientBoostingClassifier(**common)
    return HistGradientBoostingRegressor(**common)


def permutation_importance_check(
    ds: Dataset,
    seed: int = 0,
    n_null: int = N_NULL,
    n_repeats: int = N_REPEATS,
    max_rows: int = MAX_ROWS,
) -> tuple[dict[str, FactorImportance], ImportanceInfo | None]:
    """Importance of each varying factor and its shuffled-label p-value.

    Returns ``({}, None)`` with a note in ``ds.notes`` when the data are too thin
    for a held-out split (fewer than 60 episodes or 10 of the rarer class).

    Runs with one OpenMP thread: with two busy threads on a 2-core machine the
    trees were measured 50x slower than with one.
    """
    with threadpool_limits(limits=1):
        return _importance(ds, seed, n_null, n_repeats, max_rows)


def _importance(
    ds: Dataset, seed: int, n_null: int, n_repeats: int, max_rows: int
) -> tuple[dict[str, FactorImportance], ImportanceInfo | None]:
    cols = ds.active
    binary = ds.kind == "binary"
    y = ds.y.astype(int) if binary else ds.y
    minority = int(min(y.sum(), y.size - y.sum())) if binary else ds.n
    if not cols or ds.n < MIN_ROWS or minority < MIN_CLASS or not ds.outcome_varies:
        if cols and ds.outcome_varies:
            ds.note(
                f"gradient-boosted cross-check skipped: it needs at least {MIN_ROWS} episodes and "
                f"{MIN_CLASS} of the rarer outcome"
            )
        return {}, None

    seeds = np.random.SeedSequence([seed, 0x1B]).generate_state(n_null + 4)
    rows = np.arange(ds.n)
    if ds.n > max_rows:
        rows = np.sort(np.random.default_rng(seeds[0]).choice(ds.n, max_rows, replace=False))
        ds.note(
            f"gradient-boosted cross-check used a random {max_rows} of the {ds.n} episodes "
            "(to bound its time; the GLM and the bins use all of them)",
            level=logging.INFO,
        )
    X, categorical = _features(ds, rows)
    yy = y[rows]
    stratify = yy if binary else None
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, yy, test_size=TEST_FRACTION, random_state=int(seeds[1] % 2**31), stratify=stratify
    )
    scoring = "neg_log_loss" if binary else "neg_mean_squared_error"

    def importances(y_train: np.ndarray, y_test: np.ndarray, s: int) -> tuple[np.ndarray, float]:
        model = _model(binary, int(s % 2**31), categorical).fit(X_tr, y_train)
        rng = np.random.default_rng(s)
        return _permutation_importance(model, X_te, y_test, rng, n_repeats, binary)

    observed, holdout = importances(y_tr, y_te, seeds[2])
    shuffle = np.random.default_rng(seeds[3])
    null = np.empty((n_null, len(cols)))
    for k in range(n_null):
        null[k], _ = importances(shuffle.permutation(y_tr), shuffle.permutation(y_te), seeds[4 + k])
    out = {}
    for j, col in enumerate(cols):
        count = int(np.sum(null[:, j] >= observed[j]))
        out[col.name] = FactorImportance(importance=float(observed[j]), null_p=(1 + count) / (1 + n_null))
    info = ImportanceInfo(
        model="HistGradientBoosting" + ("Classifier" if binary else "Regressor"),
        scoring=scoring,
        n_train=len(y_tr),
        n_test=len(y_te),
        n_null=n_null,
        n_repeats=n_repeats,
        holdout_score=holdout,
    )
    return out, info


def _permutation_importance(
    model: HistGradientBoostingClassifier | HistGradientBoostingRegressor,
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_repeats: int,
    binary: bool,
) -> tuple[np.ndarray, float]:
    """Held-out permutation importance: the mean increase of the test loss (log
    loss, or squared error) when one factor's column is shuffled, and the
    model's held-out score (accuracy, or R^2).

    The same quantity as :func:`sklearn.inspection.permutation_importance`
    with ``neg_log_loss`` scoring, but all permuted copies are predicted in one
    batch: the per-call overhead of sklearn's scorer was most of the cost.
    """
    n, k = X.shape
    copies = [X]
    for j in range(k):
        for _ in range(n_repeats):
            Xp = X.copy()
            Xp[:, j] = X[rng.permutation(n), j]
            copies.append(Xp)
    stacked = np.vstack(copies)
    if binary:
        proba = np.clip(model.predict_proba(stacked)[:, 1], 1e-15, 1 - 1e-15)
        losses = -(y * np.log(proba.reshape(-1, n)) + (1 - y) * np.log(1 - proba.reshape(-1, n)))
        score = float(np.mean((proba[:n] >= 0.5) == y))
    else:
        pred = model.predict(stacked).reshape(-1, n)
        losses = (pred - y) ** 2
        score = float(1.0 - losses[0].mean() / max(float(np.var(y)), 1e-300))
    mean_loss = losses.mean(axis=1)
    increase = mean_loss[1:].reshape(k, n_repeats).mean(axis=1) - mean_loss[0]
    return increase, score


def _features(ds: Dataset, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (continuous factors on their unit scale, categorical ones as
    level codes) and the mask of categorical columns, so the trees split
    categorical factors on level sets rather than on the codes' order."""
    X = np.empty((rows.size, len(ds.active)))
    categorical = np.zeros(len(ds.active), dtype=bool)
    for j, col in enumerate(ds.active):
        if col.kind == "continuous":
            assert col.u is not None
            X[:, j] = col.u[rows]
        else:
            assert col.codes is not None
            X[:, j] = col.codes[rows]
            categorical[j] = True
    return X, categorical
