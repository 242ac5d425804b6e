"""A dataset's scatter plot (written next to each generated dataset by the `generate` stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from src.plots import common  # noqa: F401 - forces the Agg backend before pyplot is imported


class Scattered(Protocol):
    """What the scatter reads of a dataset (``src.data.Dataset`` has it; plots never imports the data package)."""

    name: str
    n_classes: int
    card: dict[str, Any]
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int: ...


_SPLIT_MARKERS = {"train": ("o", 14, 0.7), "val": ("^", 22, 0.9), "test": ("x", 22, 0.9)}


def _project_2d(ds: Scattered) -> tuple[dict[str, np.ndarray], str]:
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


def dataset_scatter(ds: Scattered, path: str | Path) -> Path:
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

