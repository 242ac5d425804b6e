"""Summaries over replicas (mean, 95% CI) and paired comparisons between the arms of a study.

Why Student's t and not 1.96: with 5-10 replicas the normal approximation understates the interval (by ~30% at
5); the t quantile with n-1 degrees of freedom is the honest half-width of the mean's 95% CI. `summary` leaves
diverged replicas (NaN) out and the caller counts them; comparisons instead score them (see :func:`score`).

Why paired: replica r of every arm of a comparison uses seed r (the same initial draw where the initializer
family allows, the same mini-batch order: src/nn/mlp.py, src/lab/loop.py), so much of the seed-to-seed spread
is shared by both arms. Testing the per-seed differences (paired t; Wilcoxon's signed-rank test as the
distribution-free check) removes that shared part, which comparing two independent CIs (an "intervals do not
overlap" rule) does not. A verdict resting on several pairwise tests corrects them together with Holm's
step-down method (Holm 1979), which keeps the family-wise error at 5% under any dependence.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

ALPHA = 0.05  # significance level of every test (after Holm's correction)
DELTA = 0.02  # the smallest accuracy difference worth a claim: about 1.6 of the 80 test points of the 2-D sets


def _t975(df: int) -> float:
    """Student's t 97.5% quantile (what `scipy.stats.t.ppf(0.975, df)` returns, from `scipy.special` directly).
    Why: every finished job computes CIs, and importing `scipy.stats` cost ~1.3 s per process (most of a small
    job's start-up); the paired tests below import it only when they run (report time)."""
    return float(stdtrit(df, 0.975))


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the 95% CI of the mean of the finite `values` (0 for fewer than two)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0.0
    return float(_t975(v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def summary(values: np.ndarray) -> dict[str, float]:
    """{"mean", "std", "ci95", "n"} over the finite values (NaN mean when none is finite)."""
    v = np.asarray(values, dtype=float)
    f = v[np.isfinite(v)]
    return {
        "mean": float(f.mean()) if f.size else float("nan"),
        "std": float(f.std(ddof=1)) if f.size > 1 else 0.0,
        "ci95": ci95_halfwidth(f),
        "n": int(f.size),
    }


def fmt(mean: float, ci: float, digits: int = 3) -> str:
    """'0.943 ± 0.012' (or 'n/a' when the mean is not finite)."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


@dataclass(frozen=True)
class Paired:
    """Arm a minus arm b on the seeds both have: the mean difference, its 95% CI and two-sided p-values."""

    n: int
    mean: float
    ci95: float
    p: float  # paired t-test (NaN when n < 2: no significance from one pair)
    p_wilcoxon: float  # Wilcoxon signed-rank test (NaN when n < 2)

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    def text(self, digits: int = 3) -> str:
        """'+0.068 [+0.044, +0.091], p 1e-04, n 10'."""
        if self.n == 0:
            return "no common seeds"
        ci = (f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]" if math.isfinite(self.ci95) else "")
        return f"{self.mean:+.{digits}f}{ci}, p {pvalue(self.p)}, n {self.n}"


def pvalue(p: float) -> str:
    """A p-value for a sentence: 'n/a' (no test), '<1e-4', or two significant digits."""
    if not math.isfinite(p):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def paired(a: Mapping[int, float] | Sequence[float], b: Mapping[int, float] | Sequence[float]) -> Paired:
    """Compare `a` and `b` seed by seed: mappings are matched on their keys (the seeds), sequences by position.

    Pairs where either value is not finite are dropped (callers score diverged replicas first, :func:`score`).
    Identical arms give p = 1 and a constant non-zero difference p = 0 (the t statistic is 0/0 or ±inf there);
    fewer than two pairs give NaN: one seed never makes a difference significant.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) & set(b))
        x = np.array([a[k] for k in keys], dtype=float)
        y = np.array([b[k] for k in keys], dtype=float)
    else:
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"paired arms need the same seeds: got {x.size} and {y.size} values")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    d = x - y
    n = int(d.size)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n < 2:
        return Paired(1, mean, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    ci = float(_t975(n - 1) * sd / math.sqrt(n))
    with warnings.catch_warnings():  # nearly identical arms: scipy warns about precision, the answer stands
        warnings.simplefilter("ignore", RuntimeWarning)
        if sd <= 1e-12 * max(1.0, abs(mean)):
            p = 1.0 if abs(mean) <= 1e-12 else 0.0
        else:
            from scipy import stats as st

            p = float(st.ttest_rel(x, y).pvalue)
        p_w = 1.0 if not np.any(d) else _wilcoxon(d)
    return Paired(n, mean, ci, p, p_w)


def _wilcoxon(d: np.ndarray) -> float:
    """Wilcoxon's signed-rank p of the differences `d` (zeros split between the signs).

    Why the method is chosen here: with zeros or tied |d| (accuracies on 80 test points tie often) scipy's 'auto'
    switches to a permutation test that takes ~0.5 s per call, minutes for a factorial grid's few hundred tests;
    the normal approximation with its tie correction is the textbook answer there, and without ties the exact
    distribution is as fast."""
    a = np.abs(d)
    tied = np.any(a == 0) or np.unique(a).size < a.size
    from scipy import stats as st

    return float(st.wilcoxon(d, zero_method="zsplit", method="asymptotic" if tied else "exact").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and does not count as a test)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = [int(i) for i in np.argsort(p, kind="stable") if np.isfinite(p[i])]
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * float(p[i])))
        out[i] = running
    return out.tolist()


BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"


def outcome(diff: Paired, p_adjusted: float, delta: float = DELTA) -> str:
    """What one paired comparison a − b establishes, after Holm's correction of its family.

    equivalent: the whole 95% CI of the difference lies inside ±`delta` (the two one-sided tests' logic: no
    difference worth a claim) -- checked first, so a difference too small to matter is never called better or
    worse, however significant; better / worse: adjusted p < ALPHA, in the direction of the mean difference;
    anything else is inconclusive, including every comparison on fewer than two seeds.
    """
    if diff.n < 2:
        return INCONCLUSIVE
    if math.isfinite(diff.ci95) and -delta < diff.low and diff.high < delta:
        return EQUIVALENT
    if math.isfinite(p_adjusted) and p_adjusted < ALPHA and diff.mean != 0:
        return BETTER if diff.mean > 0 else WORSE
    return INCONCLUSIVE


def score(acc: float, diverged: bool, chance: float) -> float:
    """A replica's accuracy as comparisons count it: a diverged replica scores `chance` (1/classes).

    Why not leave it out: an arm that diverges on half of its seeds would then look as good as its surviving
    half. A diverged net's non-finite outputs predict one class, which is what chance accuracy means on these
    balanced sets; so every diverged replica stays in its arm's denominator.
    """
    return float(chance) if diverged else float(acc)
