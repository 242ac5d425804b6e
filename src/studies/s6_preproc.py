"""S6: input preprocessing (LeCun et al. 1998, "Efficient BackProp").

Moons in raw units, every feature mapped to X*scale + shift, versus the same inputs re-standardised with train
statistics; net [2,10,5,1] ReLU, He init, full-batch GD at lr 0.05, 1000 epochs (`conf/experiment/s6_preproc.yaml`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from src.lab.stats import BETTER, WORSE
from src.studies.base import CONFIRMED, NUANCED, REFUTED, Results, Row, Study, Verdict, missing, parse_name, truthy
from src.studies.compare import SHARED_VIEW, pairs, scores


def _std_key(ov: Mapping[str, str]) -> str | None:
    return next((k for k in ov if k.startswith("data") and any(w in k.lower() for w in ("standardi", "preproc",
                                                                                       "normali"))), None)


def _is_raw(row: Row) -> bool:
    """Raw input: `data.standardize=false` (or a similar key), else a data override naming raw/unscaled data."""
    ov = parse_name(str(row.get("name", "")))
    key = _std_key(ov)
    if key is not None:
        return truthy(ov[key]) is False
    return any(w in f"{k}={v}".lower() for k, v in ov.items() if k.startswith("data") for w in ("raw", "unscaled"))


CLAIM = ("Standardised inputs (fit on train) train better than raw inputs when the features are shifted or "
         "scaled, at the same budget.")


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Each raw-input job against the standardised job with the same other data settings, test accuracy paired by
    seed, Holm over the shifted/scaled settings (the unshifted, unscaled one is shown, not judged): confirmed when
    standardising is significantly better in every setting, refuted when in none, nuanced otherwise."""
    r = Results.of(res)
    view = scores(r.replicas, SHARED_VIEW)
    groups: dict[tuple, dict[bool, str]] = {}
    for row in r.rows:
        name = str(row.get("name", ""))
        if name not in view:
            continue
        ov = parse_name(name)
        key = _std_key(ov)
        rest = tuple(sorted((k, v.replace("_raw", "").replace("_unscaled", "")) for k, v in ov.items()
                            if k != key and k.startswith("data")))
        groups.setdefault(rest, {})[_is_raw(row)] = name
    both = {k: g for k, g in groups.items() if True in g and False in g}
    if not both:
        return missing(CLAIM, "a raw-input job and a standardised one with the same other settings")
    trivial = {k for k in both if dict(k).get("data.shift", "0") in ("0", "0.0")
               and dict(k).get("data.scale", "1") in ("1", "1.0")}
    hard = {k: g for k, g in both.items() if k not in trivial} or both
    keys = list(hard)
    ps = pairs(view, [(hard[k][False], hard[k][True]) for k in keys])
    wins = [p for p in ps if p.outcome == BETTER]
    losses = [p for p in ps if p.outcome == WORSE]

    def label(k: tuple) -> str:
        return ",".join(f"{a}={b}" for a, b in k) or "(as generated)"

    nums = "; ".join(f"{label(k)}: standardised − raw {p.diff.text()} (Holm p {p.p_holm:.2g}): {p.outcome}"
                     for k, p in zip(keys, ps, strict=True))
    if len(wins) == len(keys):
        return Verdict(CLAIM, CONFIRMED, nums)
    if not wins:
        return Verdict(CLAIM, REFUTED, f"standardising never helps significantly: {nums}")
    return Verdict(CLAIM, NUANCED, f"standardising helps significantly in {len(wins)} of {len(keys)} settings"
                   f"{f' and hurts in {len(losses)}' if losses else ''}: {nums}")


STUDY = Study("s6_preproc", "S6 Input preprocessing", order=62, rules=(verdict,))
