"""Gradient clipping, per replica: by value (element-wise) and by global L2 norm (Pascanu et al. 2013).

Why: when the loss surface has a cliff (deep or recurrent nets, large initial weights, a large lr), one gradient can
be orders of magnitude larger than the others and a single step throws the parameters far away, after which the loss
overflows (study S4). Clipping bounds the step. The seed's toy: loss ``x⁴`` from ``x = 10`` with lr 0.1 has
gradient ``4x³ = 4000``, so plain GD jumps to ``10 − 400 = −390`` and explodes; clipped to 100 the step is
``10 − 0.1·100 = 0``, the minimum.

* :func:`clip_by_value` clamps every element to ``[−c, c]`` (``torch.nn.utils.clip_grad_value_``). Simple, but it
  changes the direction of the gradient.
* :func:`clip_by_norm` rescales ALL gradients of a replica together when their global norm exceeds ``max_norm``:
  ``g ← g · max_norm/(‖g‖ + eps)`` (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent
  neural networks", Algorithm 1; ``torch.nn.utils.clip_grad_norm_`` with eps 1e-6). The direction is kept. Unlike
  torch, replicas at or below the threshold are left bit-for-bit unchanged (torch multiplies them by
  ``min(1, max_norm/(‖g‖+1e-6))``, which is slightly < 1 within 1e-6 of the threshold).

Both work in place on ``grads`` (``dict[str, ndarray]``, leading replica axis R) and return the PRE-clip global norm
``(R,)`` (what the loop logs as ``grad_norm``). Thresholds are a float or an array ``(R,)`` (a grid over
thresholds in one vectorised job); ``np.inf`` in a replica means "no clipping" there.

Non-finite gradients stay detectable: a NaN element stays NaN (and its replica's norm is NaN, so
``clip_by_norm`` leaves that replica untouched); a replica with an infinite element has norm ``inf``, and
``clip_by_norm`` scales it by 0, which turns the ``inf`` elements into NaN. ``clip_by_value`` maps ``±inf`` to
``±c`` (that is what clamping means) but the returned pre-clip norm is ``inf``: check it, as the loop does.

:func:`global_norm` guards against overflow: a replica whose sum of squares overflows (elements beyond ~1e154)
or underflows is recomputed with a max-abs rescaling, so a finite gradient always has a finite, accurate norm
and clipping by norm rescales it instead of zeroing it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

import numpy as np

from . import _flat, _hyper
from ._hyper import Hyper

_F = np.finfo(np.float64)
_SMALL = _F.tiny / _F.eps  # below this the sum of squares may have lost precision to underflow


def _replicas(grads: Mapping[str, np.ndarray]) -> int:
    return _hyper.replica_count(grads, "grad", "no gradients (grads is empty)")


def _sumsq(arrays: list[np.ndarray], R: int) -> np.ndarray:
    sq = np.zeros(R, dtype=np.float64)
    for g in arrays:
        if g.size:
            flat = g.reshape(R, -1)
            sq += np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
    return sq


def global_norm(grads: Mapping[str, np.ndarray]) -> np.ndarray:
    """``sqrt(Σ g²)`` over all arrays and elements of each replica, shape ``(R,)`` float64 (NaN if any is NaN)."""
    R = _replicas(grads)
    arrays = list(grads.values())
    base = _flat.base_of(arrays)  # an MLP's gradients tile one (R, P) array: one product instead of one per array
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sq = _sumsq(arrays, R) if base is None else np.einsum("ij,ij->i", base, base, dtype=np.float64)
        norm = np.sqrt(sq)
        redo = np.flatnonzero((sq == np.inf) | (sq < _SMALL))
        if redo.size:
            sub = [g[redo] for g in arrays]
            amax = np.zeros(redo.size)
            for g in sub:
                if g.size:
                    amax = np.fmax(amax, np.abs(g.reshape(redo.size, -1)).max(axis=1))
            ok = np.isfinite(amax) & (amax > 0)
            if ok.any():
                scale = amax[ok]
                scaled = [g[ok] / scale.reshape((-1,) + (1,) * (g.ndim - 1)) for g in sub]
                norm[redo[ok]] = scale * np.sqrt(_sumsq(scaled, int(ok.sum())))
    return norm


def _threshold(name: str, value: Hyper, R: int) -> Hyper:
    out = _hyper.real(name, value, lo=0.0, lo_open=True, allow_inf=True)
    _hyper.check_replicas(name, out, R)
    return out


def clip_by_value(grads: MutableMapping[str, np.ndarray], clip_value: Hyper) -> np.ndarray:
    """Clamp every gradient element to ``[−clip_value, clip_value]`` in place; return the pre-clip norm ``(R,)``.

    ``clip_value`` is a float > 0 or an array ``(R,)`` (``np.inf`` = no clipping for that replica). NaN stays NaN.
    """
    R = _replicas(grads)
    c = _threshold("clip_value", clip_value, R)
    norm = global_norm(grads)
    if isinstance(c, float) and c == np.inf:
        return norm
    for g in grads.values():
        cb = _hyper.per_replica(c, g.ndim)
        np.clip(g, -cb, cb, out=g)
    return norm


def clip_by_norm(grads: MutableMapping[str, np.ndarray], max_norm: Hyper, eps: float = 1e-6) -> np.ndarray:
    """Rescale the gradients of each replica whose global norm exceeds ``max_norm`` by ``max_norm/(‖g‖+eps)``.

    In place; returns the pre-clip norm ``(R,)``. ``max_norm`` is a float > 0 or an array ``(R,)`` (``np.inf`` =
    no clipping for that replica). Replicas with a NaN norm are left as they are (still NaN).
    """
    R = _replicas(grads)
    mx = _threshold("max_norm", max_norm, R)
    eps = _hyper.real("eps", eps, lo=0.0, per_replica_ok=False)
    norm = global_norm(grads)
    over = norm > mx  # False for NaN
    if over.any():
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            scale = np.where(over, mx / (norm + eps), 1.0)
            for g in grads.values():
                g *= scale.reshape((R,) + (1,) * (g.ndim - 1))
    return norm


__all__ = ["clip_by_norm", "clip_by_value", "global_norm"]
