"""A sweep's figures: the leaderboard, validation curves by job, a metric against a swept parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.plots.common import figure, log_y_if_positive, save


def leaderboard_plot(table: list[dict[str, Any]], path: str | Path, top: int | None = 30) -> Path:
    """Test accuracy (mean ± 95% CI over replicas) of each job of a sweep, in the table's order; failed jobs have
    no bar. With `top`, only the first `top` jobs are drawn and the title says how many of how many."""
    usable = [r for r in table if r.get("status") != "failed"]
    rows = usable if top is None else usable[:top]
    plt, fig = figure(8, 0.22 * max(len(rows), 3) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    names = [r["name"] for r in rows][::-1]
    means = [r["test_acc"] for r in rows][::-1]
    cis = [r["test_acc_ci95"] for r in rows][::-1]
    ax.barh(range(len(rows)), means, xerr=cis, color="tab:green", alpha=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("test accuracy (mean ± 95% CI over replicas)")
    ax.set_xlim(0, 1)
    shown = f"all {len(rows)} jobs" if len(rows) == len(usable) else f"the first {len(rows)} of {len(usable)} jobs"
    failed = len(table) - len(usable)
    ax.set_title(shown + (f" ({failed} failed, not drawn)" if failed else ""), fontsize=9)
    return save(plt, fig, path)


def curves_by_job(curves: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Validation loss and accuracy per epoch, one line per job (``curves[name] = {"epoch", "val_loss", ...}``)."""
    plt, fig = figure(11, 4)
    for i, (key, label) in enumerate((("val_loss", "validation loss"), ("val_acc", "validation accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, c in curves.items():
            if key in c and "epoch" in c:
                y = np.asarray(c[key], dtype=float)
                ax.plot(np.asarray(c["epoch"], dtype=float), np.where(np.isfinite(y), y, np.nan), lw=1.2,
                        label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "val_loss":
            log_y_if_positive(ax)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(plt, fig, path)


def metric_vs_param(series: dict[str, list[tuple[float, float, float]]], path: str | Path, xlabel: str,
                    ylabel: str = "test accuracy (mean ± 95% CI)", logx: bool = True, title: str = "") -> Path:
    """One line per series of ``(x, mean, ci95)`` points, e.g. test accuracy vs init scale with and without BN."""
    plt, fig = figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in series.items():
        pts = sorted(pts)
        x = [p[0] for p in pts]
        y = np.array([p[1] for p in pts], dtype=float)
        ci = np.array([p[2] if np.isfinite(p[2]) else 0.0 for p in pts], dtype=float)
        ax.errorbar(x, y, yerr=ci, marker="o", ms=4, capsize=2, label=name)
    if logx and all(p[0] > 0 for pts in series.values() for p in pts):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save(plt, fig, path)
