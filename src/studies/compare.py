"""Comparing a study's arms from its per-replica rows: two views, paired claims, rankings, factorial effects.

The rows are `results/<study>/replicas.csv` (one per replica a job trained, src/lab/tuning.py): the report
seeds at the configured lr (role `shared`), and with `tune.enabled` the tuning replicas (role `grid`) and the
report seeds at each arm's chosen lr (role `tuned`). Two views of every arm follow:
  - shared: each arm at the lr its config names (one lr for every arm of a preset);
  - tuned: each arm at its own lr, chosen on validation data (an arm whose chosen lr is the shared one has no
    `tuned` rows: its shared rows are the same replicas).
In both, replica r of every arm has seed r, so arms are compared seed by seed (src/lab/stats.py: paired tests,
Holm's correction, diverged replicas scored at chance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from src.lab.stats import (
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    WORSE,
    Paired,
    holm,
    outcome,
    paired,
    pvalue,
    score,
    summary,
)
from src.studies.base import CONFIRMED, NO_DATA, NUANCED, REFUTED, Row, Verdict, parse_name, value

SHARED_VIEW, TUNED_VIEW = "shared", "tuned"
Scores = dict[str, dict[int, float]]  # arm name -> {seed: score}


def _div(r: Row) -> bool:
    return value(r, "diverged") > 0


def scores(replicas: Sequence[Row], which: str, key: str = "test_acc") -> Scores:
    """{arm: {seed: score}} of one view on the report seeds (a diverged replica scores chance)."""
    shared: Scores = {}
    tuned: Scores = {}
    for r in replicas:
        role = str(r.get("role", "shared"))
        if role not in ("shared", "tuned"):
            continue
        chance = value(r, "chance") if math.isfinite(value(r, "chance")) else 0.5
        s = score(value(r, key), _div(r), chance)
        (shared if role == "shared" else tuned).setdefault(str(r.get("name")), {})[int(value(r, "seed"))] = s
    if which == SHARED_VIEW:
        return shared
    return {arm: tuned.get(arm, seeds) for arm, seeds in shared.items()}


def is_tuned(replicas: Sequence[Row]) -> bool:
    return any(str(r.get("role")) == "grid" for r in replicas)


def arm_lrs(replicas: Sequence[Row], tuning: Sequence[Row]) -> tuple[dict[str, float], dict[str, float], set[str]]:
    """(shared lr per arm, chosen lr per arm, arms whose chosen lr is an end of the grid)."""
    shared = {str(r.get("name")): value(r, "lr") for r in replicas if str(r.get("role")) == "shared"}
    chosen = {str(r.get("name")): value(r, "lr") for r in tuning if value(r, "chosen") > 0}
    edge = {str(r.get("name")) for r in tuning if value(r, "at_edge") > 0}
    return shared, chosen, edge


# ------------------------------------------------------------------------------------------------- facets


PANEL_FIRST = ("data", "optimizer")  # keys that split panels before any other: different tasks / update rules


def facets(names: list[str], max_lines: int = 12) -> tuple[list[str], list[str]]:
    """Split the overrides that vary across `names` into (panel keys, line keys). Keys of PANEL_FIRST make panels
    while a panel would hold more than `max_lines` lines, then the keys with fewest levels; the rest draw lines
    (colour by the first line key, line style by the second, marker by the third: src/plots/compare.py)."""
    parsed = [parse_name(n) for n in names]
    keys = list(dict.fromkeys(k for p in parsed for k in p))
    levels = {k: list(dict.fromkeys(p.get(k, "") for p in parsed)) for k in keys}
    varying = [k for k in keys if len(levels[k]) > 1]
    order = [k for k in PANEL_FIRST if k in varying] + sorted((k for k in varying if k not in PANEL_FIRST),
                                                              key=lambda k: len(levels[k]))
    panels: list[str] = []
    n_lines = int(np.prod([len(levels[k]) for k in varying])) if varying else 1
    for k in order:
        if n_lines <= max_lines or len(panels) == len(varying) - 1:
            break
        panels.append(k)
        n_lines //= len(levels[k])
    lines = sorted((k for k in varying if k not in panels), key=lambda k: -len(levels[k]))
    return [k for k in varying if k in panels], lines


def facet_label(name: str, keys: list[str]) -> str:
    p = parse_name(name)
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={p.get(k, '?')}" for k in keys) or "all arms"


# ------------------------------------------------------------------------------------------------ rankings


@dataclass(frozen=True)
class Ranked:
    arm: str
    mean: float
    ci95: float
    n: int
    rank: int


def ranking(view: Mapping[str, Mapping[int, float]]) -> list[Ranked]:
    """Arms by mean score over their seeds, best first (equal means share a rank; names break the tie)."""
    s = {a: summary(np.array(list(x.values()), dtype=float)) for a, x in view.items()}
    order = sorted(s, key=lambda a: (-s[a]["mean"] if math.isfinite(s[a]["mean"]) else math.inf, a))
    out: list[Ranked] = []
    for i, a in enumerate(order, 1):
        rank = out[-1].rank if out and out[-1].mean == s[a]["mean"] else i
        out.append(Ranked(a, s[a]["mean"], s[a]["ci95"], s[a]["n"], rank))
    return out


def kendall(a: Sequence[Ranked], b: Sequence[Ranked]) -> float:
    """Kendall's tau-b between two rankings of the same arms (1: the same order; NaN for < 2 arms)."""
    mb = {r.arm: r.mean for r in b}
    arms = [r.arm for r in a if r.arm in mb]
    if len(arms) < 2:
        return math.nan
    ma = {r.arm: r.mean for r in a}
    from scipy import stats as st  # here, not at import: ~1 s of every `src.train` start-up

    return float(st.kendalltau([ma[x] for x in arms], [mb[x] for x in arms]).statistic)


