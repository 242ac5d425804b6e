"""Process-level settings that make the replica-batched NumPy loop fast; called once per worker by `loop.fit`.

Why: with R replicas an activation array is R·m·width·8 bytes (R=32, m=300, width 10: 768 KB; R=128: 3 MB).
glibc serves blocks above its mmap threshold with a fresh `mmap` and gives them back with `munmap` on free, and
trims the heap top when more than its trim threshold is free: either way every training step page-faults its
temporaries in again (the kernel zeroes every 4 KB page). Measured by `benchmarks/bench.py` ("replicas"):
R=128 costs ~95 µs per replica-iteration without this and ~20 µs with it. Raising both thresholds keeps the
freed blocks in the process for reuse; peak RSS is unchanged (the blocks were needed anyway).
The alternative, preallocated `out=` buffers in every layer, would obscure the forward/backward maths.
No-op where glibc's `mallopt` does not exist (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest accepted mmap threshold on 64-bit (it refuses more)
_TRIM_BYTES = 512 * 1024 * 1024

_done = False


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if it took effect."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, _MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_BYTES))
    _done = ok
    return ok
