"""`python -m src.report --results results --out reports`: one page per study and one `reports/index.html`.

For every folder of ``results/`` the report states the study's claim in one sentence, the VERDICT computed from the
data by the study's rule in ``src/verdicts.py`` (confirmed / refuted / nuanced, with the numbers it used), a table
(mean ± 95% CI over replicas) and the figures: leaderboard bars and validation curves per job for the Hydra grids
(``runs.csv`` + ``curves/jobNNN.csv``); the histogram grid and gradient norms by layer for S2; trajectories and the
clipping toy for S3/S4; the per-net table of the gradient check for S7. Studies that have not been run are listed
and skipped, so the report builds from whatever exists (e.g. only ``results/default``).

Why a separate stage that reads only the small files the other stages declared as outputs (never MLflow): ``dvc
repro`` rebuilds it in seconds and a reader can regenerate it without the tracking store. The output is a pure
function of those files — no timestamps, sorted iteration, matplotlib PNGs without dates — so a second ``dvc
repro`` is a no-op. Figures are embedded in the HTML as data URIs (one self-contained file); the Markdown pages
reference the same PNGs under ``reports/figures/``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import html
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from src.files import atomic_write_text
from src.verdicts import Verdict, judge, parse_name

# Known studies, in reading order, with a title. Other folders (default, smoke, ...) follow alphabetically.
STUDIES: dict[str, str] = {
    "s1_init": "S1 Initialization (circles): every initializer over seeds",
    "s1_course": "S1 Initialization: the course's table",
    "s2_activations": "S2 Activation and gradient statistics in deep nets (no training)",
    "toys": "S3/S4 Toy problems: optimizer trajectories and gradient clipping",
    "s3_optim": "S3 Optimizers",
    "s3_course": "S3 Optimizers: the course's moons experiment",
    "s3_decay": "S3 Learning-rate decay: the course's scheduled decay",
    "s4_clip": "S4 Gradient clipping in an unstable setting",
    "s5_early": "S5 Early stopping",
    "s6_bn": "S6 Batch normalisation across init scales",
    "s6_reg": "S6 L2 and dropout",
    "s6_preproc": "S6 Input preprocessing",
    "s7_gradcheck": "S7 Gradient checking",
}
NO_GRID = ("s2_activations", "toys", "s7_gradcheck")
TEXT_KEYS = ("name", "overrides", "status", "run_id", "config_hash", "error")
COLUMNS = ("test_acc", "train_acc", "val_acc", "epochs_used", "best_epoch", "diverged_fraction", "wall_time_s",
           "status")


# ------------------------------------------------------------------------------------------------- reading


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
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_curve(path: Path) -> dict[str, list[float]]:
    cols: dict[str, list[float]] = {}
    for row in read_csv(path):
        for k, v in row.items():
            try:
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                cols.setdefault(k, []).append(math.nan)
    return cols


def _metrics(study_dir: Path) -> dict[str, Any]:
    p = study_dir / "metrics.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def _order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best test accuracy first, failed jobs last, ties by job number (deterministic)."""
    def key(r: dict[str, Any]) -> tuple[bool, float, float]:
        acc = r.get("test_acc", math.nan)
        acc = acc if isinstance(acc, float) and math.isfinite(acc) else -1.0
        job = r.get("job", math.nan)
        return (r.get("status") == "failed", -acc, job if isinstance(job, float) and math.isfinite(job) else 1e9)

    return sorted(rows, key=key)


# ------------------------------------------------------------------------------------------------ formatting


def _fmt(v: Any, digits: int = 3) -> str:
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
    return _fmt(v)


def _job(r: dict[str, Any]) -> str:
    job = r.get("job")
    return f"{job:.0f}" if isinstance(job, float) and math.isfinite(job) else str(job or "")


HEAD = {"test_acc": "test acc (mean ± 95% CI)", "train_acc": "train acc", "val_acc": "val acc",
        "epochs_used": "epochs used", "best_epoch": "best epoch", "diverged_fraction": "diverged",
        "wall_time_s": "time (s)", "status": "status"}


