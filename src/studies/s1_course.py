"""S1, course-exact: the Coursera "Initialization" notebook on its own circles, reproduced to the digit.

Net [2,10,5,1], weights drawn as `np.random.seed(3); randn(fan_out, fan_in) * scale`, full-batch gradient descent,
lr 0.01, 15000 iterations (`conf/experiment/s1_course.yaml`). Course table (train / test): zeros 0.50 / 0.50,
randn*10 0.83 / 0.86, He 0.99333 / 0.96; tests/test_studies.py asserts our numbers to the digit.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import Results, Row, Study, Verdict
from src.studies.compare import Cell, reference_table

CLAIM = ("The course's table on its circles (300 train / 100 test points), train / test accuracy: zeros 0.50 / 0.50, "
         "randn*10 0.83 / 0.86, He 0.9933 / 0.96.")
HE = ("he_normal", "he")
CELLS = (
    Cell("zeros train", {"init": "zeros"}, "train_acc", "0.50", 300),
    Cell("zeros test", {"init": "zeros"}, "test_acc", "0.50", 100),
    Cell("randn*10 train", {"init": "randn_x10"}, "train_acc", "0.83", 300),
    Cell("randn*10 test", {"init": "randn_x10"}, "test_acc", "0.86", 100),
    Cell("He train", {"init": HE}, "train_acc", "0.9933", 300),
    Cell("He test", {"init": HE}, "test_acc", "0.96", 100),
)


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """The six cells of the course's table, each compared with our one deterministic run (no significance test:
    n = 1): `compare.reference_table`."""
    return reference_table(CLAIM, Results.of(res).rows, CELLS)


STUDY = Study("s1_course", "S1 Initialization: the course's table", order=11, rules=(verdict,))
