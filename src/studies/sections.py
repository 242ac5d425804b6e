"""Reading a study's results folder and the report section every Hydra-grid study has.

`results/<study>/` holds what the DVC stage wrote: `runs.csv` (one row per job, `src/lab/results.py`),
`curves.csv`, `metrics.json`, and for measured studies their own CSVs and figures. The grid section is a
jobs table (best test accuracy first), test accuracy per job and validation curves per job; a study adds its own
tables or figures by giving `Study(section=...)` a function that starts from :func:`grid_section`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

from src.studies.base import Results, Section, Study, Table
from src.studies.compare import facet_label, facets, is_tuned

TEXT_KEYS = ("name", "overrides", "status", "run_id", "config_hash", "error")
COLUMNS = ("test_acc", "train_acc", "val_acc", "epochs_used", "best_epoch", "diverged_fraction", "wall_time_s",
           "status")


def read_runs(path: Path) -> list[dict[str, Any]]:
    """Rows of a `runs.csv`: text columns kept, every other column a float (NaN when empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in list(r.items()):
            if k not in TEXT_KEYS:
                with contextlib.suppress(ValueError, TypeError):
                    r[k] = float(v) if v not in ("", None) else float("nan")
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of any CSV file, as strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_metrics(study_dir: Path) -> dict[str, Any]:
    """A study folder's numbers: a measured study's `summary.json` (every number; its `metrics.json` holds only
    the headline DVC shows, src/lab/results.py), else `metrics.json`; {} when absent or unreadable."""
    p = study_dir / "summary.json"
    if not p.exists():
        p = study_dir / "metrics.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


# ------------------------------------------------------------------------------------------------ formatting


def fmt(v: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, scientific when tiny or huge, n/a for NaN."""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.{digits}g}" if digits > 2 else f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def _cell(r: dict[str, Any], col: str) -> str:
    v = r.get(col, math.nan)
    if col == "test_acc":
        ci = r.get("test_acc_ci95", math.nan)
        if not (isinstance(v, float) and math.isfinite(v)):
            return "n/a"
        return f"{v:.3f} ± {ci:.3f}" if isinstance(ci, float) and math.isfinite(ci) else f"{v:.3f}"
    if col in ("epochs_used", "best_epoch"):
        return f"{v:.0f}" if isinstance(v, float) and math.isfinite(v) else "n/a"
    if col == "wall_time_s":
        return f"{v:.1f}" if isinstance(v, float) and math.isfinite(v) else "n/a"
    if col == "diverged_fraction":
        return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "n/a"
    return fmt(v)


def _job(r: dict[str, Any]) -> str:
    job = r.get("job")
    return f"{job:.0f}" if isinstance(job, float) and math.isfinite(job) else str(job or "")


HEAD = {"test_acc": "test acc (mean ± 95% CI)", "train_acc": "train acc", "val_acc": "val acc",
        "epochs_used": "epochs used", "best_epoch": "best epoch", "diverged_fraction": "diverged",
        "wall_time_s": "time (s)", "status": "status"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A CSV of replicas or tuning rows: `name`, `stage`, `role` kept as text, every other column a float."""
    if not path.exists():
        return []
    rows = read_csv(path)
    out = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k in ("name", "stage", "role"):
                d[k] = v
            else:
                try:
                    d[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    d[k] = v
        out.append(d)
    return out


def read_results(study_dir: Path) -> Results:
    """A grid's results folder: runs.csv, replicas.csv, tuning.csv (when tuned) and metrics.json."""
    return Results(read_runs(study_dir / "runs.csv"), read_rows(study_dir / "replicas.csv"),
                   read_rows(study_dir / "tuning.csv"), read_metrics(study_dir))


def _order_val(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best validation accuracy first (the selection is never made on test data), failed jobs last."""
    def key(r: dict[str, Any]) -> tuple[bool, float, float]:
        val = r.get("val_acc", math.nan)
        val = val if isinstance(val, float) and math.isfinite(val) else -1.0
        job = r.get("job", math.nan)
        return (r.get("status") == "failed", -val, job if isinstance(job, float) and math.isfinite(job) else 1e9)

    return sorted(rows, key=key)


def grid_section(study: Study, study_dir: Path, figdir: Path) -> Section:
    """A Hydra grid's section: verdicts, the jobs table (best validation accuracy first), with tuning the ranking
    in both views and the sensitivity curves, test accuracy per job (every job), validation curves per job."""
    sec = Section(study.name, study.title)
    res = read_results(study_dir)
    rows = list(res.rows)
    sec.verdicts = study.judge(res, res.metrics)
    reps = sorted({int(r["replicas"]) for r in rows if isinstance(r.get("replicas"), float)
                   and math.isfinite(r["replicas"])})
    n_failed = sum(r.get("status") == "failed" for r in rows)
    sec.notes.append(f"{len(rows)} jobs ({n_failed} failed), replicas per job: "
                     f"{', '.join(map(str, reps)) or 'n/a'}; metrics are means over replicas, test accuracy "
                     "with its 95% CI (Student t); diverged replicas are left out of these means and counted in "
                     "'diverged' (the comparisons behind the verdicts score them at chance instead).")
    ordered = _order_val(rows)
    sec.tables.append(("Jobs (best validation accuracy first)", Table(
        ["#", "job", "name", *(HEAD[c] for c in COLUMNS)],
        [[str(i), _job(r), str(r.get("name", "")), *(_cell(r, c) for c in COLUMNS)]
         for i, r in enumerate(ordered, 1)])))
    for r in ordered:
        if r.get("status") == "failed" and r.get("error"):
            sec.notes.append(f"job {r.get('name')} failed: {str(r['error']).splitlines()[0][:200]}")
    if is_tuned(res.replicas):
        from src.studies.tuned import tuned_parts

        tuned_parts(sec, study.name, res, figdir)
    else:
        sec.figures.append((f"Test accuracy per job (all {len(ordered)} jobs, best validation accuracy first)",
                            _leaderboard(study.name, ordered, figdir)))
    curves = _curves(study.name, rows, study_dir, figdir)
    if curves is not None:
        sec.figures.append(("Validation accuracy per job at its configured lr (mean over the report seeds; every "
                            "job drawn, grouped into panels and line styles by its overrides)", curves))
    else:
        sec.notes.append(f"no curves found in {study_dir / 'curves.csv'}")
    return sec


def _leaderboard(study: str, ordered: list[dict[str, Any]], figdir: Path) -> Path:
    from src.plots.grids import leaderboard_plot

    table = [{"name": str(r.get("name", "")), "status": str(r.get("status", "")),
              "test_acc": r.get("test_acc", math.nan), "test_acc_ci95": r.get("test_acc_ci95", math.nan)}
             for r in ordered]
    table = [{**t, "test_acc": t["test_acc"] if isinstance(t["test_acc"], float) else math.nan,
              "test_acc_ci95": t["test_acc_ci95"] if isinstance(t["test_acc_ci95"], float) else math.nan}
             for t in table]
    return leaderboard_plot(table, figdir / f"{study}_leaderboard.png", top=None)


def _curves(study: str, rows: list[dict[str, Any]], study_dir: Path, figdir: Path) -> Path | None:
    from src.plots.compare import curves_grid

    p = study_dir / "curves.csv"
    if not p.exists():
        return None
    curves: dict[str, dict[str, list[float]]] = {}
    for row in read_csv(p):  # long format: config, epoch, train_loss, val_loss, ... (src/lab/results.py)
        c = curves.setdefault(row.pop("config", "?"), {})
        for k, v in row.items():
            try:
                c.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                c.setdefault(k, []).append(math.nan)
    if not curves:
        return None
    panel_keys, line_keys = facets(list(curves))
    panels: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, c in curves.items():
        panels.setdefault(facet_label(name, panel_keys), {})[facet_label(name, line_keys)] = c
    return curves_grid(panels, figdir / f"{study}_curves.png", title=f"{study}: validation accuracy per job")


def copy_figure(src: Path, figdir: Path, study: str) -> Path:
    """A figure a measured study wrote into its results folder, copied into the report's figures/."""
    dst = figdir / f"{study}_{src.name}"
    shutil.copyfile(src, dst)
    return dst
