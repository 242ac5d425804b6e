"""S6: L2 and dropout (course "Regularization") on an overfitting net.

Net [2,20,3,1] ReLU, LeCun-normal weights, full-batch gradient descent at lr 0.3, on moons_noisy; L2 λ ∈ {0, 0.7}
× dropout p ∈ {0, 0.14} (`conf/experiment/s6_reg.yaml`). The claim tested: a smaller train/test gap.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.lab.stats import BETTER, DELTA, WORSE, holm, outcome, paired
from src.studies.base import CONFIRMED, NUANCED, REFUTED, Results, Row, Study, Verdict, missing, parse_name
from src.studies.compare import SHARED_VIEW, scores

CLAIM = "L2 and dropout shrink the train-test gap of an overfitting net without lowering test accuracy."


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Per regularised job against the unregularised one, paired by seed: the gap (train − test accuracy) and the
    test accuracy. A job "works" when its gap is significantly smaller (Holm over the regularised jobs) and the
    whole 95% CI of its test-accuracy difference lies above −0.02 (non-inferiority). Confirmed when one works;
    refuted when no job has a smaller mean gap, or every one is significantly worse on test; nuanced otherwise."""
    r = Results.of(res)

    def reg(name: str) -> bool:
        ov = parse_name(name)
        return any(_num(ov.get(k)) > 0 for k in ("model.l2", "model.dropout"))

    test, train = scores(r.replicas, SHARED_VIEW, "test_acc"), scores(r.replicas, SHARED_VIEW, "train_acc")
    base = next((n for n in test if not reg(n)), None)
    regs = [n for n in test if reg(n)]
    if base is None or not regs:
        return missing(CLAIM, "an unregularised job and a regularised one (with their replicas.csv rows)")

    def gap(n: str) -> dict[int, float]:
        return {s: train[n][s] - test[n][s] for s in test[n] if s in train[n]}

    gaps = [paired(gap(base), gap(n)) for n in regs]  # > 0: the regularised gap is smaller
    adj = holm([g.p for g in gaps])
    accs = [paired(test[n], test[base]) for n in regs]
    acc_adj = holm([d.p for d in accs])
    works, worse, parts = [], [], []
    for n, g, q, d, qa in zip(regs, gaps, adj, accs, acc_adj, strict=True):
        smaller = outcome(g, q) == BETTER
        if smaller and d.n >= 2 and d.low > -DELTA:
            works.append(n)
        if outcome(d, qa) == WORSE:
            worse.append(n)
        parts.append(f"{n}: gap reduced by {g.text()} (Holm p {q:.2g}); test − baseline {d.text()}")
    g0 = {s: v for s, v in gap(base).items()}
    nums = f"baseline gap {sum(g0.values()) / max(len(g0), 1):.3f}; " + "; ".join(parts)
    if works:
        return Verdict(CLAIM, CONFIRMED, nums)
    if all(g.mean <= 0 for g in gaps) or len(worse) == len(regs):
        return Verdict(CLAIM, REFUTED, f"no regularised job shrinks the gap without losing accuracy: {nums}")
    return Verdict(CLAIM, NUANCED, f"the gap shrinks, but not significantly or not at no cost: {nums}")


def _num(v: str | None) -> float:
    try:
        return float(v) if v is not None else 0.0
    except ValueError:
        return 0.0


STUDY = Study("s6_reg", "S6 L2 and dropout", order=61, rules=(verdict,))
