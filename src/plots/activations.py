"""S2's figures: activation histograms per layer and init (the articles' grid), gradient norms by layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.plots.common import figure, save


def activation_grid(acts: dict[str, list[np.ndarray]], path: str | Path, value_range: tuple[float, float] | None,
                    title: str = "", stats: dict[tuple[str, int], dict[str, Any]] | None = None,
                    bins: int = 30) -> Path:
    """Histograms of each hidden layer's activations: layers across, initialisations down (the articles' figure).

    ``acts[init]`` is a list of 1-D arrays, one per layer. ``value_range`` fixes the x range (sigmoid (0, 1), tanh
    (-1, 1)); ``None`` (ReLU) histograms the non-zero values on one range per ROW (0 to the row's largest value,
    so a shrinking or growing scale shows across layers; a zero-bias ReLU net is positively homogeneous, so
    per-panel ranges would make every init look alike) and notes the fraction of exact zeros.
    ``stats[(init, layer)]`` (rows of ``src.studies.s2_activations``) adds the mean-over-replicas std to each
    panel's title.
    """
    inits = list(acts)
    L = max(len(v) for v in acts.values())
    plt, fig = figure(1.7 * L + 0.8, 1.6 * len(inits) + 0.6)
    for i, init in enumerate(inits):
        row_hi = max((float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)) for a in map(np.asarray, acts[init])),
                     default=1.0)
        for layer, a in enumerate(acts[init], start=1):
            ax = fig.add_subplot(len(inits), L, i * L + layer)
            a = np.asarray(a, dtype=float)
            a = a[np.isfinite(a)]
            note = ""
            if value_range is None:
                zeros = float(np.mean(a == 0)) if a.size else 0.0
                a = a[a != 0]
                note = f"\n{zeros:.0%} zero"
            rng = value_range if value_range is not None else (0.0, row_hi if row_hi > 0 else 1.0)
            if rng[1] <= rng[0]:
                rng = (rng[0] - 0.5, rng[1] + 0.5)
            # One filled step patch per panel, not `ax.hist`'s one rectangle per bin: the same picture, and the
            # grid (up to 40 panels x 30 bins) draws in a fraction of the time.
            counts, edges = np.histogram(a, bins=bins, range=rng)
            ax.stairs(counts, edges, fill=True, color="tab:blue")
            st = (stats or {}).get((init, layer))
            std = f"std {st['act_std']:.2g}" if st else ""
            ax.set_title(f"{init} L{layer}\n{std}{note}", fontsize=7)
            ax.tick_params(labelsize=5)
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return save(plt, fig, path)


def grad_norms_by_layer(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Per-layer ‖∂L/∂W‖ and per-sample ‖∂L/∂z‖ of each net (mean ± 95% CI over replicas), log scale."""
    nets = list(dict.fromkeys(r["net"] for r in rows))
    plt, fig = figure(10, 4)
    for i, (key, label) in enumerate((("grad_norm", "‖∂L/∂W_l‖"), ("dz_norm", "‖∂L/∂z_l‖ per sample"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for net in nets:
            sel = sorted((r for r in rows if r["net"] == net), key=lambda r: r["layer"])
            x = [r["layer"] for r in sel]
            y = np.array([float(r[key]) for r in sel])
            ci = np.array([float(r.get(f"{key}_ci95", 0.0)) for r in sel])
            ax.errorbar(x, y, yerr=np.minimum(ci, 0.99 * y), marker="o", ms=3, capsize=2, label=net)
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = next to the input)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Backward pass at init, random input and labels: gradient norm by layer", fontsize=10)
    return save(plt, fig, path)


