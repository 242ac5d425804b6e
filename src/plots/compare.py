"""Figures of fair comparisons: learning-rate sensitivity, rankings in two views, factorial effects, curves.

Why small multiples: a grid of 48+ arms drawn as 48 lines with one legend is unreadable (the legend covers the
data). These figures split arms into panels by one or two factors and encode at most a few more by colour and
line style, with one legend outside the panels; every arm is drawn (nothing is silently dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import NullFormatter

from src.plots.common import figure, save

# One sensitivity point: (lr, val acc mean, val acc ci95, final train loss mean, train loss ci95, chosen?)
Point = tuple[float, float, float, float, float, bool]
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan")
STYLES = ("-", "--", ":", "-.")


MARKERS = ("o", "^", "s", "D")


def _styles(names: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """(colour, line style, marker) per line label "a=1, b=2, c=3": colour from the first part's level, style from
    the second's, marker from the third's -- so a factor reads the same in every panel. A single part with more
    levels than colours cycles styles too."""
    parts = [n.split(", ") for n in names]
    depth = max((len(p) for p in parts), default=1)
    levels = [list(dict.fromkeys(p[i] for p in parts if len(p) > i)) for i in range(depth)]
    out = {}
    for n, p in zip(names, parts, strict=True):
        i = levels[0].index(p[0])
        ls = STYLES[levels[1].index(p[1]) % len(STYLES)] if depth > 1 and len(p) > 1 else \
            STYLES[(i // len(COLORS)) % len(STYLES)]
        mk = MARKERS[levels[2].index(p[2]) % len(MARKERS)] if depth > 2 and len(p) > 2 else "o"
        out[n] = (COLORS[i % len(COLORS)], ls, mk)
    return out


def _arr(v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return np.where(np.isfinite(a), a, np.nan)


def _wrap(text: str, width_in: float) -> str:
    """A title wrapped to the figure's width (about 13 characters per inch at 9-10 pt)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(30, int(13 * width_in))))


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def sensitivity(panels: Mapping[str, Mapping[str, Sequence[Point]]], path: str | Path, title: str = "") -> Path:
    """Validation accuracy (upper plot) and final training loss (lower plot) against the learning rate for each
    panel, one line per arm with its 95% band over the tuning seeds, the chosen lr circled; panels in rows of at
    most 4, one legend outside (line names repeat across panels with the same colour)."""
    n = max(len(panels), 1)
    prow, cols = _grid(n)
    width, height = 3.4 * cols + 2.2, 4.6 * prow + 0.8
    plt, fig = figure(width, height)
    names = list(dict.fromkeys(arm for series in panels.values() for arm in series))
    style = _styles(names)
    labels: dict[str, Any] = {}
    for j, (ptitle, series) in enumerate(panels.items()):
        r, c = divmod(j, cols)
        for sub, (ylabel, k) in enumerate((("validation accuracy", 1), ("final training loss", 3))):
            ax = fig.add_subplot(2 * prow, cols, (2 * r + sub) * cols + c + 1)
            for arm, pts in series.items():
                pts = sorted(pts)
                x = np.array([p[0] for p in pts])
                y, ci = _arr([p[k] for p in pts]), _arr([p[k + 1] for p in pts])
                color, ls, mk = style[arm]
                (line,) = ax.plot(x, y, ls, color=color, marker=mk, ms=3, lw=1.3)
                lo, hi = y - np.nan_to_num(ci), y + np.nan_to_num(ci)
                # accuracies live in [0, 1]; a loss band on a log axis stops at a tenth of the mean
                lo, hi = (np.clip(lo, 0, 1), np.clip(hi, 0, 1)) if k == 1 else (np.maximum(lo, 0.1 * y), hi)
                ax.fill_between(x, lo, hi, color=color, alpha=0.12 if len(series) <= 4 else 0.06, lw=0)
                chosen = [p for p in pts if p[5]]
                if chosen:
                    ax.plot([chosen[0][0]], [chosen[0][k]], "o", ms=9, mfc="none", mec=color, mew=1.5)
                labels.setdefault(arm, line)
            ax.set_xscale("log")
            finite = [p[3] for s in series.values() for p in s if np.isfinite(p[3])]
            if k == 3 and finite and min(finite) > 0:
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if sub == 0:
                ax.set_title(ptitle, fontsize=8)
                ax.tick_params(labelbottom=False)
            else:
                ax.set_xlabel("learning rate", fontsize=8)
    fig.legend(list(labels.values()), list(labels), loc="center right", fontsize=7, frameon=False,
               title="○ = chosen lr", title_fontsize=7)
    if title:
        fig.suptitle(_wrap(title, width), fontsize=9)
    right = 1 - min(0.45, (0.7 + 0.06 * max((len(s) for s in labels), default=0)) / width)
    return save(plt, fig, path, margins={"left": 0.75 / width, "right": right, "bottom": 0.45 / height,
                                         "top": 1 - 0.55 / height, "wspace": 0.3, "hspace": 0.3})


