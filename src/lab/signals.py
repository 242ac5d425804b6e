"""All of nnlab's signal handling: Ctrl-C / SIGTERM stop a job or a sweep cleanly, never half-way through a record.

Who uses what, and why:
- a job (:mod:`src.lab.job`) runs inside :func:`interrupts`: the first Ctrl-C/SIGTERM becomes a KeyboardInterrupt
  (the loop ends, the MLflow run is ended KILLED with its history, the record says `killed`); repeats are ignored
  (a terminal's Ctrl-C reaches every process of the group, and a launcher forwards SIGTERM to its workers), so
  they cannot cut that record short. In a joblib worker the job then stops the whole sweep through its launcher
  (:func:`hand_over_to_launcher`) instead of re-raising, which would make joblib SIGKILL the other workers before
  they record their own runs.
- the sweep callback (:mod:`src.lab.sweep`), in the launching process, marks itself as the launcher
  (:func:`mark_launcher`), forwards SIGTERM to its workers (:func:`signal_workers`) and waits for their runs.
- the tracker (:mod:`src.lab.tracking`) holds signals while MLflow creates a new SQLite store (:func:`deferred`):
  an interrupt during the schema migration breaks the store for good.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
LAUNCHER_PID_ENV = "NNLAB_LAUNCHER_PID"  # the pid of the process that launched the sweep (set by the callback)
HAND_OVER_WAIT_S = 45.0  # a worker waits this long for the launcher to stop the sweep (it kills the worker)

Handler = Callable[[int, Any], Any]


def ignore(signum: int, frame: Any) -> None:
    """A Python no-op rather than SIG_IGN (a signal pending while SIG_IGN is set prints an OSError)."""


def install(handler: Handler) -> dict[int, Any]:
    """Handle Ctrl-C and SIGTERM with `handler`; return the previous handlers ({} off the main thread, where
    Python cannot install handlers: e.g. a launcher running jobs in threads)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in SIGNALS}


def restore(old: dict[int, Any]) -> None:
    """Put back the handlers :func:`install` returned."""
    for sig, handler in old.items():
        signal.signal(sig, handler)


def stop_listening() -> None:
    """From now on Ctrl-C and SIGTERM do nothing (until :func:`restore`): a handler acts once."""
    for sig in SIGNALS:
        signal.signal(sig, ignore)


def _raise_interrupt(signum: int, frame: Any) -> None:
    stop_listening()
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def interrupts() -> Iterator[None]:
    """Inside the block the first Ctrl-C or SIGTERM raises KeyboardInterrupt and later ones are ignored; the
    previous handlers are back afterwards."""
    old = install(_raise_interrupt)
    try:
        yield
    finally:
        restore(old)


def mark_launcher() -> None:
    """Record this process as the sweep's launcher: an interrupted worker stops the sweep through it."""
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())


def hand_over_to_launcher() -> None:
    """In a worker process of a sweep (joblib), stop the whole sweep through its launcher, then wait.

    Why: if this worker merely re-raised, joblib would abort at once and SIGKILL the other workers before they
    record their own runs. The launcher's handler instead forwards SIGTERM to every worker, waits until their
    runs are ended KILLED (with their history), and only then stops joblib (which kills this waiting worker).
    A no-op in the launching process itself (the basic launcher runs jobs there).
    """
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or int(launcher) == os.getpid():
        return
    try:
        os.kill(int(launcher), signal.SIGTERM)
    except OSError:  # the launcher is gone: nothing to wait for
        return
    time.sleep(HAND_OVER_WAIT_S)


def signal_workers(sig: int) -> int:
    """Send `sig` to this process's worker processes (joblib/loky, submitit_local); return how many."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with mlflow
        return 0
    n = 0
    for child in psutil.Process().children(recursive=False):
        try:
            if "resource_tracker" in " ".join(child.cmdline()):  # loky's bookkeeping process, not a worker
                continue
            child.send_signal(sig)
            n += 1
        except psutil.Error:
            continue
    return n


@contextmanager
def deferred(active: bool = True) -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM inside the block; a held signal is acted on right after it.

    Why: an interrupt while MLflow creates a new SQLite store leaves it broken for good (measured: the next open
    fails with "duplicate column name: step"). Creation takes about a second. Python-level handlers (not a
    thread signal mask, which a process-directed signal bypasses via any other thread) note the signal.
    """
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = install(lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        restore(old)
        if held:
            handler = old[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])
