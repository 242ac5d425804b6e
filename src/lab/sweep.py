"""Hydra callback for sweeps: a parent MLflow run, a leaderboard, and the files DVC tracks.

Why a callback: `on_multirun_start` / `on_multirun_end` run once, in the launching process, whatever the
launcher (basic, joblib, submitit, ray). That is where the SQLite store must be created (parallel first-time
creation races in MLflow's migrations) and where a sweep's results are gathered.

Robustness notes (see FACTS): an exception in a callback becomes a mere warning in Hydra, so failures here
are printed loudly; `on_multirun_end` is skipped if a job raises, so jobs record failures instead of
raising; an interrupted sweep would leave the parent RUNNING, so an `atexit` hook ends it as KILLED.
SIGTERM/Ctrl-C reach the launching process, not necessarily its workers, and joblib kills its workers with
SIGKILL when the launcher is interrupted (their runs would stay RUNNING without their history): so the
launcher first forwards SIGTERM to its worker processes, waits until their runs are ended (KILLED, with the
history so far, by `src.lab.job`), then interrupts itself; at exit any child run still RUNNING is ended KILLED.
The signal mechanics are in `src/lab/signals.py`; the files written at the end in `src/lab/results.py`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.files import atomic_write_text, side_file, try_lock
from src.lab import records, signals
from src.lab.config import progress_on
from src.lab.results import console_leaderboard, leaderboard_rows, write_result_files, write_results
from src.lab.tracking import (
    PARENT_FILE,
    PARENT_RUN_ENV,
    ROOT,
    SWEEP_DIR_ENV,
    Tracker,
    description_for,
    flatten,
    resolve_uri,
    ui_hint,
)

WORKER_GRACE_S = 30.0  # how long an interrupted launcher waits for its workers to record their runs KILLED
_END_LOCK = threading.Lock()  # module-level: joblib pickles the callback to its workers; a lock cannot be pickled
OUTCOME: dict[str, int] = {}  # the last sweep of this process: {"jobs": n, "failed": k} (src.train's exit code)


class SweepAborted(BaseException):
    """The sweep cannot go on; one line. A BaseException so that Hydra (which turns an Exception raised by a
    callback into a warning, and one raised by a launcher into a traceback) lets it reach src.train's CLI."""


