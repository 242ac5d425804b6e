"""Many named arrays as views into one ``(R, P)`` array, so that element-wise work on all of them is one NumPy call.

Why: an optimizer step is the same formula applied to every parameter array (W1, b1, W2, ...). Called once per
array it costs a dozen NumPy calls per step whatever the sizes, which for a small net is as much as the maths;
called once on an array that holds all of them it costs one. The MLP therefore keeps its parameters and its
gradients as views into one array each (replica-major: row r holds replica r's W1, b1, W2, ... in key order),
and the optimizer recognises such a dict with :func:`base_of` and steps the whole row block at once. Any other dict
of arrays still works, one array at a time.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence

import numpy as np


def views(flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Views ``(R, *shape)`` into consecutive columns of the ``(R, P)`` array `flat`, one per name, in order."""
    R, out, start = flat.shape[0], {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = flat[:, start:start + n].reshape((R, *shape))
        start += n
    if start != flat.shape[1]:
        raise ValueError(f"shapes need {start} columns, the flat array has {flat.shape[1]}")
    return out


def flat_like(arrays: Mapping[str, np.ndarray], dtype: np.dtype | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A new zeroed ``(R, P)`` array laid out like `arrays` (each ``(R, ...)``) and its views, keyed the same."""
    first = next(iter(arrays.values()))
    shapes = {k: a.shape[1:] for k, a in arrays.items()}
    flat = np.zeros((first.shape[0], sum(math.prod(s) for s in shapes.values())), dtype or first.dtype)
    return flat, views(flat, shapes)


# The last arrays found to tile a base, and that base, by weak reference: a global must not keep a dead net's
# gradient buffer alive.
_LAST: tuple[tuple[weakref.ref, ...], weakref.ref] | None = None


def base_of(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The C-contiguous ``(R, P)`` array that `arrays` tile exactly, in order (as :func:`views` makes them).

    None when they do not (any other dict of arrays): the caller then works one array at a time. The check reads
    every array's address (a few µs each); the training loop asks about the same gradient arrays at every log
    point, so the last positive answer is remembered (by identity: an array object never moves its memory).
    """
    global _LAST
    last = _LAST
    if last is not None and len(arrays) == len(last[0]) and all(r() is a for r, a in zip(last[0], arrays, strict=True)):
        base = last[1]()
        if base is not None:
            return base
    base = _tiled_base(arrays)
    if base is not None:
        _LAST = (tuple(weakref.ref(a) for a in arrays), weakref.ref(base))
    return base


def _tiled_base(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    if not arrays:
        return None
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 2 or not base.flags.c_contiguous:
        return None
    R, row = base.shape[0], base.strides[0]
    start = base.__array_interface__["data"][0]
    offset = 0
    for a in arrays:
        if a.base is not base or a.ndim < 2 or a.shape[0] != R or a.dtype != base.dtype:
            return None
        if R > 1 and a.strides[0] != row:  # (NumPy gives a length-1 axis any stride)
            return None
        if not a[0].flags.c_contiguous or a.__array_interface__["data"][0] != start + offset * base.itemsize:
            return None
        offset += a[0].size
    return base if offset == base.shape[1] else None
