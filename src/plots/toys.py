"""The S3/S4 toys' figures: optimizer trajectories on a valley's contours, and the clipping toy per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.plots.common import figure, save


def toy_trajectories(paths: dict[str, np.ndarray], f: Any, path: str | Path, optimum: tuple[float, float] = (0, 0),
                     xlim: tuple[float, float] = (-10, 10), ylim: tuple[float, float] = (-5, 5)) -> Path:
    """Contours of ``f(x, y)`` and each optimizer's path (a 2×2 grid like the book's figure 6-8)."""
    n = len(paths)
    cols = 2 if n > 1 else 1
    rows = int(np.ceil(n / cols))
    plt, fig = figure(5 * cols, 3.6 * rows)
    xx, yy = np.meshgrid(np.linspace(*xlim, 250), np.linspace(*ylim, 250))
    zz = f(xx, yy)
    for i, (name, p) in enumerate(paths.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.contour(xx, yy, zz, levels=np.geomspace(0.05, float(zz.max()), 12), colors="0.6", linewidths=0.6)
        p = np.asarray(p, dtype=float)
        ax.plot(p[:, 0], p[:, 1], "o-", color="tab:red", ms=3, lw=1)
        ax.plot(*optimum, "+", color="k", ms=10)
        d = float(np.hypot(p[-1, 0] - optimum[0], p[-1, 1] - optimum[1]))
        ax.set_title(f"{name}: {len(p) - 1} steps, final distance {d:.3g}", fontsize=9)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    return save(plt, fig, path)


def clip_toy(series: dict[str, dict[str, np.ndarray]], path: str | Path) -> Path:
    """The clipping toy: x per step on a linear axis around the first step, and the loss on a log axis.

    ``series[name]`` has arrays "x" and "loss" (step 0 = the start). Values off the x axis (the unclipped run after
    its first step) and losses that are 0 or non-finite are left out of the plot and named in the legend instead.
    """
    plt, fig = figure(10, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    for name, s in series.items():
        x = np.asarray(s["x"], dtype=float)
        shown = np.where(np.isfinite(x) & (np.abs(x) <= 1e3), x, np.nan)
        off = np.flatnonzero(~np.isfinite(shown))
        label = name if not off.size else f"{name} (x = {x[off[0]]:.3g} at step {off[0]}, then off the axis)"
        ax.plot(np.arange(len(x)), shown, "o-", ms=4, label=label)
    ax.set_ylim(-420, 40)
    ax.set_xlabel("step")
    ax.set_ylabel("x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    for name, s in series.items():
        loss = np.asarray(s["loss"], dtype=float)
        ok = np.isfinite(loss) & (loss > 0)
        notes = []
        if np.any(loss == 0):
            notes.append(f"0 from step {int(np.flatnonzero(loss == 0)[0])}")
        if np.any(~np.isfinite(loss)):
            notes.append(f"overflows at step {int(np.flatnonzero(~np.isfinite(loss))[0])}")
        ax.plot(np.flatnonzero(ok), np.log10(loss[ok]), "o-", ms=4,
                label=name + (f" ({', '.join(notes)})" if notes else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("log10 of the loss x⁴")  # 1e-35 .. 1e259: beyond what a log axis can tick
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Loss x⁴ from x = 10, lr 0.1: unclipped, the first step lands at −390 and the loss explodes",
                 fontsize=10)
    return save(plt, fig, path)


