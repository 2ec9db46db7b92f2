"""The figures: written, decodable, of the expected pixel size, for every kind
of result (planted, reduced, continuous outcome, constant factor, posterior)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from trialrun.analysis import plots
from trialrun.analysis.api import analyze
from trialrun.analysis.dataset import prepare_dataset
from trialrun.analysis.models import PosteriorMarginal, PosteriorResult
from trialrun.analysis.plots import (
    DPI,
    MIN_FONT_KEY,
    REPORT_WIDTH_PX,
    write_interaction_png,
    write_posterior_png,
    write_sensitivity_png,
)
from trialrun.analysis.synthetic import make_sweep


def _size(path: Path) -> tuple[int, int]:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] == 4
    # not a blank canvas: some pixels are dark
    assert float(img[..., :3].min()) < 0.2
    return img.shape[1], img.shape[0]


def _inputs(n: int, seed: int = 0, outcome: str = "success", **kw: float):  # type: ignore[no-untyped-def]
    sweep = make_sweep(n=n, seed=seed, **kw)
    ds = prepare_dataset(*sweep.as_inputs(), outcome)
    res = analyze(*sweep.as_inputs(), outcome, importance=False)
    return res, ds


def test_sensitivity_png_size_for_six_factors(tmp_path: Path) -> None:
    res, ds = _inputs(400)
    path = write_sensitivity_png(res, ds, tmp_path / "s.png")
    assert _size(path) == (1716, 1287)  # 3 x 3 panels of 5.2 x 3.9 in at 110 dpi


def test_sensitivity_png_one_row_for_two_factors(tmp_path: Path) -> None:
    sweep = make_sweep(n=200, seed=1)
    specs = sweep.specs[1:3]  # friction (log) and object (categorical)
    res = analyze(sweep.records, specs, importance=False)
    ds = prepare_dataset(sweep.records, specs, "success")
    path = write_sensitivity_png(res, ds, tmp_path / "s.png")
    assert _size(path) == (1716, 429)


@pytest.mark.parametrize(("n", "outcome"), [(20, "success"), (300, "return"), (300, "length")])
def test_reduced_and_continuous_results_plot(tmp_path: Path, n: int, outcome: str) -> None:
    res, ds = _inputs(n, outcome=outcome)
    assert _size(write_sensitivity_png(res, ds, tmp_path / "s.png")) == (1716, 1287)


def test_constant_factor_panel(tmp_path: Path) -> None:
    sweep = make_sweep(n=150, seed=2)
    recs = [r.model_copy(update={"factors": {**r.factors, "light": 5.0}}) for r in sweep.records]
    res = analyze(recs, sweep.specs, importance=False)
    ds = prepare_dataset(recs, sweep.specs, "success")
    assert res.factor("light").status == "constant"
    assert _size(write_sensitivity_png(res, ds, tmp_path / "s.png")) == (1716, 1287)


def test_interaction_png(tmp_path: Path) -> None:
    res, ds = _inputs(600, seed=3, effect=0.0, interaction=1.0)
    assert res.interaction_view is not None
    path = write_interaction_png(res.interaction_view, ds, res, tmp_path / "i.png")
    assert _size(path) == (1375, 550)


def test_interaction_png_with_categorical_axis(tmp_path: Path) -> None:
    sweep = make_sweep(n=300, seed=4)
    specs = [sweep.specs[1], sweep.specs[2]]  # log continuous x categorical
    res = analyze(sweep.records, specs, importance=False)
    ds = prepare_dataset(sweep.records, specs, "success")
    view = res.interaction_view
    assert view is not None and view.factors == ("friction", "object")
    assert len(view.model) == 3 and len(view.model[0]) == 25
    assert _size(write_interaction_png(view, ds, res, tmp_path / "i.png")) == (1375, 550)


def test_posterior_png_from_data(tmp_path: Path) -> None:
    res, _ = _inputs(100)
    flat = [0.25] * 4
    post = PosteriorResult(
        method="MNPE",
        condition=1.0,
        n_null=2,
        marginals=[
            PosteriorMarginal(
                name="mass",
                kind="continuous",
                x=[0.6, 0.9, 1.3, 1.8],
                design=flat,
                posterior=[0.4, 0.3, 0.2, 0.1],
                null_low=[0.2] * 4,
                null_high=[0.3] * 4,
                shift=0.2,
                null_shifts=[0.05, 0.04],
                null_p=1 / 3,
            ),
            PosteriorMarginal(
                name="object",
                kind="categorical",
                x=["cube", "can", "mug"],
                design=[1 / 3] * 3,
                posterior=[0.4, 0.2, 0.4],
                null_low=[0.3] * 3,
                null_high=[0.36] * 3,
                shift=0.13,
                null_shifts=[0.02, 0.03],
                null_p=1 / 3,
            ),
        ],
    )
    path = write_posterior_png(post, res, tmp_path / "p.png")
    assert _size(path) == (1144, 385)
    assert np.isfinite(mpimg.imread(path)).all()


def _shown_text_px(path: Path, fig: Figure) -> list[float]:
    """Font sizes (CSS pixels) of every text of ``fig`` once the report shows the
    PNG at ``path``: no wider than its column (REPORT_WIDTH_PX), never enlarged."""
    width = Image.open(path).size[0]
    scale = min(width, REPORT_WIDTH_PX) / width
    return [
        t.get_fontsize() * DPI / 72 * scale
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip()
    ]


def test_every_figure_is_readable_at_the_report_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 7 pt bin counts on the 1716 px sensitivity.png were 7.4 px tall in the report.
    saved: list[tuple[Figure, Path]] = []
    original = plots._save

    def spy(fig: Figure, path: Path) -> Path:
        out = original(fig, path)
        saved.append((fig, out))
        return out

    monkeypatch.setattr(plots, "_save", spy)
    res, ds = _inputs(600, seed=3, effect=0.0, interaction=1.0)
    write_sensitivity_png(res, ds, tmp_path / "s.png")
    assert res.interaction_view is not None
    write_interaction_png(res.interaction_view, ds, res, tmp_path / "i.png")
    flat = [0.5, 0.5]
    marginal = PosteriorMarginal(
        name="mass", kind="continuous", x=[0.6, 1.8], design=flat, posterior=[0.7, 0.3],
        null_low=[0.4] * 2, null_high=[0.6] * 2, shift=0.2, null_shifts=[0.05], null_p=0.5,
    )  # fmt: skip
    post = PosteriorResult(method="MNPE", condition=1.0, n_null=1, marginals=[marginal])
    write_posterior_png(post, res, tmp_path / "p.png")
    assert [p.name for _, p in saved] == ["s.png", "i.png", "p.png"]
    for fig, path in saved:
        sizes = _shown_text_px(path, fig)
        assert min(sizes) >= 10.0, (path.name, min(sizes))
        smallest = min(
            t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
        )
        assert Image.open(path).text[MIN_FONT_KEY] == f"{smallest:.3f}"
    assert Image.open(tmp_path / "s.png").text[MIN_FONT_KEY] == "10.383"  # 11 px x 72/110 x 1716/1190


def test_axis_labels_name_a_unit_only_when_there_is_one() -> None:
    from trialrun.analysis.plots import _axis_label

    assert [_axis_label("friction", u) for u in ("1", "", None, "kg", "x")] == [
        "friction",
        "friction",
        "friction",
        "friction [kg]",
        "friction [x]",
    ]
