"""All of nnlab's signal handling: Ctrl-C / SIGTERM stop a job or a sweep cleanly, never half-way through a record.

Who uses what, and why:
- a job (:mod:`src.lab.job`) runs inside :func:`interrupts`: the first Ctrl-C/SIGTERM becomes a KeyboardInterrupt
  (the loop ends, the MLflow run is ended KILLED with its history, the record says `killed`); repeats are ignored
  (a terminal's Ctrl-C reaches every process of the group, and a launcher forwards SIGTERM to its workers), so
  they cannot cut that record short; between jobs a worker ignores them (:func:`shield_idle_worker`). In a
  joblib worker the job then stops the whole sweep through its launcher (:func:`hand_over_to_launcher`) instead of
  re-raising, which would make joblib SIGKILL the other workers before they record their own runs.
- the sweep callback (:mod:`src.lab.sweep`), in the launching process, marks itself as the launcher
  (:func:`mark_launcher`); interrupted, it stops the sweep (:func:`stop_sweep`): no new job, SIGTERM forwarded to
  its workers, a wait for their runs.
- the tracker (:mod:`src.lab.tracking`) holds signals during every call into a database store (:func:`deferred`):
  an interrupt during the schema migration breaks a new store for good, and one in the middle of a write leaves
  its transaction open, so every other process finds the SQLite store locked until this one exits (measured: a
  worker interrupted while ending its run locked the store; the launcher could not end the sweep's parent run).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
        if handler is not None:  # None: a handler not installed from Python, which cannot be put back
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
    previous handlers are back afterwards. Nested blocks keep the outer block's state: a packed job's configs are
    recorded one by one after its shared fit was interrupted, and a repeated signal must not cut that short."""
    if _depth:
        _depth.append(1)
        try:
            yield
        finally:
            _depth.pop()
        return
    old = install(_raise_interrupt)
    _depth.append(1)
    try:
        yield
    finally:
        _depth.pop()
        restore(old)


_depth: list[int] = []  # nesting of interrupts() blocks in this process


def mark_launcher() -> None:
    """Record this process as the sweep's launcher: an interrupted worker stops the sweep through it."""
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())


def hand_over_to_launcher() -> None:
    """In a worker process of a sweep (joblib, a forked `cores` job), stop the whole sweep through its launcher,
    then wait.

    Why: if this worker merely re-raised, joblib would abort at once and SIGKILL the other workers before they
    record their own runs. The launcher's handler instead forwards SIGTERM to every worker, waits until their
    runs are ended KILLED (with their history), and only then stops joblib (which kills this waiting worker).
    A no-op in the launching process itself (the basic launcher runs jobs there).
    """
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or int(launcher) == os.getpid():
        return
    job_done()  # this job's record is written: the launcher need not wait for it
    try:
        os.kill(int(launcher), signal.SIGTERM)
    except OSError:  # the launcher is gone: nothing to wait for
        return
    time.sleep(HAND_OVER_WAIT_S)


def shield_idle_worker() -> None:
    """In a worker process of a local launcher (joblib/loky, cores, submitit_local): from now on Ctrl-C and SIGTERM
    outside a job are ignored. Call it before a job's :func:`interrupts`, which puts this back after the job.

    Why: a worker that a signal ends right after its job, while it writes the job's result to loky's result pipe,
    dies holding the result queue's lock with half a message in the pipe (a result over 16 KB, as a job's Hydra
    configs are, is written as a header, then the payload). Loky's manager thread then waits forever in `recv` for
    the rest, the other workers wait forever for the lock, and the interrupted launcher hangs in joblib's abort (the
    SIGTERM turn-over test, ~1 loaded run in 20: a worker in `queues.py put` waiting for the lock, the launcher
    joining loky's manager thread; loky alone with 30 MB results and SIGTERMs hangs within ten tries, in that
    `recv`; not once in thirty with the workers shielded). Ignored, the signal leaves an idle worker alive until the
    launcher's joblib aborts and loky kills it, after its manager thread has stopped reading. A worker's job still
    stops on the signal (:func:`interrupts`), and a worker whose launcher died still exits
    (:func:`_watch_launcher`). Not in the launching process (the basic launcher runs jobs there) nor in a process
    the launcher did not start itself (a Ray worker): their signals keep their meaning.
    """
    global _shielded
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if _shielded or not launcher or int(launcher) == os.getpid() or int(launcher) != os.getppid():
        return
    if install(ignore):
        _shielded = True


