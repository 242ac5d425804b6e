"""S1, course-exact: the Coursera "Initialization" notebook on its own circles, reproduced to the digit.

Net [2,10,5,1], weights drawn as `np.random.seed(3); randn(fan_out, fan_in) * scale`, full-batch gradient descent,
lr 0.01, 15000 iterations (`conf/experiment/s1_course.yaml`). Course table (train / test): zeros 0.50 / 0.50,
randn*10 0.83 / 0.86, He 0.99333 / 0.96; tests/test_studies.py asserts our numbers to the digit.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import CONFIRMED, NUANCED, REFUTED, Row, Study, Verdict, acc, find, missing, ok, value


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = ("The course's table: zeros 0.50, randn*10 ≈ 0.86, He ≈ 0.96 test accuracy on circles "
             "(He > randn*10 > zeros).")
    zeros, he, big = find(rows, init="zeros"), find(rows, init=("he_normal", "he")), find(rows, init="randn_x10")
    if not (ok(zeros) and ok(he) and ok(big)):
        return missing(claim, "init=zeros, randn_x10 and he_normal")
    z, b, h = (value(r, "test_acc") for r in (zeros, big, he))
    nums = f"zeros {acc(zeros)}, randn_x10 {acc(big)}, he_normal {acc(he)}"
    if h > b > z and abs(z - 0.5) <= 0.05 and abs(h - 0.96) <= 0.04:
        return Verdict(claim, CONFIRMED, f"order and levels reproduced: {nums}")
    if z >= h:
        return Verdict(claim, REFUTED, f"zeros is not below He: {nums}")
    return Verdict(claim, NUANCED, f"He beats zeros but the order or the levels differ from the course: {nums}")


STUDY = Study("s1_course", "S1 Initialization: the course's table", order=11, rules=(verdict,))