# --------------------------------------------------------------------------------------- paired claims


@dataclass(frozen=True)
class Pair:
    """One comparison a − b of a verdict's family: the paired difference, its Holm-adjusted p and outcome."""

    a: str
    b: str
    diff: Paired
    p_holm: float
    outcome: str

    def text(self, label: Callable[[str], str] = str) -> str:
        return f"{label(self.a)} − {label(self.b)} {self.diff.text()} (Holm p {pvalue(self.p_holm)}): {self.outcome}"


def pairs(view: Mapping[str, Mapping[int, float]], wanted: Sequence[tuple[str, str]]) -> list[Pair]:
    """Paired tests of each (a, b) of `wanted` (arms missing from the view are skipped), Holm-corrected together:
    they are the family one verdict rests on."""
    wanted = [(a, b) for a, b in wanted if a in view and b in view]
    diffs = [paired(view[a], view[b]) for a, b in wanted]
    adj = holm([d.p for d in diffs])
    return [Pair(a, b, d, q, outcome(d, q)) for (a, b), d, q in zip(wanted, diffs, adj, strict=True)]


def superiority(ps: Sequence[Pair]) -> str:
    """A claim "a beats each b" from its pairs: confirmed when every a − b is significantly positive, refuted when
    none is and at least one is significantly negative or equivalent (evidence against), nuanced otherwise."""
    if not ps:
        return NO_DATA
    outs = [p.outcome for p in ps]
    if all(o == BETTER for o in outs):
        return CONFIRMED
    if BETTER not in outs and any(o in (WORSE, EQUIVALENT) for o in outs):
        return REFUTED
    return NUANCED


@dataclass(frozen=True)
class ViewResult:
    """A claim judged in one view: its status, the pairs it used, and a sentence with the numbers."""

    status: str
    pairs: tuple[Pair, ...]
    text: str


