"""Compare two `results/` folders (e.g. `dvc repro` on main and on a branch): are the numbers unchanged?

    python -m benchmarks.compare_results /tmp/before/results results

For every study folder present in either: `runs.csv` row by row (matched by job index), `metrics.json` key by key,
`curves/*.csv` and the measured studies' CSVs cell by cell. Values are compared as written (runs.csv has 6
significant digits), so "equal" means equal on disk. Ignored, because they legitimately differ between two runs
of the same code: run ids (MLflow), `wall_time_s` and `tracking_time_s`. Prints one line per difference and a
summary per study; exits 1 if anything else differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

VOLATILE = {"run_id", "wall_time_s", "tracking_time_s"}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _diff_rows(a: list[dict[str, str]], b: list[dict[str, str]], where: str, key: str | None) -> list[str]:
    out = []
    if key:
        a_by, b_by = {r[key]: r for r in a}, {r[key]: r for r in b}
    else:
        a_by, b_by = dict(enumerate(a)), dict(enumerate(b))
    for k in sorted(set(a_by) | set(b_by), key=str):
        ra, rb = a_by.get(k), b_by.get(k)
        if ra is None or rb is None:
            out.append(f"{where} row {k}: only in {'after' if ra is None else 'before'}")
            continue
        for col in sorted(set(ra) | set(rb)):
            if col in VOLATILE:
                continue
            if ra.get(col) != rb.get(col):
                out.append(f"{where} row {k} {col}: {ra.get(col)!r} -> {rb.get(col)!r}")
    return out


def _diff_json(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) if k not in VOLATILE
                for d in _diff_json(a.get(k), b.get(k), f"{where}.{k}")]
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]


def compare_study(before: Path, after: Path) -> tuple[list[str], int]:
    """(differences, number of values compared) of one study folder."""
    diffs: list[str] = []
    n = 0
    for rel in sorted({p.relative_to(before) for p in before.rglob("*.csv")} |
                      {p.relative_to(after) for p in after.rglob("*.csv")}):
        a, b = before / rel, after / rel
        if not (a.exists() and b.exists()):
            diffs.append(f"{before.name}/{rel}: only {'before' if a.exists() else 'after'}")
            continue
        ra, rb = _csv(a), _csv(b)
        n += sum(len(r) for r in ra)
        diffs += _diff_rows(ra, rb, f"{before.name}/{rel}", "job" if rel.name == "runs.csv" else None)
    a, b = before / "metrics.json", after / "metrics.json"
    if a.exists() or b.exists():
        ja = json.loads(a.read_text()) if a.exists() else None
        jb = json.loads(b.read_text()) if b.exists() else None
        n += len(ja or {})
        diffs += _diff_json(ja, jb, f"{before.name}/metrics.json")
    return diffs, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare_results", description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    studies = sorted({p.name for p in args.before.iterdir() if p.is_dir()} |
                     {p.name for p in args.after.iterdir() if p.is_dir()})
    total = 0
    for s in studies:
        diffs, n = compare_study(args.before / s, args.after / s)
        print(f"{s:<16} {n:>7} values compared, {len(diffs)} differ")
        for d in diffs:
            print(f"    {d}")
        total += len(diffs)
    print(f"total differences (ignoring {', '.join(sorted(VOLATILE))}): {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
