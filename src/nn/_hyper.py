"""Validation and broadcasting of hyper-parameters that may be one number or one number per replica.

Private helper shared by ``optimizers``, ``schedules`` and ``clipping`` (so the three give the same one-line error
messages). A per-replica hyper-parameter is either a Python float (the same for all R replicas) or a float64 array
of shape ``(R,)``; :func:`per_replica` reshapes the latter to ``(R, 1, 1, ...)`` so it broadcasts against a
parameter array ``(R, ...)`` without a Python loop over replicas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

Hyper = float | np.ndarray


def fmt(value: Any) -> str:
    """A short one-line rendering of a user value for an error message."""
    if isinstance(value, np.ndarray):
        flat = value.ravel().tolist()
        text = ", ".join(repr(v) for v in flat[:6]) + (", ..." if len(flat) > 6 else "")
        return f"array([{text}], shape={value.shape})"
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    if hi == math.inf and hi_open:
        return f"a number > {lo:g}" if lo_open else f"a number >= {lo:g}"
    return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def real(
    name: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = True,
    allow_inf: bool = False,
    per_replica_ok: bool = True,
) -> Hyper:
    """Validate ``value`` (a real number, or a 1-D array/sequence of them when ``per_replica_ok``).

    Returns a Python float or a fresh float64 array of shape ``(R,)``. NaN is always refused; +inf only when
    ``allow_inf`` (e.g. a clipping threshold meaning "no clipping"). Raises a one-line ``ValueError`` that names
    the parameter, the bad value and the valid range.
    """
    rng = _interval(lo, hi, lo_open, hi_open)
    if not allow_inf:
        rng = rng.replace("a number", "a finite number", 1)
    if allow_inf and hi == math.inf:
        rng += " (inf allowed)"
    what = f"{rng}, or an array of shape (R,) of such numbers, one per replica" if per_replica_ok else rng
    bad = ValueError(f"invalid {name} {fmt(value)}; valid: {what}")
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise bad
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad from None
    if arr.ndim > 1 or (arr.ndim == 1 and (not per_replica_ok or arr.size == 0)):
        raise bad
    if arr.dtype.kind != "f":  # pragma: no cover - np.array(..., float64) always gives float
        raise bad
    with np.errstate(invalid="ignore"):
        ok = ~np.isnan(arr)
        ok &= (arr > lo) if lo_open else (arr >= lo)
        if hi < math.inf:
            ok &= (arr < hi) if hi_open else (arr <= hi)
        if not allow_inf:
            ok &= np.isfinite(arr)
    if not ok.all():
        raise bad
    return float(arr) if arr.ndim == 0 else arr


def integer(name: str, value: Any, *, lo: int) -> int:
    """Validate an integer >= ``lo`` (an integral float such as 1000.0 is accepted; bools are not)."""
    bad = ValueError(f"invalid {name} {fmt(value)}; valid: an integer >= {lo}")
    if isinstance(value, (bool, np.bool_)):
        raise bad
    integral = isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()
    if not (isinstance(value, (int, np.integer)) or integral):
        raise bad
    out = int(value)
    if out < lo:
        raise bad
    return out


def boolean(name: str, value: Any) -> bool:
    """Validate a flag (``True``/``False``; not per replica: it changes which state exists)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"invalid {name} {fmt(value)}; valid: true or false")
    return bool(value)


def choice(what: str, value: Any, valid: Iterable[str]) -> str:
    """Validate a name among ``valid``; the message lists them."""
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def check_kwargs(what: str, kwargs: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse keyword arguments that ``what`` does not accept, naming the first bad one and the valid ones."""
    valid = tuple(valid)
    for key in kwargs:
        if key not in valid:
            raise ValueError(f"unknown argument {key!r} for {what}; valid: {', '.join(valid) or '(none)'}")


def check_replicas(name: str, value: Hyper, R: int) -> None:
    """A per-replica array must have exactly R entries (one per replica)."""
    if isinstance(value, np.ndarray) and value.shape != (R,):
        raise ValueError(
            f"{name} has shape {value.shape} but the parameters have R={R} replicas; "
            f"valid: a float or an array of shape ({R},)"
        )


def per_replica(value: Hyper, ndim: int) -> Hyper:
    """Reshape a ``(R,)`` array to ``(R, 1, ..., 1)`` (``ndim`` axes) to broadcast against ``(R, ...)`` arrays."""
    if isinstance(value, np.ndarray):
        return value.reshape(value.shape + (1,) * (ndim - value.ndim))
    return value


def nonzero(value: Hyper) -> bool:
    """True when any replica's value is not 0 (so the corresponding term must be computed)."""
    if isinstance(value, np.ndarray):
        return bool(np.any(value != 0))
    return value != 0


def replica_count(arrays: Mapping[str, np.ndarray], what: str, empty: str) -> int:
    """The common leading replica axis R of every array, or a one-line ValueError (`empty` when there is none).

    Shared by the optimizers (params) and clipping (grads): both act on dicts of replica-stacked arrays.
    """
    if not arrays:
        raise ValueError(empty)
    R = None
    for key, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.ndim < 1:
            raise ValueError(f"{what} {key!r} must be an ndarray with a leading replica axis")
        if R is None:
            R = a.shape[0]
        elif a.shape[0] != R:
            raise ValueError(f"{what} {key!r} has {a.shape[0]} replicas but another has {R}")
    assert R is not None
    return R
