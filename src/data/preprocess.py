"""Preprocessing at load time (study S6): re-scale every split, optionally (re-)standardise with train statistics."""

from __future__ import annotations

import math
import numbers

import numpy as np

from src.data.dataset import SPLITS, Dataset, DatasetError, digest, freeze

# Refused rather than trained: beyond this, a feature's square (a variance, a loss, a weight gradient) overflows
# float64 in the first step, and the run would be reported as "diverged" when the input itself is unusable.
MAX_FEATURE = 1e150


def transform(ds: Dataset, shift: float = 0.0, scale: float = 1.0, standardize: bool | None = None) -> Dataset:
    """The dataset with its features re-scaled: a pure function of ``ds`` (study S6, preprocessing).

    ``standardize=False`` first undoes the generator's standardisation (back to raw units, using the card's
    train mean/std); then every feature of every split becomes ``X * scale + shift``; ``standardize=True``
    finally re-standardises with the *train* split's mean/std (a zero std is replaced by 1). ``None`` keeps the
    data as generated. The identity (0, 1, None) returns ``ds`` itself, so default runs keep their digest;
    otherwise the card records the transform and the new statistics, and the digest changes.
    """
    for label, v in (("shift", shift), ("scale", scale)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise DatasetError(f"data.{label} must be a finite number, got {v!r}")
    if scale == 0:
        raise DatasetError("data.scale must be non-zero, got 0")
    if standardize not in (None, True, False):
        raise DatasetError(f"data.standardize must be true, false or null, got {standardize!r}")
    if shift == 0 and scale == 1 and standardize is None:
        return ds
    X = {s: np.array(getattr(ds, f"X_{s}"), dtype=np.float64) for s in SPLITS}
    card = dict(ds.card)
    if standardize is False and card.get("standardized") and card.get("mean") is not None:
        mu, sd = np.asarray(card["mean"], dtype=np.float64), np.asarray(card["std"], dtype=np.float64)
        X = {s: x * sd + mu for s, x in X.items()}
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, in one line
        X = {s: x * float(scale) + float(shift) for s, x in X.items()}
    largest = max(float(np.abs(x).max()) for x in X.values())
    if not largest < MAX_FEATURE:  # also catches inf/nan: squares (variances, losses) must stay finite
        raise DatasetError(f"data.scale={scale!r} with data.shift={shift!r} makes features as large as {largest:.3g}; "
                           f"valid: |x * scale + shift| < {MAX_FEATURE:.0e} (larger squares overflow float64)")
    mean = std = None
    if standardize:
        mu = X["train"].mean(axis=0)
        sd = X["train"].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        X = {s: (x - mu) / sd for s, x in X.items()}
        mean, std = [float(v) for v in mu], [float(v) for v in sd]
    arrays = {**ds.arrays(), **{f"X_{s}": freeze(x, np.float64) for s, x in X.items()}}
    card.update(transform={"shift": float(shift), "scale": float(scale), "standardize": standardize,
                           "source_sha256": ds.digest()},
                standardized=bool(standardize), mean=mean, std=std, sha256=digest(arrays))
    return Dataset(name=ds.name, n_classes=ds.n_classes, card=card, **arrays)
