"""`python -m src.report`: turn `results/<study>/` into `reports/<study>.md` and one `reports/index.html`.

Why a separate stage: the report reads only the small files the train stages declared as outputs
(`runs.csv`, `metrics.json`), never MLflow, so `dvc repro` can rebuild it in a second and a reader can
regenerate it without the tracking store. Figures are PNGs embedded in the HTML as data URIs, so the page
is a single file that opens anywhere.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import html
import json
import sys
from pathlib import Path
from typing import Any

from src.records import atomic_write_text


def read_runs(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in list(r.items()):
            if k not in ("name", "overrides", "status", "run_id", "config_hash", "error"):
                with contextlib.suppress(ValueError):
                    r[k] = float(v) if v not in ("", None) else float("nan")
    return rows


def study_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per job, best test accuracy first."""
    from src.callbacks import leaderboard_rows, leaderboard_text

    recs = [{"name": r["name"], "status": r["status"], "metrics": r} for r in rows]
    return leaderboard_text(leaderboard_rows(recs))


def build(results: Path, out: Path) -> list[Path]:
    """Write one Markdown page per study and the HTML index; return the files written."""
    from src import plots
    from src.callbacks import leaderboard_rows

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections: list[str] = []
    studies = sorted(p.parent for p in results.glob("*/runs.csv"))
    if not studies:
        raise SystemExit(f"nnlab: error: no {results}/<study>/runs.csv found: run `dvc repro` first")
    for study_dir in studies:
        study = study_dir.name
        rows = read_runs(study_dir / "runs.csv")
        metrics = json.loads((study_dir / "metrics.json").read_text()) if (study_dir / "metrics.json").exists() else {}
        table = study_table(rows)
        recs = leaderboard_rows([{"name": r["name"], "status": r["status"], "metrics": r} for r in rows])
        fig = plots.leaderboard_plot(recs, out / f"{study}_leaderboard.png")
        md = (f"# Study `{study}`\n\n{len(rows)} jobs, {metrics.get('failed', 0)} failed, "
              f"{metrics.get('diverged', 0)} fully diverged.\n\n{table}\n\n![leaderboard]({fig.name})\n")
        written.append(atomic_write_text(out / f"{study}.md", md))
        written.append(fig)
        sections.append(_html_section(study, rows, metrics, fig))
    page = _html_page(sections)
    written.append(atomic_write_text(out / "index.html", page))
    return written


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _html_section(study: str, rows: list[dict[str, Any]], metrics: dict[str, Any], fig: Path) -> str:
    from src.callbacks import leaderboard_rows

    recs = leaderboard_rows([{"name": r["name"], "status": r["status"], "metrics": r} for r in rows])
    body = "".join(
        f"<tr><td>{i}</td><td>{html.escape(str(r['name']))}</td><td>{html.escape(str(r['status']))}</td>"
        f"<td>{r['test_acc']:.3f} ± {r['test_acc_ci95']:.3f}</td><td>{r['train_acc']:.3f}</td>"
        f"<td>{r['epochs_used']:.0f}</td><td>{r['diverged_fraction']:.2f}</td></tr>"
        for i, r in enumerate(recs, 1))
    return (f'<section id="{html.escape(study)}"><h2>{html.escape(study)}</h2>'
            f"<p>{len(rows)} jobs; best: {html.escape(str(metrics.get('best_job')))}</p>"
            "<table><thead><tr><th>#</th><th>job</th><th>status</th><th>test acc (95% CI)</th>"
            f"<th>train acc</th><th>epochs</th><th>diverged</th></tr></thead><tbody>{body}</tbody></table>"
            f"{_img(fig)}</section>")


def _html_page(sections: list[str]) -> str:
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%;display:block;margin:1em 0}")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nnlab report</title>"
            f"<style>{style}</style></head><body><h1>nnlab report</h1>{''.join(sections)}</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"), help="folder of results/<study>/")
    ap.add_argument("--out", type=Path, default=Path("reports"), help="where to write the report")
    args = ap.parse_args(argv)
    for p in build(args.results, args.out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
