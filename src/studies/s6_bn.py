"""S6: batch normalisation (Ioffe & Szegedy 2015; the book's ch. 6 experiment) across init scales, on digits.

Five ReLU layers of 100, weights N(0, std²) for the 16 scales std = logspace(0, -4, 16), with and without BN,
mini-batch SGD (batch 100, lr 0.01, 20 epochs as in the book; `conf/experiment/s6_bn.yaml`). Claim: with BN
training succeeds across scales; without it, it fails at most of them (too small: activations collapse; too large:
they explode). The report adds test accuracy against the init scale to the grid section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.studies.base import (
    CONFIRMED,
    NUANCED,
    REFUTED,
    Row,
    Section,
    Study,
    Verdict,
    better,
    missing,
    ok,
    parse_name,
    truthy,
    value,
)
from src.studies.sections import grid_section, read_runs


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = "With batch norm, training succeeds across init scales (logspace(0,-4,16)); without it, it fails at most."
    usable = [r for r in rows if ok(r)]
    by: dict[bool, list[Row]] = {True: [], False: []}
    for r in usable:
        bn = truthy(parse_name(str(r.get("name", ""))).get("model.batchnorm"))
        if bn is not None:
            by[bn].append(r)
    if not by[True] or not by[False]:
        return missing(claim, "model.batchnorm=true and false")
    top = max(value(r, "test_acc") for r in usable)
    level = 0.8 * top  # "succeeds": within 20% of the best accuracy of the study

    def frac(rs: list[Row]) -> float:
        return sum(value(r, "test_acc") >= level for r in rs) / len(rs)

    f_bn, f_no = frac(by[True]), frac(by[False])
    pairs: dict[str, dict[bool, Row]] = {}
    for bn, rs in by.items():
        for r in rs:
            pairs.setdefault(parse_name(str(r.get("name", ""))).get("init.std", "?"), {})[bn] = r
    both = [p for p in pairs.values() if len(p) == 2]
    n_better = sum(better(p[True], p[False]) for p in both)
    n_worse = sum(better(p[False], p[True]) for p in both)
    nums = (f"success (test acc ≥ {level:.3f}, 80% of the best) at {f_bn:.0%} of {len(by[True])} scales with BN, "
            f"{f_no:.0%} of {len(by[False])} without; BN significantly better at {n_better} and worse at {n_worse} "
            f"of {len(both)} scales")
    if f_bn >= 0.75 and f_no <= 0.5:
        return Verdict(claim, CONFIRMED, nums)
    if f_bn <= f_no:
        return Verdict(claim, REFUTED, nums)
    return Verdict(claim, NUANCED, nums)


def section(study: Study, study_dir: Path, figdir: Path) -> Section:
    """The grid section, plus test accuracy against init.std with and without batch norm."""
    sec = grid_section(study, study_dir, figdir)
    fig = scale_plot(study.name, read_runs(study_dir / "runs.csv"), figdir)
    if fig is not None:
        sec.figures.append(("Test accuracy vs init scale", fig))
    return sec


def scale_plot(study: str, rows: list[dict[str, Any]], figdir: Path) -> Path | None:
    """Test accuracy vs init.std (mean ± 95% CI), one line with and one without batch norm."""
    from src.plots.grids import metric_vs_param

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
    return metric_vs_param(dict(sorted(series.items())), figdir / f"{study}_by_scale.png",
                           xlabel="init std (N(0, std²))", title=f"{study}: batch norm across init scales")


STUDY = Study("s6_bn", "S6 Batch normalisation across init scales", order=60, rules=(verdict,), section=section)
