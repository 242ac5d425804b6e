"""Figures for nnlab: a flat module of functions, each writing one PNG and closing its figure.

Why: figures are made in batch jobs and DVC stages (no display), so the backend is forced to Agg; pyplot is
imported inside each function so that importing this module (and ``--help`` of the CLIs) stays fast; every
figure is closed after saving because sweeps make thousands of them in one process.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

if TYPE_CHECKING:
    from src.data import Dataset

_SPLIT_MARKERS = {"train": ("o", 14, 0.7), "val": ("^", 22, 0.9), "test": ("x", 22, 0.9)}


def _project_2d(ds: Dataset) -> tuple[dict[str, np.ndarray], str]:
    """2-D coordinates per split: the features themselves when d == 2, else a PCA fitted on the training split
    (so a many-feature set such as digits still gets a picture of how separable its classes are)."""
    splits = {s: getattr(ds, f"X_{s}") for s in ("train", "val", "test")}
    d = ds.n_features
    if d == 2:
        return splits, "x1 / x2"
    if d == 1:
        return {s: np.c_[X[:, 0], np.zeros(len(X))] for s, X in splits.items()}, "x1"
    mu = splits["train"].mean(axis=0)
    _, _, vt = np.linalg.svd(splits["train"] - mu, full_matrices=False)
    comps = vt[:2].T
    return {s: (X - mu) @ comps for s, X in splits.items()}, f"PCA of {d} features (fitted on train)"


def dataset_scatter(ds: Dataset, path: str | Path) -> Path:
    """Scatter of a dataset: colour = class, marker = split (train o, val ^, test x); title = name and sizes.

    Writes a ~5x5 in PNG at dpi 100 to ``path`` (PNG whatever the suffix) and returns ``Path(path)``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    coords, axis_note = _project_2d(ds)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    card = ds.card or {}
    # a split that is a copy of another (course variants) would only hide the points under it: skip it
    copies = {s for s, key in (("val", "val_is_train"), ("val", "val_is_test"), ("test", "test_is_train"))
              if card.get(key)}
    shown = {s: v for s, v in _SPLIT_MARKERS.items() if s not in copies}
    try:
        for split, (marker, size, alpha) in shown.items():
            y = getattr(ds, f"y_{split}")
            xy = coords[split]
            colors = cmap(np.asarray(y) % 10)
            kw = {"edgecolors": "none"} if marker != "x" else {}
            ax.scatter(xy[:, 0], xy[:, 1], c=colors, marker=marker, s=size, alpha=alpha, linewidths=0.8, **kw)
        handles = [Line2D([], [], color="0.3", marker=m, linestyle="", label=s)
                   for s, (m, _, _) in shown.items()]
        handles += [Line2D([], [], color=cmap(k % 10), marker="s", linestyle="", label=f"class {k}")
                    for k in range(min(ds.n_classes, 10))]
        ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.7, ncol=2 if ds.n_classes > 4 else 1)
        flags = (("val = test", "val_is_test"), ("val = train", "val_is_train"),
                 ("test = train", "test_is_train"))
        notes = [text for text, key in flags if card.get(key)]
        title = (f"{ds.name}: train {len(ds.y_train)} / val {len(ds.y_val)} / test {len(ds.y_test)}, "
                 f"{ds.n_classes} classes")
        sub = "; ".join([axis_note, "standardised" if card.get("standardized") else "raw scale", *notes])
        ax.set_title(f"{title}\n{sub}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


# --- training runs (used by src.job and src.callbacks) ------------------------------------------------


def _figure(w: float, h: float) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(w, h), dpi=100)


# Fixed margins for the per-run figures (small multiples with short labels). Why: `tight_layout` measures every
# text's extent and costs ~0.25 s per figure, about half of a run's figure time, paid on every job of a grid.
RUN_MARGINS = {"left": 0.11, "right": 0.98, "bottom": 0.13, "top": 0.9, "wspace": 0.3, "hspace": 0.55}


def _save(plt: Any, fig: Any, path: str | Path, margins: dict[str, float] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if margins is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**margins)
    fig.savefig(path)
    plt.close(fig)
    return path


