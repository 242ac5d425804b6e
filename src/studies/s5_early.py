"""S5: early stopping with patience on the validation loss, on a setting that overfits when trained long.

moons_noisy (120 training points), two ReLU layers of 64, Adam at lr 0.01, 2000 full-batch epochs, patience
none/5/20/100 evaluations (`conf/experiment/s5_early.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import (
    CONFIRMED,
    NUANCED,
    NULL,
    REFUTED,
    Row,
    Study,
    Verdict,
    acc,
    better,
    find,
    missing,
    ok,
    parse_name,
    value,
)


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = "Early stopping (patience on validation loss) saves epochs at no significant cost in test accuracy."
    none = find(rows, train__patience=NULL)
    pats = [r for r in rows if ok(r) and parse_name(str(r.get("name", ""))).get("train.patience") not in NULL
            and "train.patience" in parse_name(str(r.get("name", "")))]
    if not ok(none) or not pats:
        return missing(claim, "train.patience=null and a patience job")
    e0 = value(none, "epochs_used")
    saving = [r for r in pats if value(r, "epochs_used") <= 0.9 * e0]
    free = [r for r in saving if not better(none, r)]
    nums = (f"no patience: {e0:.0f} epochs, test {acc(none)}; " +
            "; ".join(f"{r['name']}: {value(r, 'epochs_used'):.0f} epochs, test {acc(r)}" for r in pats))
    if free:
        return Verdict(claim, CONFIRMED, nums)
    if saving:
        return Verdict(claim, NUANCED, f"epochs saved but at a significant accuracy cost: {nums}")
    return Verdict(claim, REFUTED, f"no patience setting saved ≥ 10% of the epochs: {nums}")


STUDY = Study("s5_early", "S5 Early stopping", order=50, rules=(verdict,))
