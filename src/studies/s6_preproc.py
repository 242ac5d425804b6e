"""S6: input preprocessing (LeCun et al. 1998, "Efficient BackProp").

Moons in raw units, every feature mapped to X*scale + shift, versus the same inputs re-standardised with train
statistics; net [2,10,5,1] ReLU, He init, full-batch GD at lr 0.05, 1000 epochs (`conf/experiment/s6_preproc.yaml`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from src.studies.base import (
    CONFIRMED,
    NUANCED,
    REFUTED,
    Row,
    Study,
    Verdict,
    acc,
    better,
    missing,
    ok,
    parse_name,
    truthy,
)


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


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = ("Standardised inputs (fit on train) train better than raw inputs when the features are shifted or "
             "scaled, at the same budget.")
    usable = [r for r in rows if ok(r)]
    # pair each raw job with the standardised job of the same other data settings (shift, scale, dataset)
    groups: dict[tuple, dict[bool, Row]] = {}
    for r in usable:
        ov = parse_name(str(r.get("name", "")))
        key = _std_key(ov)
        rest = tuple(sorted((k, v.replace("_raw", "").replace("_unscaled", "")) for k, v in ov.items()
                            if k != key and k.startswith("data")))
        groups.setdefault(rest, {})[_is_raw(r)] = r
    pairs = {k: g for k, g in groups.items() if True in g and False in g}
    if not pairs:
        return missing(claim, "a raw-input job and a standardised one with the same other settings")
    trivial = {k for k in pairs if dict(k).get("data.shift", "0") in ("0", "0.0")
               and dict(k).get("data.scale", "1") in ("1", "1.0")}
    hard = {k: g for k, g in pairs.items() if k not in trivial} or pairs
    wins = [k for k, g in hard.items() if better(g[False], g[True])]
    losses = [k for k, g in hard.items() if better(g[True], g[False])]

    def label(k: tuple) -> str:
        return ",".join(f"{a}={b}" for a, b in k) or "(as generated)"

    nums = "; ".join(f"{label(k)}: standardised {acc(g[False])} vs raw {acc(g[True])}" for k, g in hard.items())
    if len(wins) == len(hard):
        return Verdict(claim, CONFIRMED, nums)
    if not wins:
        return Verdict(claim, REFUTED, f"standardising never helps significantly: {nums}")
    return Verdict(claim, NUANCED, f"standardising helps significantly in {len(wins)} of {len(hard)} settings"
                   f"{f' and hurts in {len(losses)}' if losses else ''}: {nums}")


STUDY = Study("s6_preproc", "S6 Input preprocessing", order=62, rules=(verdict,))