def _log_y_if_positive(ax: Any) -> None:
    """Log y axis when every plotted finite value is > 0 (zero init gives exact zeros, a fully diverged run
    only NaN: matplotlib refuses a log axis with nothing positive to show)."""
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.zeros(0)])
    ys = ys[np.isfinite(ys)]
    if ys.size and ys.min() > 0:
        ax.set_yscale("log")


def training_curves(result: Any, path: str | Path) -> Path:
    """Loss and accuracy per logged epoch: one thin line per replica, the mean in bold."""
    plt, fig = _figure(10, 4)
    for i, (metric, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            key = f"{split}_{metric}"
            if key not in result.history:
                continue
            vals = result.history[key]
            ax.plot(result.epochs, vals, color=color, alpha=0.25, lw=0.8)
            with np.errstate(all="ignore"), _quiet():
                ax.plot(result.epochs, np.nanmean(vals, axis=1), color=color, lw=2, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if metric == "loss":
            _log_y_if_positive(ax)
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(plt, fig, path, RUN_MARGINS)


def decision_boundary(net: Any, ds: Any, path: str | Path, max_replicas: int = 4, grid: int = 200) -> Path:
    """Predicted class over the plane for the first replicas, with the training points on top."""
    X = np.concatenate([ds.X_train, ds.X_test])
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    pts = np.c_[xx.ravel(), yy.ravel()]
    with np.errstate(all="ignore"):
        pred = net.predict(pts)
    R = min(net.replicas, max_replicas)
    plt, fig = _figure(3.2 * R, 3.2)
    for r in range(R):
        ax = fig.add_subplot(1, R, r + 1)
        ax.contourf(xx, yy, pred[r].reshape(xx.shape), alpha=0.35, cmap="coolwarm")
        ax.scatter(ds.X_train[:, 0], ds.X_train[:, 1], c=ds.y_train, s=8, cmap="coolwarm", edgecolors="k",
                   linewidths=0.2)
        ax.set_title(f"replica {r} (seed {net.seeds[r]})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(plt, fig, path, RUN_MARGINS)


def activation_histograms(histograms: dict[str, list], path: str | Path) -> Path:
    """Per-layer activation histograms (replica 0) at the start and the end of training, layers across."""
    moments = [k for k in ("start", "end") if k in histograms]
    L = max(len(histograms[k]) for k in moments)
    plt, fig = _figure(2.4 * L, 2.2 * len(moments))
    for i, moment in enumerate(moments):
        for layer, item in enumerate(histograms[moment]):
            counts, edges = item[0], item[1]
            ax = fig.add_subplot(len(moments), L, i * L + layer + 1)
            c = np.asarray(counts)
            c = c[0] if c.ndim > 1 else c
            ax.stairs(c, edges, fill=True, color="tab:blue")  # one artist, not one patch per bin
            ax.set_title(f"{moment}: layer {layer + 1}", fontsize=8)
            ax.tick_params(labelsize=6)
    return _save(plt, fig, path, RUN_MARGINS)


def layer_diagnostics(result: Any, path: str | Path) -> Path:
    """Activation std and gradient norm by layer, at the first and the last diagnosed epoch (mean over replicas)."""
    plt, fig = _figure(9, 3.5)
    for i, stat in enumerate(("act_std", "grad_norm")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j in sorted({0, len(result.diagnostics) - 1}):
            stats = result.diagnostics[j]
            keys = sorted((k for k in stats if k.endswith("/" + stat)), key=_layer_num)
            if not keys:
                continue
            with np.errstate(all="ignore"), _quiet():
                vals = [float(np.nanmean(stats[k])) for k in keys]
            ax.plot(range(1, len(vals) + 1), vals, marker="o", label=f"epoch {result.diag_epochs[j]}")
            ax.set_xticks(range(1, len(vals) + 1))
        ax.set_xlabel("layer")
        ax.set_ylabel(stat.replace("_", " "))
        _log_y_if_positive(ax)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(plt, fig, path, RUN_MARGINS)


def leaderboard_plot(table: list[dict[str, Any]], path: str | Path, top: int = 30) -> Path:
    """Test accuracy (mean ± 95% CI over replicas) of each job of a sweep, best first."""
    rows = [r for r in table if r.get("status") != "failed"][:top]
    plt, fig = _figure(8, 0.3 * max(len(rows), 3) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    names = [r["name"] for r in rows][::-1]
    means = [r["test_acc"] for r in rows][::-1]
    cis = [r["test_acc_ci95"] for r in rows][::-1]
    ax.barh(range(len(rows)), means, xerr=cis, color="tab:green", alpha=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("test accuracy (mean ± 95% CI over replicas)")
    ax.set_xlim(0, 1)
    return _save(plt, fig, path)


def _layer_num(key: str) -> int:
    digits = "".join(ch for ch in key.split("/")[0] if ch.isdigit())
    return int(digits) if digits else 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence 'mean of empty slice' for all-NaN (diverged) columns: NaN is the intended answer there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# --- studies without training (src.probe, src.toys) and the report (src.report) ----------------------------


def activation_grid(acts: dict[str, list[np.ndarray]], path: str | Path, value_range: tuple[float, float] | None,
                    title: str = "", stats: dict[tuple[str, int], dict[str, Any]] | None = None,
                    bins: int = 30) -> Path:
    """Histograms of each hidden layer's activations: layers across, initialisations down (the articles' figure).

    ``acts[init]`` is a list of 1-D arrays, one per layer. ``value_range`` fixes the x range (sigmoid (0, 1), tanh
    (-1, 1)); ``None`` (ReLU) histograms the non-zero values on one range per ROW (0 to the row's largest value,
    so a shrinking or growing scale shows across layers; a zero-bias ReLU net is positively homogeneous, so
    per-panel ranges would make every init look alike) and notes the fraction of exact zeros.
    ``stats[(init, layer)]`` (rows of ``src.probe``) adds the mean-over-replicas std to each panel's title.
    """
    inits = list(acts)
    L = max(len(v) for v in acts.values())
    plt, fig = _figure(1.7 * L + 0.8, 1.6 * len(inits) + 0.6)
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
            ax.hist(a, bins=bins, range=rng, color="tab:blue")
            st = (stats or {}).get((init, layer))
            std = f"std {st['act_std']:.2g}" if st else ""
            ax.set_title(f"{init} L{layer}\n{std}{note}", fontsize=7)
            ax.tick_params(labelsize=5)
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def grad_norms_by_layer(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Per-layer ‖∂L/∂W‖ and per-sample ‖∂L/∂z‖ of each net (mean ± 95% CI over replicas), log scale."""
    nets = list(dict.fromkeys(r["net"] for r in rows))
    plt, fig = _figure(10, 4)
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
    return _save(plt, fig, path)


def toy_trajectories(paths: dict[str, np.ndarray], f: Any, path: str | Path, optimum: tuple[float, float] = (0, 0),
                     xlim: tuple[float, float] = (-10, 10), ylim: tuple[float, float] = (-5, 5)) -> Path:
    """Contours of ``f(x, y)`` and each optimizer's path (a 2×2 grid like the book's figure 6-8)."""
    n = len(paths)
    cols = 2 if n > 1 else 1
    rows = int(np.ceil(n / cols))
    plt, fig = _figure(5 * cols, 3.6 * rows)
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
    return _save(plt, fig, path)


def clip_toy(series: dict[str, dict[str, np.ndarray]], path: str | Path) -> Path:
    """The clipping toy: x per step on a linear axis around the first step, and the loss on a log axis.

    ``series[name]`` has arrays "x" and "loss" (step 0 = the start). Values off the x axis (the unclipped run after
    its first step) and losses that are 0 or non-finite are left out of the plot and named in the legend instead.
    """
    plt, fig = _figure(10, 3.8)
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
    return _save(plt, fig, path)


def curves_by_job(curves: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Validation loss and accuracy per epoch, one line per job (``curves[name] = {"epoch", "val_loss", ...}``)."""
    plt, fig = _figure(11, 4)
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
            _log_y_if_positive(ax)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def metric_vs_param(series: dict[str, list[tuple[float, float, float]]], path: str | Path, xlabel: str,
                    ylabel: str = "test accuracy (mean ± 95% CI)", logx: bool = True, title: str = "") -> Path:
    """One line per series of ``(x, mean, ci95)`` points, e.g. test accuracy vs init scale with and without BN."""
    plt, fig = _figure(7, 4)
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
    return _save(plt, fig, path)