_shielded = False
_stopping = threading.Event()  # set in a launcher that was interrupted (see stop_sweep)


def stop_sweep(sweep_dir: Path | None, grace: float) -> None:
    """In an interrupted launcher: start no new job, forward SIGTERM to the workers, and wait (at most `grace`
    seconds) until their jobs have written their records and ended their runs KILLED.

    A worker between two jobs ignores the SIGTERM (:func:`shield_idle_worker`) until joblib's abort kills it; one
    that has not run a job yet has no handler and dies of it: loky then reports a dead worker
    (:func:`protect_neighbours`), which :func:`stopping` lets the sweep record as the interrupt it is (KILLED), not
    as a lost worker (FAILED)."""
    _stopping.set()
    if sweep_dir is not None:
        stop_new_jobs(sweep_dir)
    if signal_workers(signal.SIGTERM) and sweep_dir is not None:
        wait_for_jobs(sweep_dir, grace)


def stopping() -> bool:
    """Whether this process is a launcher stopping its sweep after Ctrl-C/SIGTERM."""
    return _stopping.is_set()


def signal_workers(sig: int) -> int:
    """Send `sig` to this process's worker processes (joblib/loky, cores, submitit_local); return how many."""
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


# --- jobs in worker processes: busy markers, the launcher's death, a neighbour's death ------------------------
BUSY_FILE = ".nnlab_busy"  # in a job's output folder while the job runs: "<pid>"
STOP_FILE = ".nnlab_stop"  # in a sweep folder: jobs that start after it appeared do nothing (a worker died)
PARENT_POLL_S = 1.0
ORPHAN_GRACE_S = 300.0  # an orphaned worker's job may take this long to record its runs KILLED, then it exits
_watchdog: threading.Thread | None = None
_busy: list[Path] = []  # the marker of the job running in this process (at most one)


@contextmanager
def job_running(out_dir: Path) -> Iterator[None]:
    """Mark `out_dir` as a running job of this process for the block (see :func:`wait_for_jobs`); in a worker
    process also start the watchdog that stops the job if the launching process dies."""
    marker = Path(out_dir) / BUSY_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    _busy.append(marker)
    _watch_launcher()
    try:
        yield
    finally:
        job_done()


def job_done() -> None:
    """This process's job has written its record: a waiting launcher may go on (called before a worker sleeps in
    :func:`hand_over_to_launcher`, and when the job ends)."""
    while _busy:
        _busy.pop().unlink(missing_ok=True)


