"""method='posterior': a clear error without sbi, and (when sbi is installed) a
small NPE/MNPE run against its shuffled-label noise floor."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from trialrun.analysis import analyze, make_sweep
from trialrun.analysis import posterior as posterior_mod
from trialrun.analysis.dataset import prepare_dataset
from trialrun.errors import InputError


@pytest.fixture
def no_sbi(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sbi" or name.startswith("sbi."):
            raise ImportError("No module named 'sbi'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_sbi_gives_install_hint(no_sbi: None, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        analyze(*make_sweep(n=50).as_inputs(), method="posterior", out_dir=tmp_path)
    assert str(exc.value) == (
        "method 'posterior' needs the optional packages sbi and torch: pip install "
        "'trialrun[posterior]' (or use --method glm, the default)"
    )
    assert not (tmp_path / "sensitivity.json").exists()


def test_unknown_method() -> None:
    with pytest.raises(InputError, match=r"^method 'bayes' is not allowed; allowed: glm, posterior$"):
        analyze(*make_sweep(n=50).as_inputs(), method="bayes")


def test_mnpe_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(posterior_mod, "N_NULL", 1)
    monkeypatch.setattr(posterior_mod, "MAX_EPOCHS", 15)
    monkeypatch.setattr(posterior_mod, "N_SAMPLES", 500)
    res = analyze(
        *make_sweep(n=300, seed=0).as_inputs(),
        method="posterior",
        out_dir=tmp_path,
        importance=False,
        interactions=False,
    )
    post = res.posterior
    assert post is not None and post.method == "MNPE" and post.n_null == 1
    assert post.condition == 1.0
    assert [m.name for m in post.marginals] == [
        "mass",
        "friction",
        "light",
        "camera_height",
        "object",
        "background",
    ]
    for m in post.marginals:
        assert sum(m.posterior) == pytest.approx(1.0)
        assert sum(m.design) == pytest.approx(1.0)
        assert len(m.null_shifts) == 1 and m.null_p in (0.5, 1.0)
    assert post.marginals[4].x == ["cube", "can", "mug"]
    assert (tmp_path / "posterior.png").is_file()
    assert not (Path.cwd() / "sbi-logs").exists()


def test_npe_with_continuous_factors_only_and_skip_without_any() -> None:
    sweep = make_sweep(n=200, seed=1)
    cont = [s for s in sweep.specs if s.kind == "continuous"][:2]
    ds = prepare_dataset(sweep.records, cont, "return")
    post = posterior_mod.posterior_analysis(ds, seed=0, n_null=0, n_samples=300, max_epochs=10)
    assert post is not None and post.method == "NPE"
    assert post.condition == pytest.approx(float(sorted(ds.y)[179]), rel=0.05)
    assert [m.null_p for m in post.marginals] == [1.0, 1.0]

    cat = [s for s in sweep.specs if s.kind == "categorical"]
    ds = prepare_dataset(sweep.records, cat, "success")
    assert posterior_mod.posterior_analysis(ds, seed=0) is None
    assert ds.notes[-1].startswith(
        "posterior method skipped: sbi's estimators need at least one continuous factor"
    )
