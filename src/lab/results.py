"""The files a sweep leaves for DVC and people: `runs.csv`, `metrics.json`, `curves.csv`, the leaderboard.

Why separate from the callback: the same tables are written by the sweep callback at the end of a sweep, logged
on the sweep's MLflow parent run, and read back by the report (`runs.csv` is the contract between them).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.files import atomic_folder, atomic_write_json, atomic_write_text
from src.lab.records import REPLICAS_FILE, TUNING_FILE, rows_csv

TUNED_LEADER_KEYS = ("tuned_lr", "tuned_test_acc", "tuned_test_acc_ci95")
LEADER_KEYS = ("test_acc", "test_acc_ci95", "val_acc", "train_acc", "test_loss", "epochs_used", "best_epoch",
               "diverged_fraction", "wall_time_s")


def leaderboard_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job, best VALIDATION accuracy first (ties: test accuracy only as a display order); failed jobs
    last. Why validation: the leaderboard's first row is "the best job", and picking it on test accuracy would
    select on the very numbers it then reports."""
    table = []
    for r in rows:
        m = r.get("metrics", {})
        table.append({"name": r.get("name", "?"), "status": r.get("status", "?"),
                      **{k: m.get(k, float("nan")) for k in (*LEADER_KEYS, *TUNED_LEADER_KEYS)}})

    def key(row: dict[str, Any]) -> tuple[int, float, float]:
        val, acc = row["val_acc"], row["test_acc"]
        return (row["status"] == "failed", -(val if val == val else -1.0), -(acc if acc == acc else -1.0))

    return sorted(table, key=key)


def leaderboard_text(table: list[dict[str, Any]]) -> str:
    """A Markdown table, best validation accuracy first (readable in a terminal too); a tuned grid adds each
    job's chosen lr and its test accuracy there."""
    tuned = any(r.get("tuned_lr") == r.get("tuned_lr") and r.get("tuned_lr") is not None for r in table)
    head = "| # | job | status | val acc | test acc (mean ± 95% CI) | train acc | epochs | diverged |"
    rule = "|---|---|---|---|---|---|---|---|"
    if tuned:
        head, rule = head + " tuned lr | test acc at tuned lr |", rule + "---|---|"
    lines = [head, rule]
    for i, r in enumerate(table, 1):
        line = (f"| {i} | {r['name']} | {r['status']} | {r['val_acc']:.3f} | {r['test_acc']:.3f} ± "
                f"{r['test_acc_ci95']:.3f} | {r['train_acc']:.3f} | {r['epochs_used']:.0f} | "
                f"{r['diverged_fraction']:.2f} |")
        if tuned:
            line += f" {r.get('tuned_lr', float('nan')):g} | {r.get('tuned_test_acc', float('nan')):.3f} ± " \
                    f"{r.get('tuned_test_acc_ci95', float('nan')):.3f} |"
        lines.append(line)
    return "\n".join(lines)


CONSOLE_TOP = 20  # leaderboard rows printed at the end of a sweep; the files keep every row


def console_leaderboard(table: list[dict[str, Any]], folder: Path, top: int = CONSOLE_TOP) -> str:
    """What a sweep prints at its end: the whole leaderboard when it is short; for a big grid the first `top`
    rows, the count of jobs by status and where the full table is. Why: 1,000 rows scroll the one line that
    matters (how many failed) out of sight and are read in a file or the MLflow UI anyway."""
    if len(table) <= top:
        return leaderboard_text(table)
    by_status = ", ".join(f"{n} {s}" for s, n in Counter(r["status"] for r in table).most_common())
    return (f"{leaderboard_text(table[:top])}\n... the first {top} of {len(table)} jobs by validation accuracy "
            f"({by_status}); every row: {folder / 'leaderboard.md'}, {folder / 'runs.csv'}")


def runs_csv(rows: list[dict[str, Any]]) -> str:
    """One row per job: overrides, status, run id, headline metrics (mean and CI over replicas)."""
    keys = ["train_acc", "val_acc", "test_acc", "test_acc_ci95", "train_loss", "val_loss", "test_loss",
            "epochs_used", "best_epoch", "diverged_fraction", "stopped_early_fraction", "replicas", "wall_time_s"]
    if any("tuned_lr" in r.get("metrics", {}) for r in rows):  # tune.enabled: the arm at its chosen lr too
        keys += list(TUNED_KEYS)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job", "name", "overrides", "status", "run_id", "config_hash", *keys, "error"])
    for r in rows:
        m = r.get("metrics", {})
        w.writerow([r.get("num"), r.get("name"), " ".join(r.get("overrides", [])), r.get("status"),
                    r.get("run_id") or "", r.get("config_hash"), *(_num(m.get(k)) for k in keys),
                    r.get("error", "")])
    return buf.getvalue()


# runs.csv columns of a tuned grid: the chosen lr and the report seeds' numbers at it (src/lab/tuning.py)
TUNED_KEYS = ("tuned_lr", "tuned_lr_at_edge", "tuned_train_acc", "tuned_val_acc", "tuned_test_acc",
              "tuned_test_acc_ci95", "tuned_test_loss", "tuned_diverged_fraction", "tune_wall_time_s")


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{float(v):.6g}"


# What nnlab writes into results/<study>/ (and may therefore replace); anything else there (DVC's .gitignore, a
# user's notes) is carried over by src.files.atomic_folder, never deleted.
RESULT_FILES = ("runs.csv", "metrics.json", "curves.csv", "leaderboard.md", REPLICAS_FILE, TUNING_FILE)
CURVE_FILE = re.compile(r"job\d{3,}\.csv")  # curves/jobNNN.csv: what nnlab wrote before curves.csv


