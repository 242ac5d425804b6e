"""S6: L2 and dropout (course "Regularization") on an overfitting net.

Net [2,20,3,1] ReLU, LeCun-normal weights, full-batch gradient descent at lr 0.3, on moons_noisy; L2 λ ∈ {0, 0.7}
× dropout p ∈ {0, 0.14} (`conf/experiment/s6_reg.yaml`). The claim tested: a smaller train/test gap.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import (
    CONFIRMED,
    NUANCED,
    REFUTED,
    Row,
    Study,
    Verdict,
    acc,
    better,
    missing,
    ok,
    parse_name,
    value,
)


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = "L2 and dropout shrink the train-test gap of an overfitting net without lowering test accuracy."

    def reg(r: Row) -> bool:
        ov = parse_name(str(r.get("name", "")))
        return any(_num(ov.get(k)) > 0 for k in ("model.l2", "model.dropout"))

    usable = [r for r in rows if ok(r)]
    base = [r for r in usable if not reg(r)]
    regs = [r for r in usable if reg(r)]
    if not base or not regs:
        return missing(claim, "an unregularised job and a regularised one")
    b = base[0]
    gap = value(b, "train_acc") - value(b, "test_acc")
    good = [r for r in regs if value(r, "train_acc") - value(r, "test_acc") < gap and not better(b, r)]
    best = max(regs, key=lambda r: value(r, "test_acc"))
    nums = (f"baseline gap {gap:.3f} (test {acc(b)}); best regularised {best['name']}: gap "
            f"{value(best, 'train_acc') - value(best, 'test_acc'):.3f}, test {acc(best)}")
    if good and value(best, "test_acc") >= value(b, "test_acc"):
        return Verdict(claim, CONFIRMED, nums)
    if not good:
        return Verdict(claim, REFUTED, f"no regularised job has a smaller gap without losing accuracy: {nums}")
    return Verdict(claim, NUANCED, f"gap shrinks but test accuracy does not improve: {nums}")


def _num(v: str | None) -> float:
    try:
        return float(v) if v is not None else 0.0
    except ValueError:
        return 0.0


STUDY = Study("s6_reg", "S6 L2 and dropout", order=61, rules=(verdict,))
