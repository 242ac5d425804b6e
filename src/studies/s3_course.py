"""S3, course-exact: the Coursera "Optimization" notebook's moons, GD / Momentum / Adam at lr 0.0007.

Net [2,5,2,1], He weights drawn as the course does, mini-batches of 64 shuffled by `np.random.seed(10 + epoch)`,
5000 epochs (`conf/experiment/s3_course.yaml`). Course (train accuracy): GD 0.717, Momentum 0.717, Adam 0.943 at
5000 epochs, reproduced exactly; the course's 10000-epoch numbers (0.797 / 0.797 / 0.94) are reproduced by
`train.epochs=10000` (tests/test_studies.py, an e2e test), not by the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import Results, Row, Study, Verdict
from src.studies.compare import Cell, reference_table

CLAIM = ("The course's moons (300 points) at lr 0.0007 for 5000 epochs, train accuracy: GD 0.717, Momentum 0.717, "
         "Adam 0.943.")
CELLS = (
    Cell("GD", {"optimizer": "sgd"}, "train_acc", "0.717", 300),
    Cell("Momentum", {"optimizer": ("momentum_course", "momentum")}, "train_acc", "0.717", 300),
    Cell("Adam", {"optimizer": "adam"}, "train_acc", "0.943", 300),
)


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """The course's three 5000-epoch cells against our one deterministic run each (n = 1: no significance test):
    `compare.reference_table`."""
    return reference_table(CLAIM, Results.of(res).rows, CELLS)


STUDY = Study("s3_course", "S3 Optimizers: the course's moons experiment", order=32, rules=(verdict,))
