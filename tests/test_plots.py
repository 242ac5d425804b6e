"""Run figures must be drawable for every outcome a run can have, including total divergence and zero init."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np

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


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_of_a_fully_diverged_run(tmp_path: Path) -> None:
    r = _result(np.nan, np.nan)
    assert _is_png(plots.training_curves(r, tmp_path / "c.png"))
    assert _is_png(plots.layer_diagnostics(r, tmp_path / "d.png"))


def test_zero_gradients_keep_a_linear_axis(tmp_path: Path) -> None:
    r = _result(0.69, 0.0)  # zero init: every gradient norm exactly 0
    assert _is_png(plots.layer_diagnostics(r, tmp_path / "d.png"))
    assert _is_png(plots.training_curves(r, tmp_path / "c.png"))
