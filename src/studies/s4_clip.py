"""S4: gradient clipping (Pascanu et al. 2013) on a deliberately unstable setting.

Moons, 8 ReLU layers of 32, weights N(0, 0.5²), plain SGD at lr 0.1, batch 32 (`conf/experiment/s4_clip.yaml`):
without clipping the first steps overflow (the replica is marked diverged, the run still finishes); clipping by
norm, or by a tight value, keeps every replica finite. Not lr-tuned on purpose: the large lr IS the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.lab.stats import ALPHA, pvalue
from src.studies.base import CONFIRMED, NUANCED, NULL, REFUTED, Results, Row, Study, Verdict, acc, missing, parse_name
from src.studies.base import value as val

CLAIM = "In an unstable setting (large init, large lr) unclipped runs diverge; with gradient clipping they train."


def _clip_label(row: Row) -> tuple[bool, str]:
    """(unclipped?, label) from the overrides: `clip=none|value_1|...` or `train.clip_value/clip_norm=...`."""
    ov = parse_name(str(row.get("name", "")))
    vals = {k: v for k, v in ov.items() if "clip" in k}
    if not vals:
        return True, "none"
    return all(v in NULL for v in vals.values()), ",".join(f"{k}={v}" for k, v in vals.items())


def _counts(row: Row) -> tuple[int, int]:
    """(diverged replicas, replicas) of a job: every replica counts, diverged or not."""
    n = int(round(val(row, "replicas"))) if val(row, "replicas") == val(row, "replicas") else 0
    return int(round(val(row, "diverged_fraction") * n)), n


def verdict(res: Results | Sequence[Row]) -> Verdict:
    """Diverged replicas out of ALL replicas, unclipped vs the clipped job that diverges least, compared by
    Fisher's exact test: confirmed when at least half of the unclipped replicas diverge, none of that clipped job's
    do and the difference is significant (p < 0.05; never with one replica per job); refuted when the unclipped
    runs do not diverge or clipping does not lower the count; nuanced otherwise."""
    rows = Results.of(res).rows
    usable = [r for r in rows if str(r.get("status")) != "failed"]
    none = [r for r in usable if _clip_label(r)[0]]
    clipped = [r for r in usable if not _clip_label(r)[0]]
    if not none or not clipped:
        return missing(CLAIM, "an unclipped job and a clipped job")
    worst = max(none, key=lambda r: val(r, "diverged_fraction"))
    best = min(clipped, key=lambda r: (val(r, "diverged_fraction"), -val(r, "test_acc")))
    (k0, n0), (k1, n1) = _counts(worst), _counts(best)
    from scipy import stats as st  # here, not at import: ~1 s of every `src.train` start-up

    p = float(st.fisher_exact([[k0, n0 - k0], [k1, n1 - k1]]).pvalue) if n0 and n1 else float("nan")
    nums = (f"unclipped: {k0} of {n0} replicas diverged; best clipped ({_clip_label(best)[1]}): {k1} of {n1}, "
            f"test {acc(best)}; Fisher's exact p {pvalue(p)}")
    if n0 and k0 >= n0 / 2 and k1 == 0 and p < ALPHA:
        return Verdict(CLAIM, CONFIRMED, nums)
    if k0 == 0 or (n0 and n1 and k1 / n1 >= k0 / n0):
        return Verdict(CLAIM, REFUTED, ("the unclipped runs did not diverge: " if k0 == 0 else
                                        "clipping did not reduce divergence: ") + nums)
    return Verdict(CLAIM, NUANCED, f"clipping reduces divergence, but not to zero, not significantly, or few "
                   f"unclipped replicas diverge: {nums}")


STUDY = Study("s4_clip", "S4 Gradient clipping in an unstable setting", order=40, rules=(verdict,))
