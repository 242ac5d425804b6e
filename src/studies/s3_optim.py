"""S3: optimisers on moons (book ch. 6; course "Optimization"), each at a shared lr and at its own tuned lr.

Net [2,5,2,1] ReLU/ReLU/sigmoid, He init, mini-batch 64, seven optimizers (`conf/experiment/s3_optim.yaml`),
tuned over 7 learning rates (SPEC "Protocol for comparisons"): the book and the course compare them at one shared
lr, which mostly ranks how well that lr suits each update rule (Choi et al. 2019; Schmidt et al. 2021).
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import Results, Row, Study, Verdict
from src.studies.compare import Scores, ViewResult, pairs, superiority, two_views

CLAIM = "Adam reaches a higher test accuracy than plain SGD and momentum at the same budget."


def _label(arm: str) -> str:
    return arm.split("optimizer=", 1)[-1].split(",", 1)[0]


def adam_beats(view: Scores, rivals: Sequence[str]) -> ViewResult:
    """Adam against each rival, paired by seed, Holm over the rivals: `compare.superiority` of the pairs."""
    arms = {_label(a): a for a in view}
    if "adam" not in arms or not any(r in arms for r in rivals):
        return ViewResult("no data", (), f"needs optimizer=adam and one of {', '.join(rivals)}")
    ps = pairs(view, [(arms["adam"], arms[r]) for r in rivals if r in arms])
    return ViewResult(superiority(ps), tuple(ps), "; ".join(p.text(_label) for p in ps))


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Adam − SGD and Adam − momentum test accuracy, paired by seed and Holm-corrected: confirmed when both are
    significantly positive, refuted when neither is and one is significantly negative or equivalent (95% CI within
    ±0.02), nuanced otherwise. Judged at each arm's tuned lr, reported at the shared lr too."""
    r = Results.of(res)
    return two_views(CLAIM, r.replicas, r.tuning, lambda v: adam_beats(v, ("sgd", "momentum")))


STUDY = Study("s3_optim", "S3 Optimizers", order=31, rules=(verdict,))
