"""A training run's figures (the MLflow artifacts of every job): curves, decision boundary, histograms, diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.plots.common import RUN_MARGINS, RUN_PNG, figure, log_y_if_positive, quiet, save


def training_curves(result: Any, path: str | Path) -> Path:
    """Loss and accuracy per logged epoch: one thin line per replica, the mean in bold."""
    plt, fig = figure(10, 4)
    for i, (metric, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            key = f"{split}_{metric}"
            if key not in result.history:
                continue
            vals = result.history[key]
            ax.plot(result.epochs, vals, color=color, alpha=0.25, lw=0.8)
            with np.errstate(all="ignore"), quiet():
                ax.plot(result.epochs, np.nanmean(vals, axis=1), color=color, lw=2, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if metric == "loss":
            log_y_if_positive(ax)
        ax.legend()
        ax.grid(alpha=0.3)
    return save(plt, fig, path, RUN_MARGINS, RUN_PNG)


def decision_boundary(net: Any, ds: Any, path: str | Path, max_replicas: int = 4, grid: int = 200) -> Path:
    """Predicted class over the plane for the first replicas, with the training points on top.

    `net` should hold only the replicas to draw (`src.lab.replicas.subnet`): predicting a 200x200 grid for all
    of a pack's replicas cost more than drawing. The class map is an image (`imshow`), not `contourf`: the same
    picture at the grid's resolution without computing contour polygons (~2x cheaper per figure)."""
    X = np.concatenate([ds.X_train, ds.X_test])
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    pts = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    R = min(net.replicas, max_replicas)
    with np.errstate(all="ignore"):
        pred = net.predict(pts)
    plt, fig = figure(3.2 * R, 3.2)
    for r in range(R):
        ax = fig.add_subplot(1, R, r + 1)
        ax.imshow(pred[r].reshape(grid, grid), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto",
                  interpolation="nearest", cmap="coolwarm", alpha=0.35, vmin=0, vmax=max(int(ds.n_classes) - 1, 1))
        ax.scatter(ds.X_train[:, 0], ds.X_train[:, 1], c=ds.y_train, s=8, cmap="coolwarm", edgecolors="k",
                   linewidths=0.2)
        ax.set_title(f"replica {r} (seed {net.seeds[r]})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return save(plt, fig, path, RUN_MARGINS, RUN_PNG)


def activation_histograms(histograms: dict[str, list], path: str | Path) -> Path:
    """Per-layer activation distributions (replica 0) at the start (dashed) and the end (solid) of training, one
    outline per layer and moment (fraction of units per bin), on one pair of axes: how each layer's distribution
    moved, layers compared on the same scale.

    Why one panel: matplotlib's cost is per axes (ticks, labels); one panel per layer and moment (six for a
    3-layer net) cost ~2x the time of two, and two ~1.5x one, in every run of a grid (README "Speed")."""
    plt, fig = figure(6, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for moment, style in (("start", "--"), ("end", "-")):
        for layer, item in enumerate(histograms.get(moment, [])):
            c = np.asarray(item[0], dtype=float)
            c = c[0] if c.ndim > 1 else c
            total = c.sum()
            ax.stairs(c / total if total > 0 else c, item[1], lw=1.2, ls=style, color=f"C{layer % 10}",
                      label=f"layer {layer + 1}, {moment}")
    ax.set_xlabel("activation", fontsize=8)
    ax.set_ylabel("fraction of units", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=2)
    return save(plt, fig, path, RUN_MARGINS, RUN_PNG)


def layer_diagnostics(result: Any, path: str | Path) -> Path:
    """Activation std and gradient norm by layer, at the first and the last diagnosed epoch (mean over replicas)."""
    plt, fig = figure(9, 3.5)
    for i, stat in enumerate(("act_std", "grad_norm")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j in sorted({0, len(result.diagnostics) - 1}):
            stats = result.diagnostics[j]
            keys = sorted((k for k in stats if k.endswith("/" + stat)), key=layer_num)
            if not keys:
                continue
            with np.errstate(all="ignore"), quiet():
                vals = [float(np.nanmean(stats[k])) for k in keys]
            ax.plot(range(1, len(vals) + 1), vals, marker="o", label=f"epoch {result.diag_epochs[j]}")
            ax.set_xticks(range(1, len(vals) + 1))
        ax.set_xlabel("layer")
        ax.set_ylabel(stat.replace("_", " "))
        log_y_if_positive(ax)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save(plt, fig, path, RUN_MARGINS, RUN_PNG)

# The per-run figures, by the name `tracking.figures` lists: (file, what it needs). The curves and the layer
# diagnostics are also logged as metric series, which the MLflow UI charts natively, so the default draws only
# what the UI cannot: the decision boundary and the activation histograms (README "Speed").
FIGURES: dict[str, str] = {"boundary": "decision_boundary.png", "histograms": "activation_histograms.png",
                           "curves": "curves.png", "diagnostics": "layer_diagnostics.png"}


def layer_num(key: str) -> int:
    digits = "".join(ch for ch in key.split("/")[0] if ch.isdigit())
    return int(digits) if digits else 0

