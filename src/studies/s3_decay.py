"""S3, course-exact learning-rate scheduling ("Optimization", part 7): lr0 / (1 + decay_rate * floor(epoch / 1000)).

A preset only (`conf/experiment/s3_decay.yaml`, about a minute), not a stage of the DVC pipeline: run it with
`python -m src.train -m experiment=s3_decay`. See the preset for why two course numbers differ by one point.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import CONFIRMED, NUANCED, REFUTED, Row, Study, Verdict, find, missing, ok, value

S3_DECAY_COURSE = {("sgd", "0.1"): 0.9467, ("momentum_course", "0.1"): 0.9567, ("adam", "0.01"): 0.94}


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = ("With the course's scheduled decay lr0/(1 + floor(epoch/1000)) GD and Momentum (lr 0.1) catch up with "
             "Adam (lr 0.01): train accuracy ≈0.947 / 0.957 / 0.94.")
    found = {k: find(rows, optimizer=k[0], train__lr=k[1]) for k in S3_DECAY_COURSE}
    if not all(ok(r) for r in found.values()):
        return missing(claim, "optimizer=sgd|momentum_course,train.lr=0.1 and optimizer=adam,train.lr=0.01")
    accs = {k: value(r, "train_acc") for k, r in found.items()}
    nums = ", ".join(f"{k[0]} lr {k[1]}: train {accs[k]:.3f} (course {ref})" for k, ref in S3_DECAY_COURSE.items())
    if all(abs(accs[k] - ref) <= 0.02 for k, ref in S3_DECAY_COURSE.items()):
        return Verdict(claim, CONFIRMED, nums)
    if min(accs.values()) < 0.85:
        return Verdict(claim, REFUTED, f"one optimizer stays far below the course: {nums}")
    return Verdict(claim, NUANCED, f"all train, but not every number within 0.02 of the course: {nums}")


STUDY = Study("s3_decay", "S3 Learning-rate decay: the course's scheduled decay", order=33, rules=(verdict,),
              in_pipeline=False)
