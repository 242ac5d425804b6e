"""A command's exit without the interpreter's last full garbage collections: ~0.5 s per command.

Why: a process that imported MLflow (SQLAlchemy, protobuf, pydantic, pandas) and matplotlib holds a million or
so objects, and Python's finalisation collects over all of them more than once: measured 0.45-0.67 s between a
command's last line and its exit, 14 times per `dvc repro` and hundreds of times per test run. At exit this
collects once (so every finaliser of the garbage made so far runs, as it would have), then freezes the survivors
(`gc.freeze`, the documented way to keep objects out of later collections). Module teardown still frees, flushes
and closes everything by reference counting; only the repeated full scans are skipped (exit: ~0.17 s).

Only the CLIs' entry points call it: importing `src` from a notebook or a library changes nothing.
"""

from __future__ import annotations

import atexit
import gc


def _collect_then_freeze() -> None:
    gc.collect()
    gc.freeze()


def skip_final_collections() -> None:
    """Register the exit hook. Called first thing in a CLI, it runs last of the exit handlers (they run in reverse
    order of registration): after the sweep's and MLflow's own, which may still make garbage."""
    atexit.unregister(_collect_then_freeze)  # at most once, whoever calls it again
    atexit.register(_collect_then_freeze)
