"""Figures: every run outcome can be drawn (total divergence, zero init), at the size asked for, on sane axes."""

from __future__ import annotations

import types
from pathlib import Path

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
