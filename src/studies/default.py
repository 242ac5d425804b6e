"""The card's default grid, answered: moons and flower × zeros/xavier/he × SGD/Adam × clipping × early stopping.

48 arms (`conf/experiment/default.yaml`), each at the preset's shared lr and at its own lr tuned on validation.
The grid is a full factorial, so it is read as one: per dataset, the MAIN EFFECT of each factor (the mean
difference between two of its levels, averaged over the other factors, paired by seed) with its 95% CI, and the
two-way interactions that change a conclusion (the effect of one factor is significant at one level of another
and not, or reversed, at another: e.g. "Adam beats SGD" only for the inits that break symmetry).
A run without a preset (`python -m src.train`) is recorded under the study name `default` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from src.lab.stats import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE, Paired, fmt, pvalue, summary
from src.studies.base import (
    CONFIRMED,
    NO_DATA,
    NUANCED,
    REFUTED,
    Results,
    Row,
    Section,
    Study,
    Table,
    Verdict,
)
from src.studies.compare import (
    SHARED_VIEW,
    TUNED_VIEW,
    Effect,
    Scores,
    conclusion_changes,
    is_tuned,
    levels_of,
    main_effects,
    scores,
    simple_effects,
)
from src.studies.sections import grid_section, read_results

CLAIM = ("On moons and flower, the initializer decides whether the net trains at all: zero init stays at chance "
         "while Xavier and He train, equally well; Adam beats SGD; and gradient clipping (norm 1) and early "
         "stopping (patience 10) change test accuracy by less than 0.02.")
# factor -> the override that sets it in the preset's grid
FACTORS = {"init": "init", "optimizer": "optimizer", "clip": "train.clip_norm", "patience": "train.patience"}
CHANCE_BAND = 0.05


def _by_data(view: Scores) -> dict[str, Scores]:
    out: dict[str, Scores] = {}
    for arm, s in view.items():
        out.setdefault(levels_of([arm], {"data": "data"})[arm]["data"], {})[arm] = s
    return out


# The claim's contrasts: (check, factor, a, b, the outcome a − b must have)
CONTRASTS = (
    ("He trains", "init", "he", "zeros", BETTER),
    ("Xavier trains", "init", "xavier", "zeros", BETTER),
    ("He ≈ Xavier", "init", "he", "xavier", EQUIVALENT),
    ("Adam beats SGD", "optimizer", "adam", "sgd", BETTER),
    ("clipping changes < 0.02", "clip", "1.0", "null", EQUIVALENT),
    ("patience changes < 0.02", "patience", "10", "null", EQUIVALENT),
)


def _same(x: str, y: str) -> bool:
    """Two level names are the same level: equal text, or equal numbers (a sweep may spell 1.0 as `1`)."""
    if x == y:
        return True
    try:
        return float(x) == float(y)
    except ValueError:
        return False


def _contrast(effects: Sequence[Effect], factor: str, a: str, b: str) -> tuple[Paired, str, float] | None:
    """The main effect a − b (the family lists each pair once, in either order): (difference, outcome, Holm p)."""
    for e in effects:
        if e.factor == factor and _same(e.a, a) and _same(e.b, b):
            return e.diff, e.outcome, e.p_holm
        if e.factor == factor and _same(e.a, b) and _same(e.b, a):
            d = e.diff
            return (Paired(d.n, -d.mean, d.ci95, d.p, d.p_wilcoxon), {BETTER: WORSE, WORSE: BETTER}.get(
                e.outcome, e.outcome), e.p_holm)
    return None


HOLDS, AGAINST, UNCLEAR = "holds", "contradicted", "unclear"


def _state(got: str, want: str) -> str:
    """A check's state from a comparison's outcome: the wanted outcome holds; the opposite direction, or an
    equivalence where a difference was wanted (and vice versa), contradicts; inconclusive leaves it unclear."""
    if got == want:
        return HOLDS
    return UNCLEAR if got == INCONCLUSIVE else AGAINST


def checks(view: Scores) -> dict[str, tuple[str, str]]:
    """The claim's checks on each dataset: {'<data>: <check>': (state, the numbers)}."""
    out: dict[str, tuple[str, str]] = {}
    for data, v in sorted(_by_data(view).items()):
        lv = levels_of(list(v), FACTORS)
        eff = main_effects(v, lv, list(FACTORS))
        z = summary(np.array([x for a in v if lv[a]["init"] == "zeros" for x in v[a].values()]))
        at = math.isfinite(z["mean"]) and abs(z["mean"] - 0.5) <= CHANCE_BAND
        out[f"{data}: zeros at chance"] = (HOLDS if at else AGAINST, f"zeros mean {z['mean']:.3f}")
        for label, factor, a, b, want in CONTRASTS:
            got = _contrast(eff, factor, a, b)
            if got is None:
                out[f"{data}: {label}"] = (UNCLEAR, "no data")
                continue
            diff, o, q = got
            out[f"{data}: {label}"] = (_state(o, want), f"{a} − {b} {diff.text()} (Holm p {pvalue(q)}): {o}")
    return out