def rankings(arms: Sequence[str], shared: Sequence[tuple[float, float]], tuned: Sequence[tuple[float, float]],
             path: str | Path, shared_label: str, title: str = "") -> Path:
    """Test accuracy (mean ± 95% CI over the report seeds) per arm at the shared lr and at its tuned lr, arms
    ordered by their tuned accuracy: crossing lines are rankings that tuning changes."""
    order = sorted(range(len(arms)), key=lambda i: (tuned[i][0] if math.isfinite(tuned[i][0]) else -1.0))
    plt, fig = figure(8, 0.32 * max(len(arms), 3) + 1.3)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(order))
    for vals, label, marker, color, dy in ((shared, shared_label, "s", "tab:gray", -0.12),
                                          (tuned, "each arm at its tuned lr", "o", "tab:blue", 0.12)):
        m = _arr([vals[i][0] for i in order])
        ci = np.nan_to_num(_arr([vals[i][1] for i in order]))
        ax.errorbar(m, y + dy, xerr=ci, fmt=marker, color=color, ms=5, capsize=2, label=label)
    for k, i in enumerate(order):
        ax.plot([shared[i][0], tuned[i][0]], [k - 0.12, k + 0.12], color="0.75", lw=0.8, zorder=0)
    ax.set_yticks(y)
    ax.set_yticklabels([arms[i] for i in order], fontsize=7)
    ax.set_xlabel("test accuracy (mean ± 95% CI over the report seeds)")
    lo = np.nanmin([v[0] - np.nan_to_num(v[1]) for v in (*shared, *tuned)] or [0.0])
    ax.set_xlim(max(0.0, lo - 0.02), 1.005)  # accuracy ends at 1: a CI reaching past it is clipped
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9, loc="right")
    return save(plt, fig, path)


# One effect: (label, mean difference, ci95, significant?) per view
Effect = tuple[str, float, float, bool]


def effects(panels: Mapping[str, Mapping[str, Sequence[Effect]]], path: str | Path, title: str = "",
            xlabel: str = "difference in test accuracy (95% CI, paired by seed)") -> Path:
    """A forest plot per panel (e.g. per dataset): each contrast's mean difference with its CI, one marker per
    view (shared lr / tuned lr); filled markers are significant differences (Holm), hollow ones are not."""
    n = max(len(panels), 1)
    labels = list(dict.fromkeys(e[0] for views in panels.values() for es in views.values() for e in es))
    label_in = 0.06 * max((len(s) for s in labels), default=10) + 0.3
    width, height = 3.4 * n + label_in + 1.4, 0.34 * max(len(labels), 3) + 1.5
    plt, fig = figure(width, height)
    markers = ("s", "o", "^", "D")
    handles: dict[str, Any] = {}
    for j, (ptitle, views) in enumerate(panels.items()):
        ax = fig.add_subplot(1, n, j + 1)
        for v, (view, es) in enumerate(views.items()):
            color = ("tab:gray", "tab:blue", "tab:green", "tab:red")[v % 4]
            dy = (v - (len(views) - 1) / 2) * 0.22
            for e in es:
                k = labels.index(e[0])
                h = ax.errorbar([e[1]], [k + dy], xerr=[np.nan_to_num(e[2])], fmt=markers[v % 4], color=color,
                                mfc=color if e[3] else "white", ms=5, capsize=2)
                handles.setdefault(view, h)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if j == 0 else [""] * len(labels), fontsize=7)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_title(ptitle, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.supxlabel(xlabel, fontsize=8)
    fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=7, frameon=False,
               title="filled: significant (Holm)", title_fontsize=7)
    if title:
        fig.suptitle(_wrap(title, width), fontsize=10)
    return save(plt, fig, path, margins={"left": label_in / width, "right": 1 - 1.3 / width,
                                         "bottom": 0.5 / height, "top": 1 - 0.6 / height, "wspace": 0.08})


def curves_grid(panels: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], path: str | Path,
                key: str = "val_acc", ylabel: str = "validation accuracy", title: str = "") -> Path:
    """One panel per group of jobs, one line per job of the group (same colours/styles across panels), one
    legend outside: validation curves of a grid of any size, every job drawn."""
    n = max(len(panels), 1)
    rows, cols = _grid(n)
    plt, fig = figure(3.3 * cols + 2.6, 2.6 * rows + 0.8)
    line_names = list(dict.fromkeys(name for jobs in panels.values() for name in jobs))
    style = _styles(line_names)
    handles: dict[str, Any] = {}
    for j, (ptitle, jobs) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, j + 1)
        for name, c in jobs.items():
            if key not in c or "epoch" not in c:
                continue
            color, ls, _ = style[name]
            (h,) = ax.plot(_arr(c["epoch"]), _arr(c[key]), ls, color=color, lw=1.2)
            handles.setdefault(name, h)
        ax.set_title(ptitle, fontsize=8)
        ax.grid(alpha=0.3)
        if j % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if j >= n - cols:
            ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=7, frameon=False)
    if title:
        fig.suptitle(_wrap(title, 3.3 * cols + 2.6), fontsize=10)
    width, height = 3.3 * cols + 2.6, 2.6 * rows + 0.8
    right = 1 - min(0.4, (0.6 + 0.06 * max((len(s) for s in handles), default=0)) / width)
    return save(plt, fig, path, margins={"left": 0.07, "right": right, "bottom": 0.45 / height,
                                         "top": 1 - 0.55 / height, "wspace": 0.25, "hspace": 0.45})
