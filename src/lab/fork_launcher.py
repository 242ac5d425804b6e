"""`hydra/launcher=cores`: the jobs of a sweep on every usable core, each in a process forked from the launcher.

Why not Hydra's joblib launcher, which `cores` was until 2026-12-07: it hard-codes loky, whose workers are fresh
interpreters that import numpy, MLflow, SQLAlchemy, Hydra and matplotlib again (~2.5-3 s each, measured by py-spy
in the default grid's workers), so the presets whose packs take a few seconds ran faster on one core. A process
forked from the launcher, which has imported all of that for the pre-flight check and the sweep's parent run
(and what the task's `preload` names: `src/train.py`), starts its job in milliseconds. Measured on 2026-12-07
(README *Scale out*): `dvc repro` in fresh clones 159 s with loky for three presets and one process for seven,
144 s with every grid preset forked, the same results byte for byte.

One process per job (not a pool): a job that dies takes nothing else with it, and there is no shared task queue
whose lock a dying worker could hold (a `multiprocessing.Pool` prototype hung in 2 launches of 24 that way). The
fault model is the joblib one's (`src/lab/signals.py`): an interrupted launcher forwards SIGTERM to the job
processes, waits for their records, then kills what is left; a job process that dies (SIGKILL, the OOM killer)
lets the running jobs finish, starts no new one and fails the sweep in one line; a job whose launcher died is
stopped by its watchdog. Where `fork` is not available (Windows; macOS, whose system libraries are not fork-safe),
this is Hydra's joblib launcher, unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from src.lab import signals


def forking() -> bool:
    """Whether jobs can be forked here: Linux (macOS's system libraries are not fork-safe once threads run)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def fresh_database_connections() -> None:
    """In a forked child: drop the SQLAlchemy connections inherited from the launcher, unclosed (the launcher
    still uses them), so that the child opens its own. Why: an SQLite connection must not cross a fork (SQLite's
    file locks belong to the process that took them; SQLAlchemy: `Engine.dispose(close=False)` in the child).
    MLflow keeps one engine per database URI in `SqlAlchemyStore._engine_map` (its private API: the fork tests
    fail if an MLflow upgrade renames it)."""
    store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if store is None:  # the launcher never opened a database store: nothing inherited
        return
    for engine in list(store.SqlAlchemyStore._engine_map.values()):
        engine.dispose(close=False)


def _child(conn: Any, launcher: ForkLauncher, idx: int, overrides: list[str], state: dict[Any, Any]) -> None:
    """A job process: the launcher's signal handlers are not ours (Ctrl-C and SIGTERM get Python's defaults
    until the job installs its own, as in a fresh loky worker), then run the job and send back its JobReturn."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fresh_database_connections()
    assert launcher.config is not None and launcher.hydra_context is not None and launcher.task_function is not None
    try:  # the task's own errors are in its JobReturn already (run_job); this is Hydra's setup of the job failing
        ret = execute_job(idx, overrides, launcher.hydra_context, launcher.config, launcher.task_function, state)
    except Exception as exc:  # noqa: BLE001 - sent back and re-raised by the sweeper, as loky would
        ret = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=exc)
    try:  # cloudpickle, as loky: a JobReturn holds Hydra's config dataclasses, which Hydra's plugin scan re-imports
        payload = cloudpickle.dumps(ret)
    except Exception as exc:  # noqa: BLE001 - an unpicklable return value: say so rather than die silently
        payload = cloudpickle.dumps(JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=RuntimeError(
            f"the job's result could not be sent back: {exc}")))
    conn.send_bytes(payload)
    conn.close()


def _exit_code(code: int | None) -> str:
    """As loky says it: `SIGKILL(-9)` for a signal, else the code."""
    if code is not None and code < 0:
        try:
            return f"{signal.Signals(-code).name}({code})"
        except ValueError:
            pass
    return f"exit code {code}"


class ForkLauncher(JoblibLauncher):
    """Hydra's joblib launcher's configuration (`n_jobs`), jobs forked instead of sent to loky (see module)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not forking():
            return super().launch(job_overrides, initial_job_idx)
        n_jobs = max(1, int(self.joblib.get("n_jobs") or 1))  # `cores` resolves it to the usable cores (at most 8)
        assert self.config is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        return self._run(job_overrides, initial_job_idx, n_jobs)

    def _prepare_to_fork(self) -> None:
        """Once, before the first fork: the task's own `preload(config)`, if its module has one (`src/train.py`:
        what every job imports, e.g. matplotlib, imported here once instead of in every job), then `gc.freeze()`.
        Why freeze: a forked job's garbage collections would otherwise walk the launcher's million objects (MLflow,
        SQLAlchemy, Hydra), which costs time and, by touching them, copies their memory pages into the job (copy on
        write); frozen objects are left out of collections (the use Python's documentation gives for it). Measured
        in s6_preproc's 8 forked jobs: 9.9 s without either, 8.7-8.8 s with the freeze (one process: 9.2-9.5 s)."""
        assert self.task_function is not None and self.config is not None
        preload = getattr(sys.modules.get(self.task_function.__module__), "preload", None)
        if callable(preload):
            preload(self.config)
        gc.collect()
        gc.freeze()

    def _job_returned(self, ret: JobReturn) -> None:
        """Tell the launcher's callbacks that a job ended (each job's `on_job_end` ran in its own process, on a
        copy of them): those with an `on_forked_job_end` (the sweep's progress bar, src/lab/sweep.py)."""
        assert self.hydra_context is not None
        for callback in getattr(self.hydra_context.callbacks, "callbacks", []):
            hook = getattr(callback, "on_forked_job_end", None)
            if hook is not None:
                hook(ret)

    def _run(self, job_overrides: Sequence[Sequence[str]], first: int, n_jobs: int) -> list[JobReturn]:
        ctx = multiprocessing.get_context("fork")
        todo = collections.deque(enumerate(job_overrides))
        running: dict[Any, tuple[Any, int]] = {}
        results: list[JobReturn | None] = [None] * len(job_overrides)
        dead: list[int | None] = []  # exit codes of job processes that died without a result
        state = Singleton.get_state()
        self._prepare_to_fork()
        try:
            while todo or running:
                while todo and len(running) < n_jobs and not dead:  # after a death: no new job
                    i, overrides = todo.popleft()
                    receive, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_child, args=(send, self, first + i, list(overrides), state),
                                       name=f"nnlab-job-{first + i}")
                    proc.start()
                    send.close()  # the child's end: EOF on `receive` once the child is gone
                    running[receive] = (proc, i)
                if not running:
                    break
                for receive in multiprocessing.connection.wait(list(running)):
                    proc, i = running.pop(receive)
                    with contextlib.suppress(EOFError):  # EOF: the child died before sending its result
                        results[i] = pickle.loads(receive.recv_bytes())
                        self._job_returned(results[i])
                    receive.close()
                    proc.join()
                    if results[i] is None:
                        dead.append(proc.exitcode)
                        if running and not signals.stopping():
                            print(f"nnlab: a worker process died; waiting for the {len(running)} running job(s) "
                                  "to finish before stopping the sweep", file=sys.stderr, flush=True)
        finally:
            for proc, _ in running.values():  # interrupted: records are written (the signal handler waited)
                proc.kill()
                proc.join()
        if dead:
            raise signals.worker_died(_exit_code(dead[0]))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
