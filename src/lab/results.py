"""The files a sweep leaves for DVC and people: `runs.csv`, `metrics.json`, `curves/`, the leaderboard.

Why separate from the callback: the same tables are written by the sweep callback at the end of a sweep, logged
on the sweep's MLflow parent run, and read back by the report (`runs.csv` is the contract between them).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from src.files import atomic_write_json, atomic_write_text

LEADER_KEYS = ("test_acc", "test_acc_ci95", "val_acc", "train_acc", "test_loss", "epochs_used", "best_epoch",
               "diverged_fraction", "wall_time_s")


def leaderboard_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job, best test accuracy first; failed jobs last."""
    table = []
    for r in rows:
        m = r.get("metrics", {})
        table.append({"name": r.get("name", "?"), "status": r.get("status", "?"),
                      **{k: m.get(k, float("nan")) for k in LEADER_KEYS}})

    def key(row: dict[str, Any]) -> tuple[int, float]:
        acc = row["test_acc"]
        return (row["status"] == "failed", -(acc if acc == acc else -1.0))

    return sorted(table, key=key)


def leaderboard_text(table: list[dict[str, Any]]) -> str:
    """A Markdown table (readable in a terminal too)."""
    head = "| # | job | status | test acc (mean ± 95% CI) | val acc | train acc | epochs | diverged |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(table, 1):
        lines.append(f"| {i} | {r['name']} | {r['status']} | {r['test_acc']:.3f} ± {r['test_acc_ci95']:.3f} | "
                     f"{r['val_acc']:.3f} | {r['train_acc']:.3f} | {r['epochs_used']:.0f} | "
                     f"{r['diverged_fraction']:.2f} |")
    return "\n".join(lines)


def runs_csv(rows: list[dict[str, Any]]) -> str:
    """One row per job: overrides, status, run id, headline metrics (mean and CI over replicas)."""
    keys = ["train_acc", "val_acc", "test_acc", "test_acc_ci95", "train_loss", "val_loss", "test_loss",
            "epochs_used", "best_epoch", "diverged_fraction", "stopped_early_fraction", "replicas", "wall_time_s"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job", "name", "overrides", "status", "run_id", "config_hash", *keys, "error"])
    for r in rows:
        m = r.get("metrics", {})
        w.writerow([r.get("num"), r.get("name"), " ".join(r.get("overrides", [])), r.get("status"),
                    r.get("run_id") or "", r.get("config_hash"), *(_num(m.get(k)) for k in keys),
                    r.get("error", "")])
    return buf.getvalue()


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{float(v):.6g}"


def write_results(out: Path, rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    """`runs.csv`, `metrics.json` (for `dvc metrics show`) and `curves/<job>.csv` (for `dvc plots show`)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", runs_csv(rows))
    table = leaderboard_rows(rows)
    best = table[0] if table else {}
    metrics = {
        "jobs": len(rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "diverged": sum(r["status"] == "diverged" for r in rows),
        "best_job": best.get("name"),
        "best_test_acc": best.get("test_acc"),
        "best_test_acc_ci95": best.get("test_acc_ci95"),
    }
    atomic_write_json(out / "metrics.json", metrics)
    curves = out / "curves"
    curves.mkdir(exist_ok=True)
    for old in curves.glob("*.csv"):
        old.unlink()
    for r in rows:
        src = sweep_dir / str(r.get("num")) / "curve.csv"
        if src.exists():
            atomic_write_text(curves / f"job{int(r['num']):03d}.csv", src.read_text())
    atomic_write_text(out / "leaderboard.md", leaderboard_text(table) + "\n")