class Table:
    """A table rendered both as Markdown and as HTML."""

    def __init__(self, head: list[str], rows: list[list[str]]) -> None:
        self.head, self.rows = head, rows

    def md(self) -> str:
        esc = [[c.replace("|", "\\|") for c in r] for r in self.rows]
        lines = ["| " + " | ".join(self.head) + " |", "|" + "---|" * len(self.head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])

    def html(self) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in self.head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class Section:
    """One study: title, verdicts, tables, figures, notes."""

    def __init__(self, study: str, title: str) -> None:
        self.study, self.title = study, title
        self.verdicts: list[Verdict] = []
        self.notes: list[str] = []
        self.tables: list[tuple[str, Table]] = []
        self.figures: list[tuple[str, Path]] = []


# ----------------------------------------------------------------------------------------------- sections


def _grid_section(study_dir: Path, figdir: Path) -> Section:
    from src.plots import grids as plots

    study = study_dir.name
    sec = Section(study, STUDIES.get(study, f"Study {study}"))
    rows = read_runs(study_dir / "runs.csv")
    metrics = _metrics(study_dir)
    sec.verdicts = judge(study, rows, metrics)
    reps = sorted({int(r["replicas"]) for r in rows if isinstance(r.get("replicas"), float)
                   and math.isfinite(r["replicas"])})
    n_failed = sum(r.get("status") == "failed" for r in rows)
    sec.notes.append(f"{len(rows)} jobs ({n_failed} failed), replicas per job: "
                     f"{', '.join(map(str, reps)) or 'n/a'}; metrics are means over replicas, test accuracy "
                     "with its 95% CI (Student t).")
    ordered = _order(rows)
    sec.tables.append(("Jobs (best test accuracy first)", Table(
        ["#", "job", "name", *(HEAD[c] for c in COLUMNS)],
        [[str(i), _job(r), str(r.get("name", "")), *(_cell(r, c) for c in COLUMNS)]
         for i, r in enumerate(ordered, 1)])))
    for r in ordered:
        if r.get("status") == "failed" and r.get("error"):
            sec.notes.append(f"job {r.get('name')} failed: {str(r['error']).splitlines()[0][:200]}")
    table = [{"name": str(r.get("name", "")), "status": str(r.get("status", "")),
              "test_acc": r.get("test_acc", math.nan), "test_acc_ci95": r.get("test_acc_ci95", math.nan)}
             for r in ordered]
    table = [{**t, "test_acc": t["test_acc"] if isinstance(t["test_acc"], float) else math.nan,
              "test_acc_ci95": t["test_acc_ci95"] if isinstance(t["test_acc_ci95"], float) else math.nan}
             for t in table]
    sec.figures.append(("Test accuracy per job", plots.leaderboard_plot(table, figdir / f"{study}_leaderboard.png")))
    curves: dict[str, dict[str, list[float]]] = {}
    for r in sorted(rows, key=lambda r: r.get("job", 0.0) if isinstance(r.get("job"), float) else 0.0):
        job = r.get("job")
        if not (isinstance(job, float) and math.isfinite(job)):
            continue
        p = study_dir / "curves" / f"job{int(job):03d}.csv"
        if p.exists():
            curves[str(r.get("name", f"job{int(job)}"))] = read_curve(p)
    if curves:
        sec.figures.append(("Validation curves per job (mean over replicas)", plots.curves_by_job(
            curves, figdir / f"{study}_curves.png", title=f"{study}: validation loss and accuracy per job")))
    else:
        sec.notes.append(f"no curves found in {study_dir / 'curves'}")
    scale = _scale_plot(study, rows, figdir)
    if scale is not None:
        sec.figures.append(scale)
    return sec


def _scale_plot(study: str, rows: list[dict[str, Any]], figdir: Path) -> tuple[str, Path] | None:
    """S6 BN: test accuracy vs init.std, one line with and one without batch norm."""
    from src.plots import grids as plots

    series: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        ov = parse_name(str(r.get("name", "")))
        if "init.std" not in ov or "model.batchnorm" not in ov or r.get("status") == "failed":
            continue
        try:
            x = float(ov["init.std"])
        except ValueError:
            continue
        label = "with batch norm" if ov["model.batchnorm"].lower() == "true" else "without batch norm"
        series.setdefault(label, []).append((x, float(r.get("test_acc", math.nan)),
                                             float(r.get("test_acc_ci95", math.nan))))
    if not series:
        return None
    return ("Test accuracy vs init scale", plots.metric_vs_param(
        dict(sorted(series.items())), figdir / f"{study}_by_scale.png", xlabel="init std (N(0, std²))",
        title=f"{study}: batch norm across init scales"))


