"""A training run's figures (the MLflow artifacts of every job): curves, decision boundary, histograms, diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.plots.common import RUN_MARGINS, figure, log_y_if_positive, quiet, save


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
    return save(plt, fig, path, RUN_MARGINS)


def decision_boundary(net: Any, ds: Any, path: str | Path, max_replicas: int = 4, grid: int = 200) -> Path:
    """Predicted class over the plane for the first replicas, with the training points on top."""
    X = np.concatenate([ds.X_train, ds.X_test])
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    pts = np.c_[xx.ravel(), yy.ravel()]
    with np.errstate(all="ignore"):
        pred = net.predict(pts)
    R = min(net.replicas, max_replicas)
    plt, fig = figure(3.2 * R, 3.2)
    for r in range(R):
        ax = fig.add_subplot(1, R, r + 1)
        ax.contourf(xx, yy, pred[r].reshape(xx.shape), alpha=0.35, cmap="coolwarm")
        ax.scatter(ds.X_train[:, 0], ds.X_train[:, 1], c=ds.y_train, s=8, cmap="coolwarm", edgecolors="k",
                   linewidths=0.2)
        ax.set_title(f"replica {r} (seed {net.seeds[r]})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return save(plt, fig, path, RUN_MARGINS)


def activation_histograms(histograms: dict[str, list], path: str | Path) -> Path:
    """Per-layer activation histograms (replica 0) at the start and the end of training, layers across."""
    moments = [k for k in ("start", "end") if k in histograms]
    L = max(len(histograms[k]) for k in moments)
    plt, fig = figure(2.4 * L, 2.2 * len(moments))
    for i, moment in enumerate(moments):
        for layer, item in enumerate(histograms[moment]):
            counts, edges = item[0], item[1]
            ax = fig.add_subplot(len(moments), L, i * L + layer + 1)
            c = np.asarray(counts)
            c = c[0] if c.ndim > 1 else c
            ax.stairs(c, edges, fill=True, color="tab:blue")  # one artist, not one patch per bin
            ax.set_title(f"{moment}: layer {layer + 1}", fontsize=8)
            ax.tick_params(labelsize=6)
    return save(plt, fig, path, RUN_MARGINS)


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
    return save(plt, fig, path, RUN_MARGINS)

def layer_num(key: str) -> int:
    digits = "".join(ch for ch in key.split("/")[0] if ch.isdigit())
    return int(digits) if digits else 0

