"""One Hydra job: load data, build the net, train R replicas, record everything. Knows no maths.

Failure policy (why each branch exists):
- a bad config or a missing/corrupt dataset: one-line error; in a sweep the job is recorded as failed and the
  sweep carries on, in a single run the process exits non-zero;
- all replicas diverged: that is a result, not a crash -- a FINISHED run tagged `nnlab.status=diverged`;
- Ctrl-C / SIGTERM: the MLflow run ends KILLED with the history so far, the record says `killed`, and the
  interrupt propagates so the sweep stops (re-run with `resume=true` to finish it);
- `resume=true`: a job whose identical config (same hash) already finished in this experiment is skipped.

A packed job (`hydra/sweeper=vectorized`) is trained by `src.lab.packing`, which then records each of its
configs through :func:`run_job` with the config's own :class:`JobContext` and its trained slice.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src import data
from src.files import atomic_write_json, atomic_write_text
from src.lab import memory, records, signals
from src.lab.artifacts import write_artifacts, write_tuning_artifacts
from src.lab.build import Built, build, layer_sizes, load_dataset
from src.lab.config import ConfigError, to_container, validate
from src.lab.loop import FitResult, fit
from src.lab.tracking import (
    PARENT_FILE,
    PARENT_RUN_ENV,
    ROOT,
    SWEEP_DIR_ENV,
    Tracker,
    TrackingError,
    dataset_input,
    description_for,
    flatten,
    resolve_uri,
)
from src.lab.tuning import Outcome, fit_tuned, replica_rows

DONE_STATUSES = ("finished", "diverged")


@dataclass(frozen=True)
class JobContext:
    """Where a job runs and how it was asked for: its output folder, its sweep (if any) and its overrides."""

    out_dir: Path
    multirun: bool = False
    overrides: list[str] = field(default_factory=list)
    num: int = 0
    sweep_dir: Path | None = None


def context() -> JobContext:
    """This job's context from Hydra (outside Hydra, e.g. tests and benchmarks: the working folder, no sweep)."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return JobContext(out_dir=Path.cwd())
    multirun = hc.mode == RunMode.MULTIRUN
    return JobContext(out_dir=Path(hc.runtime.output_dir), multirun=multirun, overrides=list(hc.overrides.task),
                      num=int(hc.job.num) if multirun else 0, sweep_dir=Path(hc.sweep.dir) if multirun else None)


def _run_name(overrides: list[str], num: int) -> str:
    """`init=normal,init.std=0.5412`: the overrides that change the computation, numbers to 4 significant digits
    (not where a run is logged, shown or resumed; the run's params keep every digit)."""
    hidden = ("hydra.", "hydra/", "tracking.", "experiment=", "+experiment=", "train.progress=", "results_dir=",
              "+resume=", "resume=", "data.dir=")
    shown = [_short(o) for o in overrides if not o.lstrip("+~").startswith(hidden)]
    return ",".join(shown) if shown else f"job{num}"


def _short(override: str) -> str:
    """`key=<float>` with the float to 4 significant digits (`0.5411695265464637` -> `0.5412`); anything else as is."""
    key, sep, value = override.partition("=")
    if not sep or not _FLOAT.fullmatch(value.strip()):
        return override
    return f"{key}={float(value):.4g}"


_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")  # a float literal, not an integer


def _summary_line(rec: dict[str, Any]) -> str:
    m = rec.get("metrics", {})
    total = rec.get("sweep_total")
    pos = f"[{rec['num'] + 1}/{total}] " if total else ""
    if rec["status"] == "failed":
        run = f"  run {rec['run_id']}" if rec.get("run_id") else ""
        return f"{pos}{rec['name']}: FAILED: {rec.get('error', '')}{run}"
    acc = m.get("test_acc", float("nan"))
    ci = m.get("test_acc_ci95", 0.0)
    div = m.get("diverged_fraction", 0.0) * m.get("replicas", 0)
    run = f"  run {rec['run_id']}" if rec.get("run_id") else ""
    return (f"{pos}{rec['name']}: {rec['status']}  test_acc {acc:.3f} ± {ci:.3f}  "
            f"epochs {m.get('epochs_used', 0):.0f}  diverged {div:.0f}/{m.get('replicas', 0):.0f}  "
            f"{m.get('wall_time_s', 0):.1f}s{run}")