def _copy_fig(src: Path, figdir: Path, study: str) -> Path:
    dst = figdir / f"{study}_{src.name}"
    shutil.copyfile(src, dst)
    return dst


S2_REFERENCE = [
    ("tanh 10×500, std 0.01: std at layer 1", "tanh_std001_layer1_std", "≈0.22 (tanh of N(0, 0.22²))"),
    ("tanh 10×500, std 0.01: std at layer 10", "tanh_std001_last_std", "≈3e-7"),
    ("tanh 10×500, std 0.01: shrink factor per layer", "tanh_std001_shrink_per_layer", "≈4.5"),
    ("tanh 10×500, std 1: saturated fraction (|a|>0.99)", "tanh_std1_saturated_mean", "≈0.9"),
    ("tanh 10×500, Xavier: std at layer 1", "tanh_xavier_layer1_std", "≈0.63"),
    ("tanh 10×500, Xavier: std at layer 10", "tanh_xavier_last_std", "≈0.22"),
    ("ReLU 5×100, He: std layer 5 / layer 1", "relu_he_last_over_first_std", "≈1 (stable)"),
    ("ReLU 5×100, Xavier: std layer 5 / layer 1", "relu_xavier_last_over_first_std", "< 1 (shrinks)"),
    ("ReLU 5×100, std 0.01: std layer 5 / layer 1", "relu_std001_last_over_first_std", "≈0 (collapse)"),
    ("sigmoid 5×100, std 1: saturated fraction", "sigmoid_std1_saturated_mean", "large (piles at 0 and 1)"),
    ("deep sigmoid + Xavier: gradient factor per layer", "deep_sigmoid_xavier_grad_factor_per_layer", "≤ 0.25"),
    ("deep sigmoid + Xavier: ‖∂L/∂W₁‖ / ‖∂L/∂W₁₀‖", "deep_sigmoid_xavier_grad_first_over_last", "≪ 1"),
    ("deep ReLU + He: gradient factor per layer", "deep_relu_he_grad_factor_per_layer", "≈1"),
    ("deep tanh + Xavier: gradient factor per layer", "deep_tanh_xavier_grad_factor_per_layer", "—"),
    ("deep sigmoid + std 1: gradient factor per layer", "deep_sigmoid_std1_grad_factor_per_layer", "—"),
]


def _s2_section(study_dir: Path, figdir: Path) -> Section:
    study = study_dir.name
    sec = Section(study, STUDIES[study])
    m = _metrics(study_dir)
    sec.verdicts = judge(study, None, m)
    sec.tables.append(("Measured vs SPEC", Table(
        ["quantity", "SPEC / articles", "measured (mean over replicas)"],
        [[label, ref, _fmt(m[key])] for label, key, ref in S2_REFERENCE if key in m])))
    stats_path = study_dir / "layer_stats.csv"
    if stats_path.exists():
        rows = read_csv(stats_path)
        groups: dict[tuple[str, str], list[dict[str, str]]] = {}
        for r in rows:
            groups.setdefault((r["net"], r["init"]), []).append(r)
        out = []
        for (net, init), rs in groups.items():
            rs = sorted(rs, key=lambda r: int(r["layer"]))
            sat = sum(float(r["saturated"]) for r in rs) / len(rs)
            dead = sum(float(r["dead"]) for r in rs) / len(rs)
            out.append([net, init, _fmt(float(rs[0]["act_std"])), _fmt(float(rs[-1]["act_std"])),
                        _fmt(float(rs[-1]["act_mean"])), f"{sat:.2f}", f"{dead:.2f}",
                        _fmt(float(rs[0]["grad_norm"])), _fmt(float(rs[-1]["grad_norm"]))])
        sec.tables.append(("Per net and init (first → last hidden layer; full per-layer table in layer_stats.csv)",
                           Table(["net", "init", "std L1", "std last", "mean last", "saturated (avg)",
                                  "dead (avg)", "‖∂L/∂W‖ L1", "‖∂L/∂W‖ last"], out)))
    for png in sorted(study_dir.glob("histograms_*.png")):
        sec.figures.append((f"Activation histograms: {png.stem.removeprefix('histograms_')} (layers across, "
                            "inits down)", _copy_fig(png, figdir, study)))
    if (study_dir / "grad_norms.png").exists():
        sec.figures.append(("Gradient norm by layer, deep nets", _copy_fig(study_dir / "grad_norms.png", figdir,
                                                                             study)))
    return sec


