"""One Hydra job: load data, build the net, train R replicas, record everything. Knows no maths.

Failure policy (why each branch exists):
- a bad config or a missing/corrupt dataset: one-line error; in a sweep the job is recorded as failed and the
  sweep carries on, in a single run the process exits non-zero;
- all replicas diverged: that is a result, not a crash -- a FINISHED run tagged `nnlab.status=diverged`;
- Ctrl-C / SIGTERM: the MLflow run ends KILLED with the history so far, the record says `killed`, and the
  interrupt propagates so the sweep stops (re-run with `+resume=true` to finish it);
- `resume=true`: a job whose identical config (same hash) already finished in this experiment is skipped.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src import data, records
from src.config import ConfigError, to_container, validate
from src.tracking import PARENT_FILE, ROOT, Tracker, TrackingError, flatten, resolve_uri

DONE_STATUSES = ("finished", "diverged")


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    # One-shot: the first Ctrl-C/SIGTERM stops training; repeats (a terminal's Ctrl-C reaches every process of
    # the group, and a launcher forwards SIGTERM to its workers) must not cut short the KILLED run's record.
    for sig in _SIGNALS:
        signal.signal(sig, _ignore)
    raise KeyboardInterrupt(f"signal {signum}")


def _ignore(signum: int, frame: Any) -> None:
    """A Python no-op rather than SIG_IGN (a signal pending while SIG_IGN is set prints an OSError)."""


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LAUNCHER_PID_ENV = "NNLAB_LAUNCHER_PID"  # set by src.callbacks in the process that launches a sweep


def _hand_over_to_launcher() -> None:
    """In a worker process of a sweep (joblib), stop the whole sweep through its launcher, then wait.

    Why: if this worker merely re-raised, joblib would abort at once and SIGKILL the other workers before they
    record their own runs. The launcher's handler instead forwards SIGTERM to every worker, waits until their
    runs are ended KILLED (with their history), and only then stops joblib (which kills this waiting worker).
    """
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or int(launcher) == os.getpid():
        return
    try:
        os.kill(int(launcher), signal.SIGTERM)
    except OSError:  # the launcher is gone: nothing to wait for
        return
    time.sleep(45.0)


def _install_handlers() -> dict[int, Any]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _sigterm_as_interrupt) for sig in _SIGNALS}


def _job_context() -> dict[str, Any]:
    try:
        hc = HydraConfig.get()
    except ValueError:  # called outside Hydra (tests, benchmarks)
        return {"out_dir": Path.cwd(), "multirun": False, "overrides": [], "num": 0, "sweep_dir": None}
    multirun = hc.mode == RunMode.MULTIRUN
    return {
        "out_dir": Path(hc.runtime.output_dir),
        "multirun": multirun,
        "overrides": list(hc.overrides.task),
        "num": int(hc.job.num) if multirun else 0,
        "sweep_dir": Path(hc.sweep.dir) if multirun else None,
    }


def _run_name(overrides: list[str], num: int) -> str:
    # Only what changes the computation names a run: not where it is logged, shown or resumed.
    hidden = ("hydra.", "hydra/", "tracking.", "experiment=", "+experiment=", "train.progress=", "results_dir=",
              "+resume=", "resume=", "data.dir=")
    shown = [o for o in overrides if not o.lstrip("+~").startswith(hidden)]
    return ",".join(shown) if shown else f"job{num}"


def _summary_line(rec: dict[str, Any]) -> str:
    m = rec.get("metrics", {})
    total = rec.get("sweep_total")
    pos = f"[{rec['num'] + 1}/{total}] " if total else ""
    if rec["status"] == "failed":
        return f"{pos}{rec['name']}: FAILED: {rec.get('error', '')}"
    acc = m.get("test_acc", float("nan"))
    ci = m.get("test_acc_ci95", 0.0)
    div = m.get("diverged_fraction", 0.0) * m.get("replicas", 0)
    return (f"{pos}{rec['name']}: {rec['status']}  test_acc {acc:.3f} ± {ci:.3f}  "
            f"epochs {m.get('epochs_used', 0):.0f}  diverged {div:.0f}/{m.get('replicas', 0):.0f}  "
            f"{m.get('wall_time_s', 0):.1f}s")


def _find_done(tracker: Tracker, chash: str) -> Any | None:
    runs = tracker.search_runs(f"tags.`nnlab.config_hash` = '{chash}' and attributes.status = 'FINISHED'")
    for run in runs:
        if run.data.tags.get("nnlab.status") in DONE_STATUSES:
            return run
    return None


def run_job(cfg: DictConfig, ctx: dict[str, Any] | None = None, trained: Any = None) -> float:
    """Run one configured job; return the mean final validation loss (what a Hydra sweeper minimises).

    A job with `+pack=...` (from `hydra/sweeper=vectorized`) trains several configs at once: see src/vectorize.py,
    which then calls this function once per config with its own `ctx` and its already `trained` (result, net).
    """
    if trained is None and cfg.get("pack"):
        from src.vectorize import run_packed

        return run_packed(cfg)
    ctx = ctx or _job_context()
    cfg_dict = to_container(cfg)
    chash = records.config_hash(cfg_dict)
    name = _run_name(ctx["overrides"], ctx["num"])
    total = os.environ.get("NNLAB_SWEEP_TOTAL")
    rec: dict[str, Any] = {"name": name, "num": ctx["num"], "overrides": ctx["overrides"], "config_hash": chash,
                           "status": "failed", "run_id": None, "parent_run_id": None, "metrics": {},
                           "study": cfg.study, "sweep_total": int(total) if total else None}
    parent_file = ctx["sweep_dir"] / PARENT_FILE if ctx["sweep_dir"] else None
    if parent_file is not None and parent_file.exists():
        rec["parent_run_id"] = parent_file.read_text().strip() or None
    tracker: Tracker | None = None
    run_id: str | None = None
    old_handlers = _install_handlers()
    try:
        validate(cfg)
        if cfg.tracking.enabled:
            tracker = Tracker(resolve_uri(cfg.tracking.uri), cfg.tracking.experiment or cfg.study)
            if cfg.get("resume", False):
                done = _find_done(tracker, chash)
                if done is not None:
                    rec.update(status=done.data.tags.get("nnlab.status", "finished"), run_id=done.info.run_id,
                               metrics=dict(done.data.metrics), resumed=True)
                    records.atomic_write_json(ctx["out_dir"] / records.RESULT_FILE, rec)
                    print(_summary_line(rec) + "  (resumed: already done)", flush=True)
                    return float(rec["metrics"].get("val_loss", float("nan")))
        ds = data.transform(data.load(cfg.data.name, cfg.data.dir), shift=float(cfg.data.shift),
                            scale=float(cfg.data.scale), standardize=cfg.data.standardize)
        if tracker is not None:
            tags = {"nnlab.study": cfg.study, "nnlab.config_hash": chash, "nnlab.status": "running",
                    "nnlab.dataset_hash": ds.digest(), "nnlab.git_commit": records.git_commit(ROOT),
                    "nnlab.overrides": " ".join(ctx["overrides"])[:5000],
                    "nnlab.sweep_id": rec["parent_run_id"] or "none"}
            run_id = tracker.start_run(name, tags, parent_id=rec["parent_run_id"])
            rec["run_id"] = run_id
            tracker.log_params(run_id, flatten(cfg_dict))
        rec["metrics"], rec["status"] = _train_and_log(cfg, cfg_dict, ds, tracker, run_id, ctx["out_dir"], trained)
        if tracker is not None and run_id is not None:
            tracker.end_run(run_id, "KILLED" if rec["status"] == "killed" else "FINISHED")
        if rec["status"] == "killed":
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        rec["status"] = "killed"
        _close(tracker, run_id, "KILLED", rec)
        records.atomic_write_json(ctx["out_dir"] / records.RESULT_FILE, rec)
        if ctx["multirun"]:
            _hand_over_to_launcher()
        raise
    except (ConfigError, data.DatasetError, TrackingError, ValueError, FloatingPointError, MemoryError) as exc:
        rec["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _close(tracker, run_id, "FAILED", rec)
        records.atomic_write_json(ctx["out_dir"] / records.RESULT_FILE, rec)
        print(_summary_line(rec), file=sys.stderr, flush=True)
        if not ctx["multirun"]:
            raise
        return float("nan")
    except Exception as exc:  # an unexpected bug: record it, keep the sweep going, show the traceback
        import traceback

        rec["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _close(tracker, run_id, "FAILED", rec)
        records.atomic_write_json(ctx["out_dir"] / records.RESULT_FILE, rec)
        if not ctx["multirun"]:
            raise
        traceback.print_exc()
        print(_summary_line(rec), file=sys.stderr, flush=True)
        return float("nan")
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    records.atomic_write_json(ctx["out_dir"] / records.RESULT_FILE, rec)
    print(_summary_line(rec), flush=True)
    return float(rec["metrics"].get("val_loss", float("nan")))


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


def _train_and_log(cfg: DictConfig, cfg_dict: dict[str, Any], ds: data.Dataset, tracker: Tracker | None,
                   run_id: str | None, out_dir: Path, trained: Any = None) -> tuple[dict[str, float], str]:
    if trained is not None:  # a packed job's slice (src/vectorize.py), or the exception its shared fit raised
        if isinstance(trained, BaseException):
            raise trained
        result, net = trained
    else:
        result, net = _train(cfg, ds)
    return _log_result(cfg, cfg_dict, ds, result, net, tracker, run_id, out_dir)


def _train(cfg: DictConfig, ds: data.Dataset) -> tuple[Any, Any]:
    from src import factory
    from src.loop import LoopConfig, fit

    t = cfg.train
    net = factory.build_net(cfg, ds)
    opt = factory.build_optimizer(cfg)
    schedule = factory.build_schedule(cfg)
    loop_cfg = LoopConfig(epochs=int(t.epochs), batch_size=t.batch_size, clip_value=t.clip_value,
                          clip_norm=t.clip_norm, patience=t.patience, min_delta=float(t.min_delta),
                          log_every=int(t.log_every), shuffle=t.shuffle, progress=bool(t.progress))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    # Tiny matrices: BLAS threads only add synchronisation; parallelism comes from jobs and replicas.
    limiter = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else None
    try:
        result = fit(net, opt, schedule, ds, loop_cfg, activation=cfg.model.activation)
    finally:
        if limiter is not None:
            limiter.unregister()
    return result, net


def _log_result(cfg: DictConfig, cfg_dict: dict[str, Any], ds: data.Dataset, result: Any, net: Any,
                tracker: Tracker | None, run_id: str | None, out_dir: Path) -> tuple[dict[str, float], str]:
    metrics = records.final_metrics(result)
    status = records.status_of(result)
    records.atomic_write_text(out_dir / "curve.csv", records.mean_curve_csv(result))
    if tracker is not None and run_id is not None:
        start = time.perf_counter()
        tracker.log_series(run_id, records.curve_series(result, int(cfg.tracking.max_curve_points)))
        tracker.log_metrics(run_id, metrics, step=int(result.epochs_used.max()) if result.replicas else 0)
        tracker.set_tags(run_id, {"nnlab.status": status})
        if cfg.tracking.artifacts:
            art = out_dir / "artifacts"
            write_artifacts(art, cfg_dict, result, net, ds, cfg.model.activation)
            tracker.log_artifacts(run_id, art)
        metrics["tracking_time_s"] = time.perf_counter() - start
    return metrics, status


def write_artifacts(art: Path, cfg_dict: dict[str, Any], result: Any, net: Any, ds: data.Dataset,
                    activation: str) -> None:
    """The run's files: resolved config, history, diagnostics, final weights and the figures."""
    from src import plots

    art.mkdir(parents=True, exist_ok=True)
    records.atomic_write_text(art / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg_dict)))
    records.atomic_write_text(art / "history.csv", records.history_csv(result))
    records.atomic_write_text(art / "diagnostics.csv", records.diagnostics_csv(result))
    arrays = {**{k: np.asarray(v) for k, v in net.params.items()}, **{k: np.asarray(v) for k, v in net.state.items()}}
    np.savez_compressed(art / "weights.npz", **arrays)
    plots.training_curves(result, art / "curves.png")
    if ds.n_features == 2:
        plots.decision_boundary(net, ds, art / "decision_boundary.png")
    if result.histograms:
        plots.activation_histograms(result.histograms, art / "activation_histograms.png")
    if result.diagnostics:
        plots.layer_diagnostics(result, art / "layer_diagnostics.png")
