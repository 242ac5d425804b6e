"""S1: initialisation on circles (course "Initialization", seed article 000), with error bars over 5 seeds.

Net [2,10,5,1] ReLU/ReLU/sigmoid, full-batch gradient descent, lr 0.01, 15000 iterations, ten initializers
(`conf/experiment/s1_init.yaml`). Claims: zeros never breaks symmetry (0.5); randn*10 saturates the sigmoid;
He (and the other fan-in scaled inits) learn the circle.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import CONFIRMED, NUANCED, REFUTED, Row, Study, Verdict, acc, better, find, missing, ok, value


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = ("Zero init never breaks symmetry (chance accuracy), a too-large init (randn*10) trains worse, "
             "and He init trains best of the three.")
    zeros, he, big = find(rows, init="zeros"), find(rows, init=("he_normal", "he")), find(rows, init="randn_x10")
    if not (ok(zeros) and ok(he)):
        return missing(claim, "init=zeros and init=he_normal")
    nums = f"zeros {acc(zeros)}, he_normal {acc(he)}, randn_x10 {acc(big)}"
    if not better(he, zeros):
        return Verdict(claim, REFUTED, f"He is not significantly better than zeros: {nums}")
    if value(zeros, "test_acc") <= 0.6 and (big is None or better(he, big)):
        return Verdict(claim, CONFIRMED, f"zeros at chance, He significantly above zeros and randn*10: {nums}")
    return Verdict(claim, NUANCED, f"He beats zeros, but not every part holds (zeros > 0.6 or He ≈ randn*10): {nums}")


STUDY = Study("s1_init", "S1 Initialization (circles): every initializer over seeds", order=10, rules=(verdict,))