def two_views(claim: str, replicas: Sequence[Row], tuning: Sequence[Row],
              judge_view: Callable[[Scores], ViewResult], key: str = "test_acc") -> Verdict:
    """The verdict of a ranking claim judged in both views.

    The tuned view decides (SPEC: every arm at its own validation-chosen lr); the shared-lr view is reported
    next to it, and the reason says whether the conclusion survives tuning. Without tuning rows the shared view
    decides and the reason says that no lr was tuned.
    """
    shared = scores(replicas, SHARED_VIEW, key)
    if not shared:
        return Verdict(claim, NO_DATA, "no per-replica rows (replicas.csv) to compare the arms seed by seed")
    lrs, _, _ = arm_lrs(replicas, tuning)
    lr_text = _lr_text(lrs)
    s = judge_view(shared)
    if not is_tuned(replicas):
        return Verdict(claim, s.status, f"at the shared lr {lr_text} (no lr tuned): {s.text}")
    t = judge_view(scores(replicas, TUNED_VIEW, key))
    survives = ("the conclusion survives tuning" if t.status == s.status else
                f"the conclusion does not survive tuning ({s.status} at the shared lr, {t.status} once tuned)")
    return Verdict(claim, t.status, f"at each arm's tuned lr: {t.text} | at the shared lr {lr_text}: {s.text} | "
                   f"{survives}")


def _lr_text(lrs: Mapping[str, float]) -> str:
    vals = sorted({v for v in lrs.values() if math.isfinite(v)})
    return "/".join(f"{v:g}" for v in vals) or "?"


# -------------------------------------------------------------------------------------------- factorial


@dataclass(frozen=True)
class Effect:
    """A difference between two levels of a factor (averaged over the other factors), paired by seed; `at` names
    the level of another factor it is restricted to (a simple effect), empty for a main effect."""

    factor: str
    a: str
    b: str
    diff: Paired
    p_holm: float
    outcome: str
    at: str = ""

    @property
    def label(self) -> str:
        return f"{self.factor}: {self.a} − {self.b}" + (f" | {self.at}" if self.at else "")


