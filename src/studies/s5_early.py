"""S5: early stopping with patience on the validation loss, on a setting that overfits when trained long.

moons_noisy (120 training points), two ReLU layers of 64, Adam at lr 0.01, full-batch epochs, patience
none/5/20/100 evaluations (`conf/experiment/s5_early.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence

from src.lab.stats import DELTA, WORSE, holm, outcome, paired
from src.studies.base import CONFIRMED, NUANCED, NULL, REFUTED, Results, Row, Study, Verdict, missing, parse_name, value
from src.studies.compare import SHARED_VIEW, scores

CLAIM = "Early stopping (patience on validation loss) saves epochs at no significant cost in test accuracy."


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Per patience setting: epochs used vs no patience, and the test-accuracy difference (patience − none) paired
    by seed, Holm over the settings. A setting is "free" when it uses ≤ 90% of the epochs and the whole 95% CI of
    its difference lies above −0.02 (non-inferiority). Confirmed when one setting is free; refuted when no setting
    saves epochs or every one that does is significantly worse; nuanced otherwise."""
    r = Results.of(res)
    pat = {str(x.get("name")): parse_name(str(x.get("name", ""))).get("train.patience") for x in r.rows}
    none = next((x for x in r.rows if pat[str(x.get("name"))] in NULL), None)
    arms = [x for x in r.rows if pat[str(x.get("name"))] not in NULL and str(x.get("status")) != "failed"]
    view = scores(r.replicas, SHARED_VIEW)
    if none is None or not arms or str(none.get("name")) not in view:
        return missing(CLAIM, "train.patience=null and a patience job, with their replicas.csv rows")
    base = str(none.get("name"))
    diffs = [paired(view.get(str(a.get("name")), {}), view[base]) for a in arms]
    adj = holm([d.p for d in diffs])
    e0 = value(none, "epochs_used")
    parts, free, saving, worse = [], [], [], []
    for a, d, q in zip(arms, diffs, adj, strict=True):
        e = value(a, "epochs_used")
        saves = e <= 0.9 * e0
        o = outcome(d, q)
        saving += [a] if saves else []
        free += [a] if saves and d.n >= 2 and d.low > -DELTA else []
        worse += [a] if saves and o == WORSE else []
        parts.append(f"patience {pat[str(a.get('name'))]}: {e:.0f} epochs, test − no patience {d.text()} "
                     f"(Holm p {q:.2g}): {o}")
    nums = f"no patience: {e0:.0f} epochs; " + "; ".join(parts)
    if free:
        return Verdict(CLAIM, CONFIRMED, nums)
    if not saving or len(worse) == len(saving):
        return Verdict(CLAIM, REFUTED, ("no patience setting saves ≥ 10% of the epochs: " if not saving else
                                        "every setting that saves epochs costs accuracy: ") + nums)
    return Verdict(CLAIM, NUANCED, f"epochs saved, but no setting shown to cost < {DELTA} accuracy: {nums}")


STUDY = Study("s5_early", "S5 Early stopping", order=50, rules=(verdict,))
