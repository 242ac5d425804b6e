"""S1: initialisation on circles (course "Initialization", seed article 000), every initializer over seeds.

Net [2,10,5,1] ReLU/ReLU/sigmoid, full-batch gradient descent, ten initializers (`conf/experiment/s1_init.yaml`),
each at the preset's shared lr and at its own lr tuned on validation data (SPEC "Protocol for comparisons"):
a large init wants a small lr and a small init a large one, so one lr for all can rank the lr, not the init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from src.lab.stats import summary
from src.studies.base import CONFIRMED, NO_DATA, NUANCED, Results, Row, Study, Verdict, parse_name
from src.studies.compare import Scores, ViewResult, pairs, superiority, two_views

CLAIM = ("Zero init never breaks symmetry (chance accuracy), a too-large init (randn*10) trains worse, "
         "and He init trains best of the three.")
CHANCE_BAND = 0.05  # "at chance": the mean test accuracy within 0.05 of chance (0.5 on circles)


def _init(arm: str) -> str:
    return parse_name(arm).get("init", arm)


def he_best(view: Scores) -> ViewResult:
    """zeros at chance, and He − zeros, He − randn*10 paired by seed (Holm over the two)."""
    arms = {_init(a): a for a in view}
    he = arms.get("he_normal") or arms.get("he")
    if he is None or "zeros" not in arms or "randn_x10" not in arms:
        return ViewResult(NO_DATA, (), "needs init=zeros, randn_x10 and he_normal")
    ps = pairs(view, [(he, arms["zeros"]), (he, arms["randn_x10"])])
    z = summary(np.array(list(view[arms["zeros"]].values())))
    at_chance = math.isfinite(z["mean"]) and abs(z["mean"] - 0.5) <= CHANCE_BAND
    status = superiority(ps)
    if not at_chance and status == CONFIRMED:
        status = NUANCED
    text = f"zeros {z['mean']:.3f} ({'at' if at_chance else 'not at'} chance); " + "; ".join(p.text(_init) for p in ps)
    return ViewResult(status, tuple(ps), text)


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Zeros' mean test accuracy within 0.05 of chance, and He − zeros and He − randn*10 (paired by seed, Holm over
    the two): confirmed when zeros is at chance and both differences are significantly positive; refuted when
    neither is and one is significantly negative or equivalent (95% CI within ±0.02); nuanced otherwise
    (including zeros away from chance). Judged at each init's tuned lr, reported at the shared lr too."""
    r = Results.of(res)
    return two_views(CLAIM, r.replicas, r.tuning, he_best)


STUDY = Study("s1_init", "S1 Initialization (circles): every initializer over seeds", order=10, rules=(verdict,))
