"""S3, course-exact learning-rate scheduling ("Optimization", part 7): lr0 / (1 + decay_rate * floor(epoch / 1000)).

A preset only (`conf/experiment/s3_decay.yaml`, about a minute), not a stage of the DVC pipeline: run it with
`python -m src.train -m experiment=s3_decay`. See the preset for why two course numbers differ by one point.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import Results, Row, Study, Verdict
from src.studies.compare import Cell, reference_table

CLAIM = ("With the course's scheduled decay lr0/(1 + floor(epoch/1000)) on its moons (300 points), train accuracy: "
         "GD lr 0.1 0.9467, Momentum lr 0.1 0.9567, Adam lr 0.01 0.94.")
CELLS = (
    Cell("GD lr 0.1", {"optimizer": "sgd", "train__lr": "0.1"}, "train_acc", "0.9467", 300),
    Cell("Momentum lr 0.1", {"optimizer": "momentum_course", "train__lr": "0.1"}, "train_acc", "0.9567", 300),
    Cell("Adam lr 0.01", {"optimizer": "adam", "train__lr": "0.01"}, "train_acc", "0.94", 300),
)


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """The course's three cells against our one deterministic run each (n = 1: no significance test):
    `compare.reference_table`."""
    return reference_table(CLAIM, Results.of(res).rows, CELLS)


STUDY = Study("s3_decay", "S3 Learning-rate decay: the course's scheduled decay", order=33, rules=(verdict,),
              in_pipeline=False)