def levels_of(arms: Sequence[str], factors: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """{arm: {factor: level}} from the arms' names (`factors`: factor -> the override key that sets it)."""
    out = {}
    for a in arms:
        ov = parse_name(a)
        out[a] = {f: ov.get(k, "?") for f, k in factors.items()}
    return out


def _level_means(view: Mapping[str, Mapping[int, float]], lv: Mapping[str, Mapping[str, str]],
                 fix: Mapping[str, str]) -> dict[int, float]:
    """Per seed, the mean score over the arms at the `fix`ed levels (the other factors averaged out); only the
    seeds every such arm has, so each seed's mean covers the same cells."""
    arms = [a for a in view if all(lv[a].get(k) == x for k, x in fix.items())]
    if not arms:
        return {}
    seeds = set.intersection(*(set(view[a]) for a in arms))
    return {s: float(np.mean([view[a][s] for a in arms])) for s in sorted(seeds)}


def factor_levels(lv: Mapping[str, Mapping[str, str]], factor: str) -> list[str]:
    return sorted({x[factor] for x in lv.values()})


def main_effects(view: Mapping[str, Mapping[int, float]], lv: Mapping[str, Mapping[str, str]],
                 factors: Sequence[str]) -> list[Effect]:
    """Every pair of levels of every factor, Holm-corrected as one family."""
    raw = [(f, x, y, paired(_level_means(view, lv, {f: x}), _level_means(view, lv, {f: y})))
           for f in factors for x, y in combinations(factor_levels(lv, f), 2)]
    adj = holm([r[3].p for r in raw])
    return [Effect(f, x, y, d, q, outcome(d, q)) for (f, x, y, d), q in zip(raw, adj, strict=True)]


def simple_effects(view: Mapping[str, Mapping[int, float]], lv: Mapping[str, Mapping[str, str]],
                   factors: Sequence[str]) -> list[Effect]:
    """Each factor's level differences at each level of each other factor, Holm-corrected as one family."""
    raw = []
    for f in factors:
        for g in factors:
            if g == f:
                continue
            for x, y in combinations(factor_levels(lv, f), 2):
                for lev in factor_levels(lv, g):
                    raw.append((f, x, y, f"{g}={lev}", paired(_level_means(view, lv, {f: x, g: lev}),
                                                              _level_means(view, lv, {f: y, g: lev}))))
    adj = holm([r[4].p for r in raw])
    return [Effect(f, x, y, d, q, outcome(d, q), at) for (f, x, y, at, d), q in zip(raw, adj, strict=True)]


@dataclass(frozen=True)
class Interaction:
    """A two-way interaction that changes a conclusion: the effect `what` differs across the levels of `across`."""

    what: str
    across: str
    effects: tuple[Effect, ...]

    def text(self) -> str:
        parts = "; ".join(f"{e.at.split('=', 1)[1]}: {e.diff.mean:+.3f} {e.outcome}" for e in self.effects)
        return f"{self.what} depends on {self.across} ({parts})"


def conclusion_changes(effects: Sequence[Effect]) -> list[Interaction]:
    """Simple effects whose conclusion differs across the levels of the other factor, where at least one level
    shows a significant difference (e.g. clipping helps SGD, changes nothing for Adam)."""
    groups: dict[tuple[str, str, str, str], list[Effect]] = {}
    for e in effects:
        groups.setdefault((e.factor, e.a, e.b, e.at.split("=", 1)[0]), []).append(e)
    out = []
    for (f, a, b, g), es in groups.items():
        outs = {e.outcome for e in es}
        if len(outs) > 1 and outs & {BETTER, WORSE}:
            out.append(Interaction(f"{f}: {a} − {b}", g, tuple(es)))
    return out


__all__ = ["BETTER", "EQUIVALENT", "INCONCLUSIVE", "SHARED_VIEW", "TUNED_VIEW", "WORSE", "Effect", "Interaction",
           "Pair", "Ranked", "ViewResult", "arm_lrs", "conclusion_changes", "is_tuned", "kendall", "levels_of",
           "main_effects", "pairs", "ranking", "scores", "simple_effects", "superiority", "two_views"]


# ------------------------------------------------------------------------------------- reference tables


@dataclass(frozen=True)
class Cell:
    """One number of a course's table: which job (its overrides), which metric, the printed reference, and the
    split's size (one example = 1/size of accuracy)."""

    label: str
    match: Mapping[str, str | Sequence[str]]
    metric: str
    reference: str  # as printed by the course, e.g. "0.717": its decimals set the precision of "equal"
    size: int


def reference_table(claim: str, rows: Sequence[Row], cells: Sequence[Cell]) -> Verdict:
    """A course-exact study (one deterministic replica per job) against the course's table, cell by cell.

    No test and no CI: one replica has none. Confirmed when every cell, rounded to the reference's printed
    decimals, equals it; nuanced when every cell is within one example of it (1/size, plus half the printed
    unit) but not all are equal; refuted when a cell is further off. The reason prints measured and reference.
    """
    from src.studies.base import find, ok

    parts, status = [], []
    for c in cells:
        row = find(rows, **c.match)
        if not ok(row):
            return Verdict(claim, NO_DATA, f"no usable job for {c.label}")
        got = value(row, c.metric)
        dec = len(c.reference.split(".", 1)[1]) if "." in c.reference else 0
        ref = float(c.reference)
        if round(got, dec) == round(ref, dec):
            status.append("equal")
            parts.append(f"{c.label} {got:.{max(dec, 4)}f} = {c.reference}")
        else:
            near = abs(got - ref) <= 1.0 / c.size + 0.5 * 10 ** -dec + 1e-12
            status.append("near" if near else "off")
            parts.append(f"{c.label} {got:.{max(dec, 4)}f} ≠ {c.reference} "
                         f"({(got - ref) * c.size:+.1f} of {c.size} examples)")
    text = f"{status.count('equal')}/{len(cells)} cells equal the course's: " + "; ".join(parts)
    if all(s == "equal" for s in status):
        return Verdict(claim, CONFIRMED, text)
    if "off" in status:
        return Verdict(claim, REFUTED, text)
    return Verdict(claim, NUANCED, text)
