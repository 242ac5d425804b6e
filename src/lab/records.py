"""What a finished job leaves behind: its record (`result.json`), its files, and its MLflow metrics.

Why separate from the Hydra entry point: the same record feeds the MLflow child run, the sweep's
leaderboard, `results/<study>/runs.csv` for DVC, and `resume=true` (a job whose identical config already
finished is skipped). Files are written atomically (temp file + rename) so an interrupted job never leaves a
half-written record that a later aggregation would trust (`src.files`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.lab.loop import SPLITS, FitResult
from src.lab.stats import summary

RESULT_FILE = "result.json"
REPLICAS_FILE = "replicas.csv"  # one row per replica trained by the job (per-seed numbers for paired tests)
TUNING_FILE = "tuning.csv"  # with tune.enabled: the job's sensitivity table, one row per learning rate
# Keys that do not change what is computed: they are left out of the config hash used by resume.
_VOLATILE = {("tracking",), ("resume",), ("train", "progress"), ("train", "max_memory_gb"), ("results_dir",),
             ("data", "dir")}  # where the files live: the dataset digest in the resume key covers their content


def nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean over replicas (axis 1) ignoring non-finite values; NaN where a row has none (all diverged)."""
    a = np.where(np.isfinite(a), a, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=1)


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A stable hash of what the job computes (volatile keys such as tracking settings excluded)."""
    def strip(d: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
        return {k: (strip(v, path + (k,)) if isinstance(v, Mapping) else v)
                for k, v in d.items() if path + (k,) not in _VOLATILE}

    blob = json.dumps(strip(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# Modules of src/lab that cannot change a number a job reports (where runs are logged, how sweeps are driven and
# signals handled, what is checked up front). Every other module of src/nn and src/lab counts, new ones included.
NOT_RESULTS_CODE = {"tracking", "sweep", "sweeper", "signals", "preflight", "results", "artifacts", "memory",
                    "speed", "gradcheck"}


def resume_key(chash: str, dataset_digest: str) -> str:
    """What `resume=true` matches: a config is done only if a run finished with this same key.

    The key is the config hash, the digest of the dataset as trained on (after preprocessing), and the digest of
    the code that computes results (:func:`code_digest`). Why all three: keyed on the config alone, a resume after
    `python -m src.data generate --seed 7` reported the old data's results as done.
    """
    blob = f"{chash}|{dataset_digest}|{code_digest()}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    """A digest of the code that computes results: every module of src/nn and src/lab except NOT_RESULTS_CODE,
    parsed, with docstrings dropped (comments never reach the syntax tree), so an edit of the maths, the loop or
    the metrics changes it and a documentation or formatting edit does not. Computed once per process (~50 ms)."""
    import ast

    src = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = sorted((src / "nn").rglob("*.py")) + sorted(p for p in (src / "lab").glob("*.py")
                                                         if p.stem not in NOT_RESULTS_CODE)
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        h.update(path.relative_to(src).as_posix().encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def git_commit(cwd: Path) -> str:
    """HEAD's commit (with `-dirty` when the tree has changes), or `unknown` outside a git checkout. Cached per
    process: two `git` calls cost ~20 ms, paid once instead of once per job."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def status_of(result: FitResult) -> str:
    if result.interrupted:
        return "killed"
    if result.diverged.all():
        return "diverged"
    return "finished"


def final_metrics(result: FitResult) -> dict[str, float]:
    """Headline numbers: mean/std/ci95 over replicas of each final metric, plus per-replica values."""
    out: dict[str, float] = {}
    for split in SPLITS:
        for m in ("loss", "acc"):
            key = f"{split}_{m}"
            vals = result.final[key]
            s = summary(vals)
            out[key] = s["mean"]
            out[f"{key}_std"] = s["std"]
            out[f"{key}_ci95"] = s["ci95"]
            for r, v in enumerate(vals):
                out[f"replica/r{r}/{key}"] = float(v)
    out["epochs_used"] = float(np.mean(result.epochs_used))
    out["best_epoch"] = float(np.mean(result.best_epoch))
    out["diverged_fraction"] = float(np.mean(result.diverged))
    out["stopped_early_fraction"] = float(np.mean(result.stopped_early))
    out["replicas"] = float(result.replicas)
    out["wall_time_s"] = float(result.wall_time)
    return out


def curve_series(result: FitResult, max_points: int) -> dict[str, tuple[list[int], list[float]]]:
    """Mean-over-replicas curves, thinned to at most `max_points` evenly spaced points (always the last)."""
    K = len(result.epochs)
    if K == 0:
        return {}
    idx = np.unique(np.linspace(0, K - 1, min(K, max_points)).round().astype(int))
    steps = result.epochs[idx].tolist()
    out: dict[str, tuple[list[int], list[float]]] = {}
    for k, v in result.history.items():
        out[k] = (steps, nanmean_rows(v[idx]).tolist())
    for epoch, stats in zip(result.diag_epochs, result.diagnostics, strict=True):
        for name, v in stats.items():
            if name.endswith(("act_std", "grad_norm", "saturated", "dead")):
                s, vals = out.setdefault(name, ([], []))
                s.append(int(epoch))
                vals.append(float(nanmean_rows(np.asarray(v, dtype=float).reshape(1, -1))[0]))
    return out


def history_csv(result: FitResult) -> str:
    """Long-format history: one row per (epoch, replica) with every recorded metric."""
    buf = io.StringIO()
    keys = sorted(result.history)
    w = csv.writer(buf)
    w.writerow(["epoch", "replica", *keys])
    for i, epoch in enumerate(result.epochs):
        for r in range(result.replicas):
            w.writerow([int(epoch), r, *(repr(float(result.history[k][i, r])) for k in keys)])
    return buf.getvalue()


def mean_curve_csv(result: FitResult) -> str:
    """Mean-over-replicas curves per logged epoch (the per-job file behind `dvc plots show`)."""
    buf = io.StringIO()
    keys = [k for k in ("train_loss", "val_loss", "train_acc", "val_acc") if k in result.history]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *keys])
    means = {k: nanmean_rows(result.history[k]) for k in keys}
    for i, epoch in enumerate(result.epochs):
        w.writerow([int(epoch), *(f"{float(means[k][i]):.6g}" for k in keys)])
    return buf.getvalue()


def diagnostics_csv(result: FitResult) -> str:
    """Per-layer diagnostics (activation mean/std, saturation, dead units, gradient norm) per replica."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch", "replica", "stat", "value"])
    for epoch, stats in zip(result.diag_epochs, result.diagnostics, strict=True):
        for name in sorted(stats):
            for r, v in enumerate(np.asarray(stats[name]).ravel()):
                w.writerow([epoch, r, name, repr(float(v))])
    return buf.getvalue()


def rows_csv(rows: list[dict[str, Any]], first: dict[str, Any] | None = None) -> str:
    """Dict rows as CSV (columns in first-seen order; `first`: constant columns put in front of every row).
    Floats keep 6 significant digits, enough for accuracies on a few hundred points and for losses."""
    rows = [{**(first or {}), **r} for r in rows]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(k)) for k in cols])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    return str(v)


def read_results(sweep_dir: str | Path, parent_id: str | None = None) -> list[dict[str, Any]]:
    """Every job record of a sweep folder (optionally only this parent's: a reused folder mixes sweeps)."""
    out = []
    for p in sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}"), key=lambda p: _job_num(p.parent.name)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if parent_id is None or rec.get("parent_run_id") == parent_id:
            out.append(rec)
    return out


def _job_num(name: str) -> int:
    try:
        return int(name)
    except ValueError:
        return 1 << 30
