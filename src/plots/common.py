"""What every figure shares: the Agg backend, a figure factory, saving (and closing), quiet NaN handling.

Why: figures are made in batch jobs and DVC stages (no display), so the backend is forced to Agg; pyplot is
imported inside :func:`figure` so that importing a plots module (and ``--help`` of the CLIs) stays fast; every
figure is closed after saving because sweeps make thousands of them in one process.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")


def figure(w: float, h: float) -> tuple[Any, Any]:
    """(pyplot, a new w×h inch figure at dpi 100)."""
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(w, h), dpi=100)


# Fixed margins for the per-run figures (small multiples with short labels). Why: `tight_layout` measures every
# text's extent and costs ~0.25 s per figure, about half of a run's figure time, paid on every job of a grid.
RUN_MARGINS = {"left": 0.11, "right": 0.98, "bottom": 0.13, "top": 0.9, "wspace": 0.3, "hspace": 0.55}


# zlib level of the per-run PNGs: level 1 instead of PIL's default 6 writes them ~25% faster for files ~1.5x
# larger (tens of KB); the report's figures, written once, keep the default.
RUN_PNG = {"compress_level": 1}


def save(plt: Any, fig: Any, path: str | Path, margins: dict[str, float] | None = None,
         png: dict[str, Any] | None = None) -> Path:
    """Lay out (`margins`, else tight_layout), write the PNG (`png`: PIL's options), close the figure; return
    the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if margins is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**margins)
    fig.savefig(path, pil_kwargs=png)
    plt.close(fig)
    return path


def log_y_if_positive(ax: Any) -> None:
    """Log y axis when every plotted finite value is > 0 (zero init gives exact zeros, a fully diverged run
    only NaN: matplotlib refuses a log axis with nothing positive to show)."""
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()] or [np.zeros(0)])
    ys = ys[np.isfinite(ys)]
    if ys.size and ys.min() > 0:
        ax.set_yscale("log")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence 'mean of empty slice' for all-NaN (diverged) columns: NaN is the intended answer there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
