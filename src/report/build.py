"""Building the report: one page per study and one `reports/index.html`, from the `results/<study>/` folders.

It walks the study registry (``src.studies.all_studies``): for every folder of ``results/`` the report states the
study's claim in one sentence, the VERDICT computed from the data by the study's rule (``src/studies/<study>.py``:
confirmed / refuted / nuanced, with the numbers it used), a table (mean ± 95% CI over replicas) and the figures:
leaderboard bars and validation curves per job for the Hydra grids (``runs.csv`` + ``curves.csv``), and
each study's own tables and figures (S2's histogram grids, the toys' trajectories, S7's per-net table, ...).
Studies that have not been run are listed and skipped, so the report builds from whatever exists.

Why a separate stage that reads only the small files the other stages declared as outputs (never MLflow): ``dvc
repro`` rebuilds it in seconds and a reader can regenerate it without the tracking store. The output is a pure
function of those files — no timestamps, sorted iteration, matplotlib PNGs without dates — so a second ``dvc
repro`` is a no-op. Figures are embedded in the HTML as data URIs (one self-contained file); the Markdown pages
reference the same PNGs under ``reports/figures/``.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from src import cli_args
from src.files import atomic_write_text
from src.report.render import how_verdicts_md, index_html, section_md
from src.studies import all_studies
from src.studies.base import Section, Study
from src.studies.sections import grid_section

UNREGISTERED_ORDER = 1000  # result folders of no registered study (e.g. smoke) come last, by name


def study_dirs(results: Path, studies: dict[str, Study]) -> list[tuple[Study, Path]]:
    """(study, folder) for every folder of `results` with results: a runs.csv, or a measured study's metrics.json.
    A folder of no registered study is shown as a grid without a claim."""
    found = []
    for p in results.iterdir():
        study = studies.get(p.name) or Study(p.name, f"Study {p.name}", order=UNREGISTERED_ORDER)
        if p.is_dir() and ((p / "runs.csv").exists() or (not study.grid and (p / "metrics.json").exists())):
            found.append((study, p))
    return sorted(found, key=lambda sp: (sp[0].order, sp[0].name))


def build(results: Path, out: Path) -> list[Path]:
    """Write `index.html`, one `<study>.md` per study and `figures/*.png`; return the files written."""
    if not results.is_dir():
        raise SystemExit(f"nnlab: error: {results} is not a folder: run `dvc repro` first")
    studies = all_studies()
    found = study_dirs(results, studies)
    if not found:
        raise SystemExit(f"nnlab: error: no {results}/<study>/ with results found: run `dvc repro` first")
    out.mkdir(parents=True, exist_ok=True)
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    # Remove only what this report writes (a page and `figures/<study>_*.png` per study): a user's own files in
    # --out stay (before: every *.md and the whole figures/ folder were deleted).
    for s in studies:
        (out / f"{s}.md").unlink(missing_ok=True)
        for fig in figdir.glob(f"{s}_*.png"):
            fig.unlink()
    sections = _sections(found, figdir)
    written: list[Path] = []
    for sec in sections:
        written.append(atomic_write_text(out / f"{sec.study}.md", section_md(sec)))
    written.append(atomic_write_text(out / "how_verdicts.md", how_verdicts_md(sections)))
    written += sorted(p for s in studies for p in figdir.glob(f"{s}_*.png"))
    present = {study.name for study, _ in found}
    missing = [s for s in studies if s not in present]
    written.append(atomic_write_text(out / "index.html", index_html(sections, missing)))
    return written


MAX_WORKERS = 4  # sections drawn at once (each its own figures); more cores than studies-worth of work is waste


def _usable_cores() -> int:
    """This machine's usable cores: joblib's count (CPU affinity and cgroup quotas, not the host's cores)."""
    from joblib import cpu_count

    return int(cpu_count())


def _section(study: Study, folder: Path, figdir: Path) -> Section:
    sec = (study.section or grid_section)(study, folder, figdir)
    sec.rules = sec.rules or [" ".join((r.__doc__ or "").split()) for r in study.rules]
    return sec


_FOUND: list[tuple[Study, Path]] = []  # what forked workers read by index (nothing of it is pickled)


def _section_at(i: int, figdir: Path) -> Section:
    return _section(*_FOUND[i], figdir)


def _sections(found: list[tuple[Study, Path]], figdir: Path) -> list[Section]:
    """Every study's section, in `found`'s order; on Linux with several cores, drawn by forked workers.

    Why: the sections are independent (each writes only its own `figures/<study>_*.png`) and ~95% of the stage is
    matplotlib drawing them, one core at a time; the stage reruns after any study's stage, so it is part of every
    edit-and-`dvc repro` loop. Forked workers start in milliseconds with everything imported; spawned ones would
    import it all again (~2 s), so elsewhere (and on one core) the sections are drawn in this process. The
    largest results folders go first, so that the longest section does not start last.
    """
    fork = sys.platform.startswith("linux") and len(found) > 1
    workers = min(len(found), MAX_WORKERS, _usable_cores()) if fork else 1
    if workers < 2:
        return [_section(study, d, figdir) for study, d in found]
    _FOUND[:] = found
    by_size = sorted(range(len(found)), key=lambda i: -sum(f.stat().st_size for f in found[i][1].glob("*.csv")))
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {i: pool.submit(_section_at, i, figdir) for i in by_size}
            return [futures[i].result() for i in range(len(found))]
    finally:
        _FOUND.clear()


def main(argv: list[str] | None = None) -> int:
    """`python -m src.report --results results --out reports`."""
    ap = cli_args.Parser(prog="python -m src.report", description="Build reports/ from results/<study>/.")
    ap.add_argument("--results", type=cli_args.input_dir, default=Path("results"), help="folder of results/<study>/")
    ap.add_argument("--out", type=cli_args.output_dir, default=Path("reports"), help="where to write the report")
    args = ap.parse_args(argv)
    for p in build(args.results, args.out):
        print(p)
    return 0
