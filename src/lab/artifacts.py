"""A run's files: the resolved config, its history and diagnostics as CSV, the final weights, and its figures.

Why a module of its own: these are the MLflow artifacts of every job (and of every config of a packed job), the
expensive part of a job's bookkeeping (matplotlib: ~0.2 s per figure, see README "Speed"); keeping them apart from
the job's control flow makes "which files does a run leave" one short list.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from src.files import atomic_write_text
from src.lab import records
from src.lab.loop import FitResult
from src.lab.replicas import subnet

BOUNDARY_REPLICAS = 4  # replicas drawn in a run's decision-boundary figure (side by side)


def write_artifacts(art: Path, cfg_dict: dict[str, Any], result: FitResult, net: Any, ds: Any,
                    activation: str) -> None:
    """Write the run's files into `art`: config.yaml, history.csv, diagnostics.csv, weights.npz and the figures
    `tracking.figures` names (src.plots.runs.FIGURES; all of them when the config does not say), unless a packed
    job's helper has drawn them (src/lab/drawing.py)."""
    from src.lab import drawing

    art.mkdir(parents=True, exist_ok=True)
    atomic_write_text(art / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg_dict)))
    atomic_write_text(art / "history.csv", records.history_csv(result))
    atomic_write_text(art / "diagnostics.csv", records.diagnostics_csv(result))
    arrays = {**{k: np.asarray(v) for k, v in net.params.items()}, **{k: np.asarray(v) for k, v in net.state.items()}}
    np.savez_compressed(art / "weights.npz", **arrays)
    if not drawing.drawn(art):
        draw_figures(art, figures_of(cfg_dict), result, net, ds)


def figures_of(cfg_dict: dict[str, Any]) -> list[str]:
    """The figures a run draws: `tracking.figures`, all of src.plots.runs.FIGURES when the config does not say."""
    from src.plots.runs import FIGURES

    return list(cfg_dict.get("tracking", {}).get("figures", FIGURES))


def draw_figures(art: Path, draw: list[str], result: FitResult, net: Any, ds: Any) -> None:
    """Draw the run figures named in `draw` into `art` (a packed job's helper process calls this too)."""
    from src.plots import runs as figures

    art.mkdir(parents=True, exist_ok=True)
    # A diverged replica (or a pack sharing histogram bins with one) carries inf/1e300-sized values: NumPy and
    # matplotlib then warn "overflow encountered" with a traceback-like pair of lines, once per figure, which
    # reads like a crash. The divergence is already recorded (the run's status and the job's one-line summary).
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if "curves" in draw:
            figures.training_curves(result, art / figures.FIGURES["curves"])
        if "boundary" in draw and ds.n_features == 2:
            shown = subnet(net, slice(0, min(net.replicas, BOUNDARY_REPLICAS)))
            figures.decision_boundary(shown, ds, art / figures.FIGURES["boundary"], max_replicas=BOUNDARY_REPLICAS)
        if "histograms" in draw and result.histograms:
            figures.activation_histograms(result.histograms, art / figures.FIGURES["histograms"])
        if "diagnostics" in draw and result.diagnostics:
            figures.layer_diagnostics(result, art / figures.FIGURES["diagnostics"])


def write_tuning_artifacts(art: Path, outcome: Any) -> None:
    """A tuned run's extra file: its sensitivity table (tuning.csv, one row per lr). No figure: the run's
    `sensitivity/*` metric series draw the curve in the MLflow UI, and the report draws every arm's curve in one
    figure (src/studies/tuned.py); a matplotlib figure per run would cost ~0.3 s per config (README "Speed")."""
    atomic_write_text(art / "tuning.csv", records.rows_csv(outcome.table_rows()))