def _toys_section(study_dir: Path, figdir: Path) -> Section:
    study = study_dir.name
    sec = Section(study, STUDIES[study])
    m = _metrics(study_dir)
    sec.verdicts = judge(study, None, m)
    names = ("sgd", "momentum", "adagrad", "adam")
    sec.tables.append(("S3 valley x²/20 + y² from (−7, 2), 30 steps (the book's learning rates)", Table(
        ["optimizer", "final distance to (0, 0)", "final f"],
        [[n, _fmt(_num(m.get(f"s3_{n}_final_distance"))), _fmt(_num(m.get(f"s3_{n}_final_f")))]
         for n in names if f"s3_{n}_final_distance" in m])))
    sec.tables.append(("S4 loss x⁴ from x = 10, lr 0.1", Table(
        ["setting", "x after 1 step", "final loss", "loss overflows at step"],
        [[label, _fmt(_num(m.get(f"s4_{k}_x_after_1_step")), 10), _fmt(_num(m.get(f"s4_{k}_final_loss"))),
          "never" if _num(m.get(f"s4_{k}_overflow_step")) < 0 else _fmt(_num(m.get(f"s4_{k}_overflow_step")), 0)]
         for label, k in (("no clipping", "noclip"), ("clip by value 100", "clipvalue100"),
                          ("clip by norm 100", "clipnorm100")) if f"s4_{k}_x_after_1_step" in m])))
    for name, caption in (("trajectories.png", "Optimizer trajectories on x²/20 + y²"),
                          ("clip.png", "Clipping toy: x and loss per step")):
        if (study_dir / name).exists():
            sec.figures.append((caption, _copy_fig(study_dir / name, figdir, study)))
    return sec


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _s7_section(study_dir: Path, figdir: Path) -> Section:
    study = study_dir.name
    sec = Section(study, STUDIES[study])
    m = _metrics(study_dir)
    sec.verdicts = judge(study, None, m)
    p = study_dir / "gradcheck.csv"
    if p.exists():
        nets: dict[str, list[dict[str, str]]] = {}
        for r in read_csv(p):
            nets.setdefault(r["net"], []).append(r)
        rows = []
        for net, rs in nets.items():
            worst = max(rs, key=lambda r: float(r["rel_error"]))
            ok = all(r["passed"] == "1" for r in rs)
            rows.append([net, rs[0]["overrides"] or "(defaults)", str(len(rs)), f"{float(worst['rel_error']):.2e}",
                         worst["param"], rs[0]["eps"], rs[0]["threshold"], "pass" if ok else "FAIL"])
        sec.tables.append(("Per configured net (float64, fixed dropout masks; full table in gradcheck.csv)", Table(
            ["net", "overrides", "params", "max rel. error", "worst param", "eps", "threshold", "result"], rows)))
    sec.notes.append("Run it on any configured net: `python -m src.gradcheck model=... init=... data=...`.")
    return sec


# ------------------------------------------------------------------------------------------------ rendering


def _verdict_html(v: Verdict) -> str:
    cls = v.verdict.replace(" ", "-")
    return (f'<div class="verdict {cls}"><p class="claim"><b>Claim.</b> {html.escape(v.claim)}</p>'
            f'<p><span class="badge">{html.escape(v.verdict.upper())}</span> {html.escape(v.reason)}</p></div>')


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _section_html(sec: Section) -> str:
    parts = [f'<section id="{html.escape(sec.study)}"><h2>{html.escape(sec.title)} '
             f'<code>{html.escape(sec.study)}</code></h2>']
    parts += [_verdict_html(v) for v in sec.verdicts]
    if not sec.verdicts:
        parts.append("<p><i>No claim is registered for this study: numbers only.</i></p>")
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in sec.notes]
    for caption, t in sec.tables:
        parts.append(f"<h3>{html.escape(caption)}</h3>{t.html()}")
    parts += [_img(p, caption) for caption, p in sec.figures]
    parts.append("</section>")
    return "".join(parts)


