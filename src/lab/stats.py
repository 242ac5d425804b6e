"""Summaries over replicas: mean, standard deviation and a 95% confidence interval.

Why Student's t and not 1.96: with 5 replicas the normal approximation understates the interval by ~30%;
the t quantile with R-1 degrees of freedom is the honest half-width of the mean's 95% CI.
Diverged replicas (NaN) are left out of the mean and counted separately by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the 95% CI of the mean of the finite `values` (0 for fewer than two)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0.0
    return float(_st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


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