def find_done(tracker: Tracker, key: str) -> Any | None:
    """The finished (or diverged) run with this resume key (:func:`src.lab.records.resume_key`) in the tracker's
    experiment, if any (`resume=true`)."""
    runs = tracker.search_runs(f"tags.`nnlab.resume_key` = '{key}' and attributes.status = 'FINISHED'")
    for run in runs:
        if run.data.tags.get("nnlab.status") in DONE_STATUSES:
            return run
    return None


def run_job(cfg: DictConfig, ctx: JobContext | None = None, trained: Any = None) -> float:
    """Run one configured job; return the mean final validation loss (what a Hydra sweeper minimises).

    `trained`: the (result, net) of this config already trained by a packed job (src/lab/packing.py), or the
    exception that packed fit raised; None trains here.
    """
    ctx = ctx or context()
    cfg_dict = to_container(cfg)
    chash = records.config_hash(cfg_dict)
    name = _run_name(ctx.overrides, ctx.num)
    total = os.environ.get("NNLAB_SWEEP_TOTAL")
    rec: dict[str, Any] = {"name": name, "num": ctx.num, "overrides": ctx.overrides, "config_hash": chash,
                           "status": "failed", "run_id": None, "parent_run_id": None, "metrics": {},
                           "study": cfg.study, "sweep_total": int(total) if total else None}
    rec["parent_run_id"] = parent_run_id(ctx.sweep_dir)
    with signals.interrupts():
        return _run(cfg, ctx, cfg_dict, chash, rec, trained)


def parent_run_id(sweep_dir: Path | None) -> str | None:
    """The sweep's parent run: from the environment its launcher set (local launchers: each concurrent sweep's
    workers inherit their own), else from the file in the sweep folder (remote launchers)."""
    if sweep_dir is None:
        return None
    if os.environ.get(SWEEP_DIR_ENV) == str(sweep_dir) and os.environ.get(PARENT_RUN_ENV):
        return os.environ[PARENT_RUN_ENV]
    parent_file = sweep_dir / PARENT_FILE
    return (parent_file.read_text().strip() or None) if parent_file.exists() else None


