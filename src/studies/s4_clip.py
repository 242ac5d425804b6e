"""S4: gradient clipping (Pascanu et al. 2013) on a deliberately unstable setting.

Moons, 8 ReLU layers of 32, weights N(0, 0.5²), plain SGD at lr 0.1, batch 32 (`conf/experiment/s4_clip.yaml`):
without clipping the first steps overflow (the replica is marked diverged, the run still finishes); clipping by
norm, or by a tight value, keeps every replica finite.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.studies.base import CONFIRMED, NUANCED, NULL, REFUTED, Row, Study, Verdict, acc, missing, parse_name, value


def _clip_label(row: Row) -> tuple[bool, str]:
    """(unclipped?, label) from the overrides: `clip=none|value_1|...` or `train.clip_value/clip_norm=...`."""
    ov = parse_name(str(row.get("name", "")))
    vals = {k: v for k, v in ov.items() if "clip" in k}
    if not vals:
        return True, "none"
    return all(v in NULL for v in vals.values()), ",".join(f"{k}={v}" for k, v in vals.items())


def verdict(rows: Sequence[Row]) -> Verdict:
    """The claim, judged on the rows of runs.csv."""
    claim = "In an unstable setting (large init, large lr) unclipped runs diverge; with gradient clipping they train."
    usable = [r for r in rows if str(r.get("status")) != "failed"]
    none = [r for r in usable if _clip_label(r)[0]]
    clipped = [r for r in usable if not _clip_label(r)[0]]
    if not none or not clipped:
        return missing(claim, "an unclipped job and a clipped job")
    d_none = max(value(r, "diverged_fraction") for r in none)
    best = min(clipped, key=lambda r: (value(r, "diverged_fraction"), -value(r, "test_acc")))
    d_best = value(best, "diverged_fraction")
    nums = (f"unclipped diverged fraction {d_none:.2f}; best clipped ({_clip_label(best)[1]}) {d_best:.2f}, "
            f"test {acc(best)}")
    if d_none >= 0.5 and d_best == 0.0:
        return Verdict(claim, CONFIRMED, nums)
    if d_none == 0.0 or d_best >= d_none:
        return Verdict(claim, REFUTED, ("the unclipped runs did not diverge: " if d_none == 0.0 else
                                        "clipping did not reduce divergence: ") + nums)
    return Verdict(claim, NUANCED, f"clipping reduces but does not remove divergence, or few unclipped runs "
                   f"diverge: {nums}")


STUDY = Study("s4_clip", "S4 Gradient clipping in an unstable setting", order=40, rules=(verdict,))
