"""The report's part for a grid tuned over learning rates: both rankings side by side, and the sensitivity curves.

Shown for every study whose replicas.csv has tuning rows (`tune.enabled`, src/lab/tuning.py): the ranking at the
shared lr next to the ranking at each arm's tuned lr (mean ± 95% CI over the report seeds, ranks, the paired
difference tuned − shared), how the lr was chosen, and validation accuracy and final training loss against the lr.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from src.lab.stats import fmt, paired
from src.studies.base import Results, Section, Table, value
from src.studies.compare import SHARED_VIEW, TUNED_VIEW, arm_lrs, facet_label, facets, kendall, ranking, scores


def tuned_parts(sec: Section, study: str, res: Results, figdir: Path) -> None:
    """Add the two-view ranking table, the tuning note and the rankings/sensitivity figures to `sec`."""
    shared, tuned = scores(res.replicas, SHARED_VIEW), scores(res.replicas, TUNED_VIEW)
    lr_shared, lr_tuned, edge = arm_lrs(res.replicas, res.tuning)
    r_s, r_t = ranking(shared), ranking(tuned)
    rank_s = {r.arm: r for r in r_s}
    rows = []
    for r in r_t:
        a = r.arm
        d = paired(tuned[a], shared[a])
        rows.append([a, f"{lr_shared.get(a, math.nan):g}", fmt(rank_s[a].mean, rank_s[a].ci95), str(rank_s[a].rank),
                     f"{lr_tuned.get(a, math.nan):g}" + (" (edge)" if a in edge else ""), fmt(r.mean, r.ci95),
                     str(r.rank), d.text() if d.n >= 2 else "n/a"])
    sec.tables.insert(0, ("Ranking at the shared lr and at each arm's tuned lr (test accuracy on the report seeds, "
                          "best tuned first)", Table(
        ["arm", "shared lr", "test acc at shared lr", "rank", "tuned lr", "test acc at tuned lr", "rank",
         "tuned − shared (paired by seed)"], rows)))
    sec.notes.append(_protocol_note(res, r_s, r_t, edge))
    arms = [r.arm for r in r_t]
    sec.figures.append(("Test accuracy at the shared lr and at each arm's tuned lr (all arms; crossing lines = "
                        "rankings that tuning changes)", _rankings_fig(study, arms, r_s, r_t, lr_shared, figdir)))
    for fig in _sensitivity_figs(study, res, figdir):
        sec.figures.append(fig)


def _protocol_note(res: Results, r_s: list[Any], r_t: list[Any], edge: set[str]) -> str:
    lrs = sorted({value(r, "lr") for r in res.tuning if math.isfinite(value(r, "lr"))})
    decades = math.log10(lrs[-1] / lrs[0]) if len(lrs) > 1 else 0.0
    t_seeds = sorted({int(value(r, "seed")) for r in res.replicas if str(r.get("role")) == "grid"})
    r_seeds = sorted({int(value(r, "seed")) for r in res.replicas if str(r.get("role")) == "shared"})
    warn = "" if len(lrs) >= 7 and decades >= 3 - 1e-9 else " (fewer than SPEC's 7 values over 3 decades)"
    tau = kendall(r_s, r_t)
    top_s, top_t = (r_s[0].arm if r_s else "?"), (r_t[0].arm if r_t else "?")
    edge_txt = (f" The chosen lr is at an end of the grid (and better than its neighbour) for {len(edge)} arm(s): "
                f"{', '.join(sorted(edge))}; their best lr may lie outside the grid." if edge else "")
    return (f"Tuning: each arm trained at {len(lrs)} learning rates over {decades:.1f} decades "
            f"({', '.join(f'{v:g}' for v in lrs)}){warn} on {len(t_seeds)} tuning seeds "
            f"({_span(t_seeds)}); its lr chosen on mean validation accuracy (ties: validation loss; a diverged "
            f"replica scores chance), never on test data; then reported at that lr on {len(r_seeds)} fresh report "
            f"seeds ({_span(r_seeds)}), the same seeds as the shared-lr view, so both views are paired seed by seed."
            f" Top arm: {top_s} at the shared lr, {top_t} once tuned; Kendall's τ between the two rankings "
            f"{tau:.2f}.{edge_txt}")


def _span(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    return f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"


def _rankings_fig(study: str, arms: list[str], r_s: list[Any], r_t: list[Any], lr_shared: dict[str, float],
                  figdir: Path) -> Path:
    from src.plots.compare import rankings

    s, t = {r.arm: r for r in r_s}, {r.arm: r for r in r_t}
    lrs = sorted({v for v in lr_shared.values() if math.isfinite(v)})
    label = f"shared lr {'/'.join(f'{v:g}' for v in lrs)}"
    return rankings(arms, [(s[a].mean, s[a].ci95) for a in arms], [(t[a].mean, t[a].ci95) for a in arms],
                    figdir / f"{study}_rankings.png", shared_label=label,
                    title=f"{study}: ranking at the shared lr vs at each arm's tuned lr")


def _sensitivity_figs(study: str, res: Results, figdir: Path) -> list[tuple[str, Path]]:
    from src.plots.compare import sensitivity

    by_arm: dict[str, list[tuple[float, float, float, float, float, bool]]] = {}
    for r in res.tuning:
        by_arm.setdefault(str(r.get("name")), []).append(
            (value(r, "lr"), value(r, "val_acc"), value(r, "val_acc_ci95"), value(r, "train_loss"),
             value(r, "train_loss_ci95"), value(r, "chosen") > 0))
    if not by_arm:
        return []
    panel_keys, line_keys = facets(list(by_arm))
    panels: dict[str, dict[str, list[Any]]] = {}
    for arm, pts in by_arm.items():
        panels.setdefault(facet_label(arm, panel_keys), {})[facet_label(arm, line_keys)] = pts
    n = len(np.unique([facet_label(a, panel_keys) for a in by_arm]))
    path = sensitivity(panels, figdir / f"{study}_sensitivity.png",
                       title=f"{study}: validation accuracy and final training loss vs lr (mean, 95% band over "
                             f"the tuning seeds)")
    return [(f"Learning-rate sensitivity of every arm ({len(by_arm)} arms in {n} panel(s); ○ = the chosen lr): the "
             "width of the good-lr region is itself a finding", path)]