def _tally(c: Mapping[str, tuple[str, str]]) -> str:
    states = [st for st, _ in c.values()]
    if all(st == HOLDS for st in states):
        return CONFIRMED
    return REFUTED if AGAINST in states else NUANCED


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Seven checks per dataset, from the main effects (paired by seed, Holm over the 6 contrasts of a dataset):
    zeros' mean within 0.05 of chance; He − zeros, Xavier − zeros and Adam − SGD significantly positive; He −
    Xavier, clip 1.0 − none and patience 10 − none equivalent (95% CI within ±0.02). A check is contradicted when
    its comparison goes the other way (a significant difference where equivalence is claimed, or an equivalence or
    reversal where a difference is), unclear when inconclusive. Confirmed when all hold, refuted when one is
    contradicted, nuanced otherwise; judged at each arm's tuned lr, naming the checks that differ at the shared
    lr."""
    r = Results.of(res)
    shared = scores(r.replicas, SHARED_VIEW)
    if not shared:
        return Verdict(CLAIM, NO_DATA, "no per-replica rows (replicas.csv) to compare the arms seed by seed")
    c_s = checks(shared)
    if not is_tuned(r.replicas):
        return Verdict(CLAIM, _tally(c_s), "at the shared lr (no lr tuned): " + _text(c_s))
    c_t = checks(scores(r.replicas, TUNED_VIEW))
    diff = [k for k in c_t if c_s.get(k, (None,))[0] != c_t[k][0]]
    survive = ("every check has the same outcome at the shared lr" if not diff else
               "at the shared lr these checks differ: " + "; ".join(f"{k} {c_s[k][0]} ({c_s[k][1]})" for k in diff))
    return Verdict(CLAIM, _tally(c_t), f"at each arm's tuned lr: {_text(c_t)} | {survive}")


def _text(c: Mapping[str, tuple[str, str]]) -> str:
    held = [k for k, (st, _) in c.items() if st == HOLDS]
    other = [f"{k} {st} ({txt})" for k, (st, txt) in c.items() if st != HOLDS]
    return f"{len(held)}/{len(c)} checks hold" + (f"; {'; '.join(other)}" if other else "")


# --------------------------------------------------------------------------------------------------- report


def section(study: Study, study_dir: Path, figdir: Path) -> Section:
    """The grid section, plus main effects and interactions per dataset in both views (tables and a figure)."""
    from src.plots.compare import effects as effects_fig

    sec = grid_section(study, study_dir, figdir)
    res = read_results(study_dir)
    views = {SHARED_VIEW: scores(res.replicas, SHARED_VIEW)}
    if is_tuned(res.replicas):
        views[TUNED_VIEW] = scores(res.replicas, TUNED_VIEW)
    if not views[SHARED_VIEW]:
        return sec
    main_rows, inter_rows = [], []
    panels: dict[str, dict[str, list[tuple[str, float, float, bool]]]] = {}
    for view_name, view in views.items():
        label = "shared lr" if view_name == SHARED_VIEW else "tuned lr"
        for data, v in sorted(_by_data(view).items()):
            lv = levels_of(list(v), FACTORS)
            for f in FACTORS:
                for lev in sorted({x[f] for x in lv.values()}):
                    arms = [a for a in v if lv[a][f] == lev]
                    per_seed = [float(np.mean([v[a][s] for a in arms])) for s in sorted(set.intersection(
                        *(set(v[a]) for a in arms)))]
                    s = summary(np.array(per_seed))
                    main_rows.append([data, label, f, lev, fmt(s["mean"], s["ci95"]), "", "", ""])
            for e in main_effects(v, lv, list(FACTORS)):
                main_rows.append([data, label, e.factor, f"{e.a} − {e.b}", "", e.diff.text(), pvalue(e.p_holm),
                                  e.outcome])
                panels.setdefault(data, {}).setdefault(label, []).append(
                    (f"{e.factor}: {e.a} − {e.b}", e.diff.mean, e.diff.ci95, e.outcome in (BETTER, WORSE)))
            for it in conclusion_changes(simple_effects(v, lv, list(FACTORS))):
                inter_rows.append([data, label, it.what, it.across, "; ".join(
                    f"{e.at}: {e.diff.text()} (Holm p {pvalue(e.p_holm)}) {e.outcome}" for e in it.effects)])
    sec.tables.insert(0, ("Main effects per dataset: level means (averaged over the other factors, 95% CI over "
                          "seeds) and differences between levels (paired by seed, Holm over the dataset's "
                          "contrasts)", Table(["data", "view", "factor", "level / contrast", "mean ± 95% CI",
                                               "difference [95% CI], p, n", "Holm p", "outcome"], main_rows)))
    sec.tables.insert(1, ("Two-way interactions that change a conclusion (the effect of one factor at each level "
                          "of another; Holm over all simple effects of a dataset)", Table(
        ["data", "view", "effect", "depends on", "simple effects"], inter_rows or [["—", "—", "none", "—", "—"]])))
    sec.figures.insert(0, ("Main effects per dataset, at the shared lr and at each arm's tuned lr (filled: "
                           "significant after Holm)", effects_fig(panels, figdir / f"{study.name}_effects.png",
                                                                  title="default: main effects on test accuracy")))
    return sec


STUDY = Study("default", "The card's grid: data × init × optimizer × clipping × early stopping", order=80,
              rules=(verdict,), section=section)
