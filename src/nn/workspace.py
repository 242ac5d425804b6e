"""Arrays that a training step reuses from one step to the next instead of allocating them again.

Why: with R replicas an activation array is R·m·width·itemsize bytes (R=32, m=300, width 10: 768 KB). glibc
serves blocks that large with ``mmap`` and returns them with ``munmap``, and trims its heap when much is free,
so a step that allocates its temporaries page-faults every one of them in again (the kernel zeroes each 4 KB
page): measured on the course net, R=32 then cost as much per model as R=1 and the replica axis paid nothing.
Writing each result into an array kept from the previous step touches memory that is already mapped and usually
still in cache, on every platform (macOS, musl, a notebook), without tuning the allocator.

How a layer uses it: ``z = ws.keep("z", np.matmul(x, W, out=ws.get("z")))``. On the first call ``ws.get`` gives
None, NumPy allocates the result and ``keep`` stores it under the name; on every later call the result is written
into that same array. Both are plain dict operations (C calls, no shape arithmetic in Python), so a workspace costs
next to nothing per step even for a one-replica net where the NumPy calls themselves are the cost. The default
:data:`FRESH` keeps nothing: a layer called without a workspace is plain NumPy.

Contract: one workspace serves calls with the SAME input shapes and dtypes (the MLP keeps one per layer and per
input shape). NumPy refuses an output whose shape does not fit, but would broadcast smaller inputs into a larger
kept array, so a workspace must not be shared between shapes. Results written into a workspace are valid until the
next call that uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Workspace(dict):
    """name -> array kept from the previous call; ``get(name)`` (None at first) and ``keep(name, array)``."""

    keep = dict.setdefault  # keep(name, a): store `a` under name unless one is kept already; return the kept one

    def bind(self, name: str, array: np.ndarray) -> None:
        """Make `array` (e.g. a view into the net's gradient buffer) the one written into under `name`."""
        self[name] = array


class _Fresh(Workspace):
    """The workspace that keeps nothing: ``get`` is always None, so NumPy allocates every result."""

    def keep(self, name: str, array: Any) -> Any:  # type: ignore[override]
        return array

    def __setitem__(self, name: str, array: Any) -> None:
        raise TypeError("the FRESH workspace keeps no arrays")


FRESH: Workspace = _Fresh()