class SweepCallback(Callback):
    """Creates the sweep's parent run; at the end logs the leaderboard and writes `results_dir` files."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_id: str | None = None
        self.sweep_dir: Path | None = None
        self._ended = False
        self._bar: Any = None
        self._old_handlers: dict[int, Any] = {}
        self._dir_lock: Any = None
        self._launch = launch_id()
        self._pid = os.getpid()  # the launching process: Hydra makes its callbacks there

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        total = os.environ.get("NNLAB_SWEEP_TOTAL")  # counted by the pre-flight check
        if total and progress_on(config.train.progress):
            from tqdm.auto import tqdm

            # no monitor thread (tqdm's documented switch): a launcher that forks its jobs (hydra/launcher=cores)
            # must not have a thread that may hold tqdm's lock at the moment of a fork (the job's bars would wait)
            tqdm.monitor_interval = 0
            self._bar = tqdm(total=int(total), desc=f"sweep {config.study}", unit="job", position=0)
        sweep_dir = self.sweep_dir = Path(config.hydra.sweep.dir)
        self._dir_lock = try_lock(sweep_dir / SWEEP_LOCK)
        if self._dir_lock is None:
            raise SweepAborted(f"hydra.sweep.dir={sweep_dir} is in use by another running sweep; choose another "
                               "folder, or leave hydra.sweep.dir unset (each sweep then gets its own)")
        for stale in (PARENT_FILE, signals.STOP_FILE):
            (sweep_dir / stale).unlink(missing_ok=True)
        OUTCOME.clear()
        os.environ[SWEEP_DIR_ENV] = str(sweep_dir)
        signals.mark_launcher()  # an interrupted worker stops the sweep through us
        if any(name in str(config.hydra.launcher.get("_target_", "")) for name in ("joblib", "fork_launcher")):
            signals.protect_neighbours(sweep_dir, on_death=self.abort)
        self._old_handlers = signals.install(self._on_signal)
        if config.get("results_dir"):
            claim_results(Path(config.results_dir), self._launch)
        if not config.tracking.enabled:
            return
        try:
            self.tracker = Tracker(resolve_uri(config.tracking.uri), config.tracking.experiment or config.study,
                                   description=description_for(config.study))
            ended = self.tracker.end_orphaned_runs()
            if ended:
                print(f"nnlab: ended {ended} orphaned RUNNING run(s) of dead processes as KILLED", flush=True)
            with self.tracker.held():  # an interrupt now is acted on once the run is ours to end (Tracker.held)
                self.parent_id = self.tracker.start_run(
                    f"sweep {sweep_dir.name}",
                    {"nnlab.study": config.study, "nnlab.sweep_dir": str(sweep_dir),
                     "nnlab.git_commit": records.git_commit(ROOT), "nnlab.status": "running",
                     "nnlab.sweep_overrides": " ".join(config.hydra.overrides.task)[:5000],
                     **({"nnlab.dvc_experiment": os.environ["DVC_EXP_NAME"]} if os.environ.get("DVC_EXP_NAME")
                        else {})},
                )
                atexit.register(self._end_if_open, "KILLED")
            try:
                self.tracker.log_params(self.parent_id, sweep_params(config))
            except Exception as exc:  # noqa: BLE001 - the parent's params are not worth losing the sweep's runs
                print(f"nnlab: warning: could not log the sweep's params: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - no job runs without its parent run: stop before any work
            signals.restore(self._old_handlers)
            raise SweepAborted(f"could not create the sweep's parent run: {str(exc).strip().splitlines()[0]}"
                               ) from exc
        atomic_write_text(sweep_dir / PARENT_FILE, self.parent_id)
        os.environ[PARENT_RUN_ENV] = self.parent_id

    def _end_if_open(self, status: str, error: str | None = None) -> None:
        """End the parent run (and children left RUNNING, unless `status` is FINISHED) once: the first caller of
        the main thread's ending, its atexit hook and loky's thread (a dead worker) wins, the others return."""
        with _END_LOCK:
            if self._ended or self.tracker is None or self.parent_id is None:
                return
            self._ended = True
        try:
            if status != "FINISHED":  # children of workers that died without ending their runs (SIGKILL, OOM)
                for run in self._running_children():
                    self.tracker.set_tags(run.info.run_id, {"nnlab.status": "killed", "nnlab.error": (
                        error or "the sweep stopped before this job ended")[:5000]})
                    self.tracker.end_run(run.info.run_id, "KILLED")
            tags = {"nnlab.status": status.lower(), **({"nnlab.error": error[:5000]} if error else {})}
            self.tracker.set_tags(self.parent_id, tags)
            self.tracker.end_run(self.parent_id, status)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: could not end the sweep's parent run: {exc}", file=sys.stderr)

    def abort(self, error: str) -> None:
        """A worker died (called from loky's thread, see signals.protect_neighbours): end the runs still RUNNING
        (the dead worker's) KILLED and the parent FAILED, with `error`; KILLED if this launcher was interrupted and
        stopped its workers itself (a worker yet to run a job dies of the forwarded SIGTERM: that is the interrupt)."""
        self._end_if_open("KILLED" if signals.stopping() else "FAILED",
                          error.removeprefix("nnlab: error: ").removeprefix("nnlab: "))

    def _running_children(self) -> list[Any]:
        assert self.tracker is not None
        return self.tracker.search_runs(f"tags.`mlflow.parentRunId` = '{self.parent_id}' "
                                        "and attributes.status = 'RUNNING'")

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Stop the sweep in the launching process (in-process jobs install their own handler, see src.lab.job):
        forward SIGTERM to the workers and wait until each has written its record (and ended its run KILLED)."""
        signals.stop_listening()  # one-shot: a second Ctrl-C must not cut the wait for the workers short
        if not signals.stopping():
            signals.stop_sweep(self.sweep_dir, WORKER_GRACE_S)
        raise KeyboardInterrupt(f"signal {signum}")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Advance the sweep's bar (in-process launchers only: a joblib worker has its own callback object, and a
        forked job a copy of the launcher's, whose bar is not the one on the screen)."""
        if self._bar is not None and os.getpid() == self._pid:
            self._bar.update(1)

    def on_forked_job_end(self, job_return: Any) -> None:
        """Advance the sweep's bar in the launcher when a forked job's result arrives (src/lab/fork_launcher.py;
        the job's own `on_job_end` ran in its process)."""
        if self._bar is not None:
            self._bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        signals.restore(self._old_handlers)
        self._old_handlers = {}
        if self._bar is not None:
            self._bar.close()
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = records.read_results(sweep_dir, self.parent_id)
        n_failed = sum(r["status"] == "failed" for r in rows)
        OUTCOME.update(jobs=len(rows), failed=n_failed)
        table = leaderboard_rows(rows)
        print("\n" + console_leaderboard(table, sweep_dir), flush=True)
        write_result_files(sweep_dir, rows, sweep_dir)
        if config.get("results_dir"):
            _write_owned_results(Path(config.results_dir), rows, sweep_dir, self._launch)
        if self.tracker is not None and self.parent_id is not None:
            try:
                from src.plots.grids import leaderboard_plot

                fig = leaderboard_plot(table, sweep_dir / "leaderboard.png")
                self.tracker.log_artifact(self.parent_id, sweep_dir / "leaderboard.md")
                self.tracker.log_artifact(self.parent_id, fig)
                self.tracker.log_artifact(self.parent_id, sweep_dir / "runs.csv")
                if table:
                    self.tracker.log_table(self.parent_id, {k: [r[k] for r in table] for k in table[0]},
                                           "leaderboard.json")
                print(f"MLflow: {len(rows)} runs in experiment {self.tracker.experiment!r} (id "
                      f"{self.tracker.experiment_id}), parent run {self.parent_id}\n  to look: "
                      f"{ui_hint(self.tracker.uri, self.tracker.experiment_id)}", flush=True)
                self.tracker.log_metrics(self.parent_id, {"jobs": len(rows), "jobs_failed": n_failed})
                if table:
                    self.tracker.log_metrics(self.parent_id, {"best_test_acc": table[0].get("test_acc", float("nan"))})
            except Exception as exc:  # noqa: BLE001
                print(f"nnlab: error: could not log the leaderboard: {exc}", file=sys.stderr, flush=True)
            self._end_if_open("FAILED" if n_failed else "FINISHED",
                              f"{n_failed} of {len(rows)} jobs failed" if n_failed else None)


SWEEP_LOCK = ".nnlab_sweep.lock"  # held by the sweep's launcher for its lifetime: one sweep per folder
OWNER_KIND = "owner"  # src.files.side_file(results/<study>, "owner"): the launch that last claimed it


def launch_id() -> str:
    """This launch: `<pid>-<process start time>` (unique on a host even when two sweeps start in one second)."""
    import psutil

    return f"{os.getpid()}-{psutil.Process().create_time():.2f}"


def claim_results(out: Path, launch: str) -> None:
    """Claim `results/<study>/` for this sweep: the sweep started last owns it (an older overlapping sweep that
    ends later then leaves it alone instead of overwriting the newer one's results)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(side_file(out, OWNER_KIND), launch)


def _write_owned_results(out: Path, rows: list[dict[str, Any]], sweep_dir: Path, launch: str) -> None:
    owner_file = side_file(out, OWNER_KIND)
    owner = owner_file.read_text().strip() if owner_file.exists() else launch
    if owner != launch:
        print(f"nnlab: {out}/ is left to the sweep started after this one (launch {owner}); this sweep's results "
              f"are in {sweep_dir}/runs.csv", file=sys.stderr, flush=True)
        return
    write_results(out, rows, sweep_dir)


def sweep_params(config: DictConfig) -> dict[str, str]:
    """The parent run's params: what every job of the sweep shares, and the grid itself as `sweep.<key>`.

    A key the grid varies (`init=zeros,he` varies every `init.*`) is left out of the shared values: the parent
    would otherwise show the base config's value, which no job used.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    grid: dict[str, str] = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
    for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if o.is_sweep_override():
            grid[o.key_or_group] = o.input_line.split("=", 1)[1] if o.input_line else str(o.value())
    body = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    try:
        flat = flatten(OmegaConf.to_container(body, resolve=True))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - an interpolation only a job can resolve: log it unresolved
        flat = flatten(OmegaConf.to_container(body, resolve=False))  # type: ignore[arg-type]
    shared = {k: v for k, v in flat.items() if not any(k == g or k.startswith(g + ".") for g in grid)}
    return {**shared, **{f"sweep.{k}": v for k, v in grid.items()}}
