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

import numpy as np

from src.lab.stats import BETTER, WORSE
from src.studies.base import (
    CONFIRMED,
    NUANCED,
    REFUTED,
    Results,
    Row,
    Section,
    Study,
    Verdict,
    missing,
    parse_name,
    truthy,
    value,
)
from src.studies.compare import SHARED_VIEW, pairs, scores
from src.studies.sections import grid_section, read_runs

CLAIM = "With batch norm, training succeeds across init scales (logspace(0,-4,16)); without it, it fails at most."


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Every job counts, diverged ones included: a job "succeeds" when its mean test accuracy (a diverged replica
    scoring chance) reaches 80% of the best job's. Confirmed when BN succeeds at ≥ 75% of its scales and plain nets
    at ≤ 50%; refuted when BN succeeds at no larger share; nuanced otherwise. Per scale, BN − plain is also tested
    paired by seed (Holm over the scales) and the counts of significant wins and losses are reported."""
    r = Results.of(res)
    view = scores(r.replicas, SHARED_VIEW)
    by: dict[bool, dict[str, str]] = {True: {}, False: {}}  # bn -> {init.std: job name}
    for row in r.rows:
        ov = parse_name(str(row.get("name", "")))
        bn = truthy(ov.get("model.batchnorm"))
        if bn is not None and str(row.get("name")) in view:
            by[bn][ov.get("init.std", "?")] = str(row.get("name"))
    if not by[True] or not by[False]:
        return missing(CLAIM, "model.batchnorm=true and false (with their replicas.csv rows)")
    mean = {name: float(np.mean(list(view[name].values()))) for d in by.values() for name in d.values()}
    level = 0.8 * max(mean.values())

    def wins(d: dict[str, str]) -> int:
        return sum(mean[n] >= level for n in d.values())

    div = {str(x.get("name")): value(x, "diverged_fraction") for x in r.rows}
    n_div = {bn: sum(div.get(n, 0.0) >= 1.0 for n in d.values()) for bn, d in by.items()}
    scales = sorted(set(by[True]) & set(by[False]), key=lambda s: float(s) if s.replace(".", "").isdigit() else 0)
    ps = pairs(view, [(by[True][s], by[False][s]) for s in scales])
    n_better, n_worse = sum(p.outcome == BETTER for p in ps), sum(p.outcome == WORSE for p in ps)
    f_bn, f_no = wins(by[True]) / len(by[True]), wins(by[False]) / len(by[False])
    nums = (f"success (mean test acc ≥ {level:.3f}, 80% of the best; diverged replicas score chance) at "
            f"{wins(by[True])} of {len(by[True])} scales with BN ({n_div[True]} fully diverged), {wins(by[False])} of "
            f"{len(by[False])} without ({n_div[False]} fully diverged); BN − plain paired by seed, Holm over "
            f"{len(ps)} scales: significantly better at {n_better}, worse at {n_worse}")
    if f_bn >= 0.75 and f_no <= 0.5:
        return Verdict(CLAIM, CONFIRMED, nums)
    if f_bn <= f_no:
        return Verdict(CLAIM, REFUTED, nums)
    return Verdict(CLAIM, NUANCED, nums)


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