def _run(cfg: DictConfig, ctx: JobContext, cfg_dict: dict[str, Any], chash: str, rec: dict[str, Any],
         trained: Any) -> float:
    tracker: Tracker | None = None
    run_id: str | None = None
    try:
        validate(cfg)
        ds = load_dataset(cfg)
        memory.check(cfg, layer_sizes(cfg, ds), {s: len(getattr(ds, f"y_{s}")) for s in ("train", "val", "test")})
        rec["resume_key"] = records.resume_key(chash, ds.digest())
        if cfg.tracking.enabled:
            tracker = Tracker(resolve_uri(cfg.tracking.uri), cfg.tracking.experiment or cfg.study,
                              description=None if ctx.multirun else description_for(cfg.study))
            if not ctx.multirun:
                tracker.end_orphaned_runs()  # runs of processes that died (SIGKILL) without ending them
            if cfg.get("resume", False) and _already_done(tracker, rec, ctx):
                return float(rec["metrics"].get("val_loss", float("nan")))
        if tracker is not None:
            with tracker.held():  # an interrupt now is acted on once the record knows the run (see Tracker.held)
                run_id = rec["run_id"] = _start_run(tracker, cfg, chash, ds, rec, ctx)
            tracker.log_params(run_id, flatten(cfg_dict))
        rec["metrics"], rec["status"] = _train_and_log(cfg, cfg_dict, ds, tracker, run_id, ctx.out_dir, trained)
        if tracker is not None and run_id is not None:
            tracker.end_run(run_id, "KILLED" if rec["status"] == "killed" else "FINISHED")
        if rec["status"] == "killed":
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        rec["status"] = "killed"
        # The record first: a launcher waiting for this run to end may stop the sweep (and this process) as soon
        # as the run is ended (it was the flaky "one record missing" of the SIGTERM-to-one-worker test).
        atomic_write_json(ctx.out_dir / records.RESULT_FILE, rec)
        _close(tracker, run_id, "KILLED", rec)
        raise
    except (ConfigError, data.DatasetError, TrackingError, ValueError, FloatingPointError, MemoryError) as exc:
        rec["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _record_failure(tracker, run_id, rec, ctx)
        print(_summary_line(rec), file=sys.stderr, flush=True)
        if not ctx.multirun:
            exc.nnlab_reported = True  # type: ignore[attr-defined] # said in one line: src.train exits 1, no traceback
            raise
        return float("nan")
    except Exception as exc:  # an unexpected bug: record it, keep the sweep going, show the traceback
        rec["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _record_failure(tracker, run_id, rec, ctx)
        if not ctx.multirun:
            raise
        traceback.print_exc()
        print(_summary_line(rec), file=sys.stderr, flush=True)
        return float("nan")
    atomic_write_json(ctx.out_dir / records.RESULT_FILE, rec)
    print(_summary_line(rec), flush=True)
    return float(rec["metrics"].get("val_loss", float("nan")))


def _already_done(tracker: Tracker, rec: dict[str, Any], ctx: JobContext) -> bool:
    """`resume=true`: if this config already finished in the experiment on the same data with the same code,
    record that run instead; True if so."""
    done = find_done(tracker, rec["resume_key"])
    if done is None:
        return False
    rec.update(status=done.data.tags.get("nnlab.status", "finished"), run_id=done.info.run_id,
               metrics=dict(done.data.metrics), resumed=True)
    atomic_write_json(ctx.out_dir / records.RESULT_FILE, rec)
    print(_summary_line(rec) + "  (resumed: already done)", flush=True)
    return True


def _start_run(tracker: Tracker, cfg: DictConfig, chash: str, ds: data.Dataset, rec: dict[str, Any],
               ctx: JobContext) -> str:
    """The job's MLflow child run (under the sweep's parent run, if any), tagged with what identifies it."""
    tags = {"nnlab.study": rec["study"], "nnlab.config_hash": chash, "nnlab.status": "running",
            "nnlab.dataset_hash": ds.digest(), "nnlab.git_commit": records.git_commit(ROOT),
            "nnlab.overrides": " ".join(ctx.overrides)[:5000], "nnlab.sweep_id": rec["parent_run_id"] or "none",
            "nnlab.resume_key": rec["resume_key"], "nnlab.code_digest": records.code_digest()}
    if os.environ.get("DVC_EXP_NAME"):  # run by `dvc exp run`: which DVC experiment this run belongs to
        tags["nnlab.dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    run_id = tracker.start_run(rec["name"], tags, parent_id=rec["parent_run_id"])
    tracker.log_dataset(run_id, dataset_input(ds, Path(cfg.data.dir) / f"{cfg.data.name}.npz"))
    return run_id


def _record_failure(tracker: Tracker | None, run_id: str | None, rec: dict[str, Any], ctx: JobContext) -> None:
    """A failed job: its record written, then its run ended FAILED (with the error as a tag)."""
    atomic_write_json(ctx.out_dir / records.RESULT_FILE, rec)
    _close(tracker, run_id, "FAILED", rec)


def _close(tracker: Tracker | None, run_id: str | None, status: str, rec: dict[str, Any]) -> None:
    """End the run with `status`; never let a tracking failure hide the original error."""
    if tracker is None or run_id is None:
        return
    try:
        tags = {"nnlab.status": rec["status"]}
        if rec.get("error"):
            tags["nnlab.error"] = rec["error"][:5000]
        tracker.set_tags(run_id, tags)
        tracker.end_run(run_id, status)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: could not end MLflow run {run_id} as {status}: {exc}", file=sys.stderr)


def train(built: Built) -> FitResult:
    """Fit what :func:`src.lab.build.build` built, with BLAS on one thread (tiny matrices: BLAS threads only add
    synchronisation; parallelism comes from jobs and replicas). Jobs, packed jobs and tests train through here."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return fit(built.net, built.optimizer, built.schedule, built.dataset, built.loop, activation=built.activation)


def _train_and_log(cfg: DictConfig, cfg_dict: dict[str, Any], ds: data.Dataset, tracker: Tracker | None,
                   run_id: str | None, out_dir: Path, trained: Any = None) -> tuple[dict[str, float], str]:
    outcome = None
    if trained is not None:  # a packed job's slice (src/lab/packing.py), or the exception its shared fit raised
        if isinstance(trained, BaseException):
            raise trained
        result, net, *rest = trained
        outcome = rest[0] if rest else None
    elif cfg.tune.enabled:  # one config tuned on its own: a pack of one arm (src/lab/tuning.py)
        result, net, outcome = fit_tuned([cfg], ds, train)[0]
    else:
        built = build(cfg, ds)
        result, net = train(built), built.net
    try:
        return _log_result(cfg, cfg_dict, ds, result, net, tracker, run_id, out_dir, outcome)
    except Exception:
        if not getattr(result, "interrupted", False):
            raise
        # The interrupt comes first: a failure while recording an interrupted fit must not turn it into a failed
        # job that the sweep carries on from (it trained the next config after a SIGTERM); say what failed.
        traceback.print_exc()
        raise KeyboardInterrupt from None


def _log_result(cfg: DictConfig, cfg_dict: dict[str, Any], ds: data.Dataset, result: Any, net: Any,
                tracker: Tracker | None, run_id: str | None, out_dir: Path,
                outcome: Outcome | None = None) -> tuple[dict[str, float], str]:
    metrics = records.final_metrics(result)
    status = records.status_of(result)
    atomic_write_text(out_dir / "curve.csv", records.mean_curve_csv(result))
    if outcome is None:
        rows = replica_rows(result, None, 1.0 / ds.n_classes, seeds=list(net.seeds), lr=float(cfg.train.lr))
    else:
        rows = outcome.replicas
        metrics.update(outcome.metrics())
        atomic_write_text(out_dir / records.TUNING_FILE, records.rows_csv(outcome.table_rows()))
    atomic_write_text(out_dir / records.REPLICAS_FILE, records.rows_csv(rows))
    if tracker is not None and run_id is not None:
        start = time.perf_counter()
        step = int(result.epochs_used.max()) if result.replicas else 0
        series = records.curve_series(result, int(cfg.tracking.max_curve_points))
        if outcome is not None:  # the sensitivity curve on the arm's own run, in the same batch as its curves
            series.update(outcome.series())
        tracker.log_series(run_id, series)
        model_id = None
        if cfg.tracking.model and status == "finished":  # a fully diverged or interrupted net predicts nothing
            model_id = tracker.log_model(run_id, net, ~np.asarray(result.diverged, dtype=bool), ds.X_val[:5],
                                         params=flatten(cfg_dict), step=step)
        tracker.log_metrics(run_id, metrics, step=step, model_id=model_id)
        tracker.set_tags(run_id, {"nnlab.status": status})
        if cfg.tracking.artifacts:
            art = out_dir / "artifacts"
            write_artifacts(art, cfg_dict, result, net, ds, cfg.model.activation)
            if outcome is not None:
                write_tuning_artifacts(art, outcome)
            tracker.log_artifacts(run_id, art)
        metrics["tracking_time_s"] = time.perf_counter() - start
    return metrics, status
