"""Slicing the replica axis: a share of a trained net and of its FitResult, as if trained on their own.

Why a module of its own: packed jobs (src/lab/packing.py: n configs in one net) and learning-rate tuning
(src/lab/tuning.py: arms × lrs × seeds in one net) both hand each config its replicas after one shared fit.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from src.lab.loop import FitResult


def split_result(result: Any, sl: slice, n: int) -> Any:
    """Config `sl`'s share of a packed FitResult (replica axis sliced, history cut at its last active epoch)."""
    last = int(result.epochs_used[sl].max()) if result.epochs.size else 0
    keep = result.epochs <= max(last, 0)
    diag_epochs, diagnostics = [], []
    for e, stats in zip(result.diag_epochs, result.diagnostics, strict=True):
        e = min(int(e), last)  # the final diagnosis (after the packed loop) describes this config's final weights
        if diag_epochs and diag_epochs[-1] == e:
            diag_epochs.pop()
            diagnostics.pop()
        diag_epochs.append(e)
        diagnostics.append({k: np.asarray(v)[sl] for k, v in stats.items()})
    hists = {k: [(np.asarray(c)[sl], edges) for c, edges in layers] for k, layers in result.histograms.items()}
    return FitResult(
        epochs=result.epochs[keep], history={k: v[keep][:, sl] for k, v in result.history.items()},
        final={k: v[sl] for k, v in result.final.items()}, epochs_used=result.epochs_used[sl],
        best_epoch=result.best_epoch[sl], diverged=result.diverged[sl], diverged_epoch=result.diverged_epoch[sl],
        stopped_early=result.stopped_early[sl], diag_epochs=diag_epochs, diagnostics=diagnostics,
        histograms=hists, wall_time=result.wall_time / n, interrupted=result.interrupted)


def subnet(net: Any, sl: slice) -> Any:
    """Replicas `sl` of a packed net as a net of their own (copies: artifacts and figures read it)."""
    sub = copy.copy(net)
    sub.params = {k: v[sl].copy() for k, v in net.params.items()}
    sub.state = {k: v[sl].copy() for k, v in net.state.items()}
    sub.seeds = list(net.seeds[sl])
    sub.replicas = len(sub.seeds)
    sub.init = list(net.init[sl])
    sub.init_kwargs = list(net.init_kwargs[sl])
    sub.dropout_rngs = list(net.dropout_rngs[sl])
    lam = net.l2
    sub.l2 = lam[sl] if isinstance(lam, np.ndarray) else lam
    return sub
