"""A packed job's run figures, drawn ahead by one forked helper process while the job records its configs.

Why: after a pack's shared fit its configs are recorded one by one: MLflow writes (~0.1 s) and each run's
figures (decision boundary, activation histograms: 0.2-0.65 s per config on the slow box of 2026-12-07), one core
at a time while the other idles (the basic launcher runs the job in the launching process). Over seven grid
stages of `dvc repro` the figures were 15 s (py-spy, README "Speed"). A helper forked right after the fit (the
trained nets are in memory: nothing is pickled) draws two of every three configs' figures, in order, into their
artifact folders; the job draws the others itself and, when it reaches a config the helper drew, waits for the
helper's word (a marker file next to the artifacts folder, written after the figures).

What the helper does not do: touch MLflow or the records (the job logs every file, whoever drew it), react to
Ctrl-C/SIGTERM (the job's own handling records the runs, and an interrupted pack's figures are still wanted), or
outlive its list (a forked child exits without the job's exit handlers; the job kills it once every config is
recorded). If it dies, or a figure fails in it, the job draws that config's figures itself.

Only where it can pay: Linux (fork), two usable cores or more, in the launching process (in a joblib worker or a
forked `cores` job the other core is a neighbour's), and at least two configs to draw.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from src.files import atomic_write_text

DRAWN = ".figures_drawn"  # next to a config's artifacts folder: "ok", or why the helper could not draw them
POLL_S = 0.01
STALL_S = 60.0  # a config's figures take < 1 s: a helper this late is stuck (a fork inherits locks); it is killed

_helper: Any = None  # the helper process (multiprocessing, fork), while a pack is recorded
_assigned: set[Path] = set()  # artifacts folders the helper draws


def start(items: list[tuple[Path, Callable[[], Any]]]) -> bool:
    """Fork the helper for two of every three of `items` (a config's artifacts folder, and the call that draws its
    figures there), when it can pay (module docstring). Returns whether a helper started."""
    finish()
    if len(items) < 2 or not _may_help():
        return False
    theirs = [(Path(art), draw) for i, (art, draw) in enumerate(items) if i % 3 != 0]
    for art, _ in theirs:
        _marker(art).unlink(missing_ok=True)  # a previous sweep's word in a reused folder
    import matplotlib.pyplot  # noqa: F401 - imported once, before the fork: the helper inherits it

    from src.lab.signals import deferred

    global _helper
    _helper = multiprocessing.get_context("fork").Process(target=_draw_all, args=(theirs,), name="nnlab-figures",
                                                         daemon=True)
    with deferred():  # the child starts with a handler that only notes a signal, until it ignores them
        _helper.start()
    _assigned.update(art for art, _ in theirs)
    return True


def drawn(art: Path) -> bool:
    """Whether the helper has drawn the figures of `art` (waiting for it if it is on the way); False when they are
    not the helper's, or it failed or died: the caller draws them."""
    art = Path(art)
    if art not in _assigned:
        return False
    _assigned.discard(art)
    marker, deadline = _marker(art), time.monotonic() + STALL_S
    while not marker.exists():
        if _helper is None or not _helper.is_alive() or time.monotonic() > deadline:
            if marker.exists():  # written just before it ended
                break
            finish()  # dead or stuck: the job draws the rest itself
            return False
        time.sleep(POLL_S)
    ok = marker.read_text() == "ok"
    marker.unlink(missing_ok=True)
    return ok


def finish() -> None:
    """The pack is recorded: stop the helper (what it has not drawn yet is nobody's now) and forget its list."""
    global _helper
    if _helper is not None:
        if _helper.is_alive():
            _helper.kill()
        _helper.join()
        _helper = None
    for art in _assigned:
        _marker(art).unlink(missing_ok=True)
    _assigned.clear()


def _draw_all(items: list[tuple[Path, Callable[[], Any]]]) -> None:
    """The helper: every item's figures in order, each followed by its marker; signals ignored, BLAS on one thread
    (the job's process has the other core)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for art, draw in items:
            try:
                draw()
                word = "ok"
            except Exception as exc:  # noqa: BLE001 - the job draws this config's figures itself, and says why
                word = f"failed: {type(exc).__name__}: {exc}"
            atomic_write_text(_marker(art), word)


def _marker(art: Path) -> Path:
    return art.parent / DRAWN


def _may_help() -> bool:
    """Linux, two usable cores or more (joblib's count: affinity, cgroup quotas), and this process launched the
    sweep (not a joblib/loky worker nor a forked `cores` job, whose other core is a neighbour's)."""
    from src.lab.signals import LAUNCHER_PID_ENV

    if sys.platform != "linux" or os.environ.get(LAUNCHER_PID_ENV, str(os.getpid())) != str(os.getpid()):
        return False
    from joblib import cpu_count

    return int(cpu_count()) >= 2
