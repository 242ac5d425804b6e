"""S3: optimisers on moons (book ch. 6; course "Optimization"), one shared learning rate for every update rule.

Net [2,5,2,1] ReLU/ReLU/sigmoid, He init, mini-batch 64, 500 epochs, 5 seeds, seven optimizers
(`conf/experiment/s3_optim.yaml`). :func:`adam_vs` is shared with `s3_course`.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import CONFIRMED, NUANCED, REFUTED, Row, Study, Verdict, acc, better, find, missing, ok, value


def adam_vs(rows: Sequence[Row], claim: str, others: Sequence[str]) -> Verdict:
    """Adam against `others`: confirmed when significantly above each, refuted when not ahead."""
    adam = find(rows, optimizer="adam")
    if not ok(adam):
        return missing(claim, "optimizer=adam")
    rivals = {o: find(rows, optimizer=o) for o in others}
    rivals = {o: r for o, r in rivals.items() if ok(r)}
    if not rivals:
        return missing(claim, "/".join(others))
    nums = ", ".join([f"adam {acc(adam)}", *(f"{o} {acc(r)}" for o, r in rivals.items())])
    if all(better(adam, r) for r in rivals.values()):
        return Verdict(claim, CONFIRMED, f"Adam significantly above each: {nums}")
    if any(better(r, adam) for r in rivals.values()) or all(value(r, "test_acc") >= value(adam, "test_acc")
                                                              for r in rivals.values()):
        return Verdict(claim, REFUTED, f"Adam is not ahead: {nums}")
    return Verdict(claim, NUANCED, f"Adam ahead of some, within the CI of others: {nums}")


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    return adam_vs(rows, "Adam reaches a higher test accuracy than plain SGD and momentum at the same budget.",
                        ("sgd", "momentum"))


STUDY = Study("s3_optim", "S3 Optimizers", order=31, rules=(verdict,))