def running_jobs(sweep_dir: Path) -> list[Path]:
    """The busy markers under `sweep_dir` whose process is alive (a dead worker's marker does not count)."""
    import psutil

    alive = []
    for marker in Path(sweep_dir).glob(f"**/{BUSY_FILE}"):
        try:
            pid = int(marker.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            alive.append(marker)
    return alive


def wait_for_jobs(sweep_dir: Path, timeout: float | None) -> bool:
    """Wait until no live process has a job running under `sweep_dir` (records written); False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while running_jobs(sweep_dir):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_new_jobs(sweep_dir: Path) -> None:
    """From now on, jobs of this sweep that have not started yet return at once without running."""
    (Path(sweep_dir) / STOP_FILE).write_text(str(os.getpid()))


def new_jobs_stopped(sweep_dir: Path | None) -> bool:
    return sweep_dir is not None and (Path(sweep_dir) / STOP_FILE).exists()


def _watch_launcher() -> None:
    """In a worker process (its launcher is another process): a daemon thread notices the launcher's death
    (this process gets re-parented) and stops the running job as SIGTERM would -- the run ends KILLED with its
    history -- then ends this process. Why: loky workers whose launcher was SIGKILLed went on training for hours,
    their runs RUNNING forever. Polling `getppid` works for every local launcher (joblib/loky, cores,
    submitit_local)."""
    global _watchdog
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or int(launcher) == os.getpid() or _watchdog is not None:
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        if _busy:
            os.kill(os.getpid(), signal.SIGTERM)  # the job's handler: KeyboardInterrupt -> run KILLED, record
            deadline = time.monotonic() + ORPHAN_GRACE_S
            while _busy and time.monotonic() < deadline:
                time.sleep(0.2)
        os._exit(143)

    _watchdog = threading.Thread(target=watch, name="nnlab-launcher-watchdog", daemon=True)
    _watchdog.start()


def protect_neighbours(sweep_dir: Path, on_death: Callable[[str], None] | None = None) -> None:
    """In the launcher of a joblib sweep: when a worker dies (SIGKILL, the OOM killer), let the other workers
    finish the job they are running before loky kills them, start no new job, and stop the sweep in one line.

    Why: loky marks its pool broken as soon as one worker dies and SIGKILLs every other worker at once (measured:
    a healthy neighbour's run ended KILLED with no metrics, then loky's traceback). This wraps loky's
    `terminate_broken` (its private API: the e2e test "SIGKILL one worker" fails if a joblib upgrade changes it):
    stop new jobs, wait for the running ones to write their records, call `on_death(message)` (the sweep ends its
    runs), then let loky proceed with :class:`WorkerDied`, which Hydra prints as one line. A no-op without joblib.
    """
    global _on_death
    _on_death = on_death
    try:
        from joblib.externals.loky import process_executor as pe
    except ImportError:  # pragma: no cover - joblib is optional
        return
    cls = pe._ExecutorManagerThread
    original = getattr(cls.terminate_broken, "__wrapped__", cls.terminate_broken)
    folder = Path(sweep_dir)

    def terminate_broken(self: Any, bpe: Any) -> Any:
        stop_new_jobs(folder)
        n = len(running_jobs(folder))
        if n and not stopping():  # an interrupted launcher has said why its workers stop
            print(f"nnlab: a worker process died; waiting for the {n} running job(s) to finish before stopping "
                  "the sweep", file=sys.stderr, flush=True)
        wait_for_jobs(folder, timeout=None)
        codes = str(bpe).split("exit codes of the workers are", 1)[-1].split()
        why = codes[0].strip("{}") if codes and "exit codes" in str(bpe) else "unknown cause"
        return original(self, worker_died(why))

    terminate_broken.__wrapped__ = original  # type: ignore[attr-defined]
    cls.terminate_broken = terminate_broken


_on_death: Callable[[str], None] | None = None  # the sweep's hook (SweepCallback.abort), set by protect_neighbours


def worker_died(why: str) -> BaseException:
    """The error that stops a sweep whose worker died (`why`: its exit code or signal), once the other running
    jobs have finished (loky's thread above, or `src.lab.fork_launcher` after its last job): the sweep's hook
    ends the runs still RUNNING first; Hydra prints the error as one line."""
    message = (f"nnlab: error: a worker process died ({why}: the OOM killer, or a kill) and stopped the sweep; "
               "its job's run is recorded KILLED, the other jobs finished first; re-run with resume=true")
    if stopping():  # the launcher was interrupted and stopped its workers: this death is that interrupt
        message = ("nnlab: interrupted: the sweep's workers were stopped; unfinished runs are recorded as KILLED; "
                   "re-run the same command with resume=true to finish the sweep")
    if _on_death is not None:
        _on_death(message)
    return _worker_died_class()(message)


@functools.cache
def _worker_died_class() -> type:
    from hydra.errors import CompactHydraException
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    class WorkerDied(TerminatedWorkerError, CompactHydraException):
        """A worker of the sweep died. Hydra prints a CompactHydraException as its message alone (one line)."""

    return WorkerDied