def is_result_file(rel: Path) -> bool:
    """Whether `rel` (relative to results/<study>/) is a file nnlab writes there."""
    return (len(rel.parts) == 1 and rel.name in RESULT_FILES) or (
        len(rel.parts) == 2 and rel.parts[0] == "curves" and CURVE_FILE.fullmatch(rel.name) is not None)


def write_results(out: Path, rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    """`runs.csv`, `metrics.json` (`dvc metrics show`), `curves.csv` (`dvc plots show`) and `leaderboard.md`,
    written as one whole: the folder is always one sweep's complete results (src.files.atomic_folder).

    `curves.csv` is long format, one row per (config, epoch), the config named as its MLflow run: DVC draws it as
    ONE plot per study with a line per config (the `by_config` template, conf/dvc/by_config.json), instead of one
    plot per `jobNNN.csv` that says nothing of its config.
    """
    with atomic_folder(out, is_result_file) as tmp:
        write_result_files(tmp, rows, sweep_dir)


def write_result_files(folder: Path, rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    """The files of :func:`write_results`, each written atomically into `folder` (the sweep's own folder, which
    only this sweep writes, or write_results' temp folder)."""
    atomic_write_text(folder / "runs.csv", runs_csv(rows))
    atomic_write_json(folder / "metrics.json", headline(rows))
    atomic_write_text(folder / "curves.csv", curves_csv(rows, sweep_dir))
    for name in (REPLICAS_FILE, TUNING_FILE):
        _gather(folder / name, rows, sweep_dir, name)
    atomic_write_text(folder / "leaderboard.md", leaderboard_text(leaderboard_rows(rows)) + "\n")


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A grid study's few headline numbers for DVC (the same keys for every grid study, so `dvc metrics show` and
    `dvc exp show` stay a narrow table): configs, failed, diverged, and the config best on VALIDATION accuracy
    (selection never looks at test) with its validation and test accuracy and the test accuracy's 95% CI."""
    done = [r for r in rows if r.get("status") != "failed"]

    def val(r: dict[str, Any]) -> float:
        v = float(r.get("metrics", {}).get("val_acc", float("nan")))
        return v if math.isfinite(v) else -1.0

    best = max(done, key=val) if done else None
    m = best.get("metrics", {}) if best else {}
    return dvc_metrics({
        "configs": len(rows), "failed": len(rows) - len(done),
        "diverged": sum(r.get("status") == "diverged" for r in rows),
        "best": best.get("name") if best else None,
        "val_acc": m.get("val_acc"), "test_acc": m.get("test_acc"), "test_ci95": m.get("test_acc_ci95"),
    })


SUMMARY_FILE = "summary.json"  # a measured study's every number (its rules read it); metrics.json is DVC's headline


def write_measured(out: Path, summary: Mapping[str, Any], headline_keys: tuple[str, ...]) -> None:
    """A measured study's numbers: all of them in `summary.json`, the few `headline_keys` in `metrics.json`.

    Why two files: `dvc metrics show` prints every key of every metrics file as a column of one table; the
    measured studies record 15-20 numbers each, which made it ~70 columns wide.
    """
    atomic_write_json(out / SUMMARY_FILE, dict(summary))
    atomic_write_json(out / "metrics.json", dvc_metrics({k: summary[k] for k in headline_keys if k in summary}))


def dvc_metrics(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as DVC prints them well: floats to 4 significant digits; a float below 1e-4 in magnitude, and a
    non-finite one, as a string in scientific notation.

    Why strings: `dvc metrics show` rounds to 5 decimal places (`--precision` counts decimals too, see
    iterative/dvc#5840), so a gradient check's 6.4e-08 would print as 0.0; a string prints as written, and
    `dvc metrics diff` still shows the old and new values side by side.
    """
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, bool) or v is None or isinstance(v, str | int):
            out[k] = v
        elif isinstance(v, float | np.floating):
            f = float(v)
            out[k] = float(f"{f:.4g}") if math.isfinite(f) and (f == 0 or abs(f) >= 1e-4) else f"{f:.3g}"
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def curves_csv(rows: list[dict[str, Any]], sweep_dir: Path) -> str:
    """Every job's mean curves (`<sweep>/<job>/curve.csv`) in one long table: config, epoch, losses, accuracies."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header: list[str] | None = None
    for r in sorted(rows, key=lambda r: int(r.get("num", 0))):
        src = sweep_dir / str(r.get("num")) / "curve.csv"
        if not src.exists():
            continue
        with open(src, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            head = next(reader, None)
            if head is None:
                continue
            if header is None:
                header = head
                w.writerow(["config", *header])
            for line in reader:
                w.writerow([r.get("name", f"job{r.get('num')}"), *line])
    return buf.getvalue() if header else "config,epoch\n"


def _gather(dst: Path, rows: list[dict[str, Any]], sweep_dir: Path, name: str) -> None:
    """Concatenate every job's `name` (a CSV in its job folder) into `dst`, each row prefixed with the job's
    number and name. When no job wrote one (tuning.csv of an untuned grid) `dst` has the header only: the
    pipeline declares the same files for every study."""
    out: list[dict[str, Any]] = []
    for r in rows:
        src = sweep_dir / str(r.get("num")) / name
        if src.exists():
            with open(src, newline="", encoding="utf-8") as f:
                out += [{"job": r.get("num"), "name": r.get("name"), **row} for row in csv.DictReader(f)]
    atomic_write_text(dst, rows_csv(out) if out else "job,name\n")
