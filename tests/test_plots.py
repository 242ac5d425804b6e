"""Figures: every run outcome can be drawn (total divergence, zero init), at the size asked for, on sane axes."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from src.plots import common
from src.plots import runs as plots


def _result(loss: float, grad: float) -> types.SimpleNamespace:
    K, R = 4, 3
    return types.SimpleNamespace(
        epochs=np.arange(K),
        history={"train_loss": np.full((K, R), loss), "val_loss": np.full((K, R), loss),
                 "train_acc": np.full((K, R), 0.5), "val_acc": np.full((K, R), 0.5)},
        diag_epochs=[0, 3],
        diagnostics=[{"layer1/act_std": np.full(R, v), "layer1/grad_norm": np.full(R, grad),
                      "layer2/act_std": np.full(R, v), "layer2/grad_norm": np.full(R, grad)} for v in (1.0, 0.5)],
    )


def _drawn(p: Path) -> tuple[int, int]:
    """The PNG's size in pixels; fails on a blank canvas."""
    with Image.open(p) as im:
        assert im.format == "PNG"
        assert len(set(im.convert("L").getdata())) > 2, "something is drawn"
        return im.size


@pytest.mark.parametrize(("loss", "grad"), [(np.nan, np.nan), (0.69, 0.0)], ids=["all diverged", "zero init"])
def test_run_figures_are_drawn_at_their_size(tmp_path: Path, loss: float, grad: float) -> None:
    r = _result(loss, grad)
    assert _drawn(plots.training_curves(r, tmp_path / "c.png")) == (1000, 400)  # 10 x 4 in at dpi 100
    assert _drawn(plots.layer_diagnostics(r, tmp_path / "d.png")) == (900, 350)


@pytest.mark.parametrize(("ys", "scale"), [([np.nan, np.nan], "linear"), ([0.0, 0.5], "linear"),
                                          ([0.1, 2.0], "log"), ([np.nan, 0.3], "log")])
def test_log_axis_only_when_every_finite_value_is_positive(ys: list[float], scale: str) -> None:
    plt, fig = common.figure(2, 2)
    try:
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([0, 1], ys)
        common.log_y_if_positive(ax)
        assert ax.get_yscale() == scale
    finally:
        plt.close(fig)


@pytest.mark.parametrize("wanted", [["boundary", "histograms"], ["curves", "diagnostics"], []],
                         ids=["default", "the UI's charts as PNGs", "none"])
def test_a_run_draws_the_figures_tracking_figures_names(tmp_path: Path, data_dir: Path, compose: Any,
                                                        wanted: list[str]) -> None:
    """`tracking.figures` decides which PNGs a run leaves (each drawn, none other); the files are always there."""
    from src import data
    from src.lab.artifacts import write_artifacts
    from src.lab.build import build
    from src.lab.config import to_container
    from src.lab.job import train

    cfg = compose(["data=moons", "train.epochs=20", "train.seeds=5", "tracking.enabled=false",
                   f"data.dir={data_dir}", f"tracking.figures=[{','.join(wanted)}]"])
    ds = data.load("moons", data_dir)
    built = build(cfg, ds)
    result = train(built)
    write_artifacts(tmp_path, to_container(cfg), result, built.net, ds, "relu")
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert pngs == {plots.FIGURES[w] for w in wanted}
    for name in pngs:
        _drawn(tmp_path / name)
    assert {"config.yaml", "history.csv", "diagnostics.csv", "weights.npz"} <= {p.name for p in tmp_path.iterdir()}