def _section_md(sec: Section) -> str:
    out = [f"# {sec.title} (`{sec.study}`)", ""]
    for v in sec.verdicts:
        out += [f"**Claim.** {v.claim}", "", f"**Verdict: {v.verdict.upper()}.** {v.reason}", ""]
    if not sec.verdicts:
        out += ["_No claim is registered for this study: numbers only._", ""]
    out += [f"{n}\n" for n in sec.notes]
    for caption, t in sec.tables:
        out += [f"## {caption}", "", t.md(), ""]
    out += [f"![{caption}](figures/{p.name})\n" for caption, p in sec.figures]
    return "\n".join(out).rstrip() + "\n"


STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
         "th{background:#f4f4f4}img{max-width:100%;display:block}figure{margin:1em 0}"
         "figcaption{font-size:12px;color:#555}.verdict{border-left:6px solid #999;padding:.2em .8em;margin:.6em 0;"
         "background:#fafafa}.confirmed{border-color:#2a8a2a}.refuted{border-color:#c0392b}"
         ".nuanced{border-color:#d4a017}.badge{font-weight:bold}.note{font-size:13px;color:#444}"
         "section{margin-bottom:3em}td.confirmed{color:#2a8a2a;font-weight:bold}td.refuted{color:#c0392b;"
         "font-weight:bold}td.nuanced{color:#a07800;font-weight:bold}")


def _index_html(sections: list[Section], missing: list[str]) -> str:
    rows = []
    for s in sections:
        vs = s.verdicts or [None]
        for v in vs:
            verdict = v.verdict if v else "—"
            claim = v.claim if v else "(no registered claim)"
            rows.append(f'<tr><td><a href="#{html.escape(s.study)}">{html.escape(s.study)}</a></td>'
                        f'<td class="{verdict.replace(" ", "-")}">{html.escape(verdict)}</td>'
                        f"<td>{html.escape(claim)}</td></tr>")
    summary = ("<h2>Verdicts</h2><table><thead><tr><th>study</th><th>verdict</th><th>claim</th></tr></thead>"
               f"<tbody>{''.join(rows)}</tbody></table>")
    miss = ""
    if missing:
        miss = ("<p class=note>Not in this report (no <code>results/&lt;study&gt;</code> yet; run <code>dvc repro"
                f"</code>): {html.escape(', '.join(missing))}.</p>")
    intro = ("<p>Each claim from the source articles and course, its verdict computed from the data by a rule in "
             "<code>src/verdicts.py</code>, the table (mean ± 95% CI over seeds) and the figures.</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nnlab report</title>"
            f"<style>{STYLE}</style></head><body><h1>nnlab report</h1>{intro}{summary}{miss}"
            f"{''.join(_section_html(s) for s in sections)}</body></html>\n")


def _study_dirs(results: Path) -> list[Path]:
    dirs = [p for p in results.iterdir() if p.is_dir() and ((p / "runs.csv").exists() or
                                                             (p.name in NO_GRID and (p / "metrics.json").exists()))]
    known = list(STUDIES)
    return sorted(dirs, key=lambda p: (known.index(p.name) if p.name in known else len(known), p.name))


def build(results: Path, out: Path) -> list[Path]:
    """Write `index.html`, one `<study>.md` per study and `figures/*.png`; return the files written."""
    if not results.is_dir():
        raise SystemExit(f"nnlab: error: {results} is not a folder: run `dvc repro` first")
    studies = _study_dirs(results)
    if not studies:
        raise SystemExit(f"nnlab: error: no {results}/<study>/ with results found: run `dvc repro` first")
    out.mkdir(parents=True, exist_ok=True)
    figdir = out / "figures"
    if figdir.exists():
        shutil.rmtree(figdir)
    figdir.mkdir()
    sections: list[Section] = []
    for d in studies:
        builder = {"s2_activations": _s2_section, "toys": _toys_section, "s7_gradcheck": _s7_section}.get(d.name)
        sec = builder(d, figdir) if builder else _grid_section(d, figdir)
        sections.append(sec)
    written: list[Path] = []
    for old in out.glob("*.md"):
        old.unlink()
    for sec in sections:
        written.append(atomic_write_text(out / f"{sec.study}.md", _section_md(sec)))
    written += sorted(figdir.glob("*.png"))
    present = {d.name for d in studies}
    missing = [s for s in STUDIES if s not in present]
    written.append(atomic_write_text(out / "index.html", _index_html(sections, missing)))
    return written


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
