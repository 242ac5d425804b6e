"""S3, course-exact: the Coursera "Optimization" notebook's moons, GD / Momentum / Adam at lr 0.0007.

Net [2,5,2,1], He weights drawn as the course does, mini-batches of 64 shuffled by `np.random.seed(10 + epoch)`,
5000 epochs (`conf/experiment/s3_course.yaml`). Course (train accuracy): GD 0.717, Momentum 0.717, Adam 0.943,
reproduced exactly (tests/test_studies.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import Row, Study, Verdict
from src.studies.s3_optim import adam_vs


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    return adam_vs(rows, "On moons at lr 0.0007 (the course), Adam reaches ≈0.94 while GD and Momentum stay "
                   "≈0.80.", ("sgd", "momentum_course", "momentum"))


STUDY = Study("s3_course", "S3 Optimizers: the course's moons experiment", order=32, rules=(verdict,))
