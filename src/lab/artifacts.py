"""A run's files: the resolved config, its history and diagnostics as CSV, the final weights, and its figures.

Why a module of its own: these are the MLflow artifacts of every job (and of every config of a packed job), the
expensive part of a job's bookkeeping (~2 s of matplotlib per run, see README "Speed"); keeping them apart from
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


def write_artifacts(art: Path, cfg_dict: dict[str, Any], result: FitResult, net: Any, ds: Any,
                    activation: str) -> None:
    """Write the run's files into `art`: config.yaml, history.csv, diagnostics.csv, weights.npz and the figures."""
    from src.plots import runs as figures

    art.mkdir(parents=True, exist_ok=True)
    atomic_write_text(art / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg_dict)))
    atomic_write_text(art / "history.csv", records.history_csv(result))
    atomic_write_text(art / "diagnostics.csv", records.diagnostics_csv(result))
    arrays = {**{k: np.asarray(v) for k, v in net.params.items()}, **{k: np.asarray(v) for k, v in net.state.items()}}
    np.savez_compressed(art / "weights.npz", **arrays)
    # A diverged replica (or a pack sharing histogram bins with one) carries inf/1e300-sized values: NumPy and
    # matplotlib then warn "overflow encountered" with a traceback-like pair of lines, once per figure, which
    # reads like a crash. The divergence is already recorded (the run's status and the job's one-line summary).
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        figures.training_curves(result, art / "curves.png")
        if ds.n_features == 2:
            figures.decision_boundary(net, ds, art / "decision_boundary.png")
        if result.histograms:
            figures.activation_histograms(result.histograms, art / "activation_histograms.png")
        if result.diagnostics:
            figures.layer_diagnostics(result, art / "layer_diagnostics.png")


def write_tuning_artifacts(art: Path, outcome: Any) -> None:
    """A tuned run's extra file: its sensitivity table (tuning.csv, one row per lr). No figure: the run's
    `sensitivity/*` metric series draw the curve in the MLflow UI, and the report draws every arm's curve in one
    figure (src/studies/tuned.py); a matplotlib figure per run would cost ~0.3 s per config (README "Speed")."""
    atomic_write_text(art / "tuning.csv", records.rows_csv(outcome.table_rows()))
