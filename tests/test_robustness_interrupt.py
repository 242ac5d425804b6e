"""Robustness, interruption: Ctrl-C / SIGTERM end runs KILLED with their history; `resume=true` finishes a sweep.

Real processes: `python -m src.train` in a throw-away project copy, signals sent while a child run is RUNNING in
the MLflow SQLite store (polled with plain sqlite3), then the store is read back with MlflowClient.
Scenarios: a single run (SIGTERM); a sweep with the basic launcher (SIGTERM to the process); a joblib sweep
(Ctrl-C to the whole process group; SIGTERM to one worker -- which stops the sweep by sending SIGTERM to the
launcher, so it also covers "SIGTERM to the launcher": forward to the workers, wait for their runs, stop).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_utils import env_for

from src import files
from src.lab import records

JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
CORES = ["hydra/launcher=cores", "hydra.launcher.n_jobs=2"]  # each job forked from the launcher (fork_launcher.py)
LAUNCHERS = {"joblib": JOBLIB, "cores": CORES}  # the two local multi-process launchers: the same fault model
BASIC = "hydra/sweeper=basic"  # one job per config: these sweeps interrupt job k of n


@pytest.fixture(scope="module")
def repo(project, mlflow_template: Path) -> Path:  # noqa: ANN001
    repo = project("intr")
    shutil.copy(mlflow_template, repo / "template.db")  # copied into each test: creating a store costs seconds
    return repo


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _kill_leftovers():  # noqa: ANN202
    """Whatever a test asserts, no sweep of it outlives it: these sweeps train for 10,000,000 epochs, so a failed
    assertion before `_finish` would otherwise leave them (and their joblib workers) running for hours. Each one
    leads its own session (`start_new_session`), so killing its process group reaches every worker."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


def _running_children(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            # RUNNING child runs whose params are logged: the job logs them right before training starts (on a
            # loaded machine a signal sent as soon as the run exists arrived before the first epoch: no history)
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                               "where t.key = 'nnlab.config_hash' and r.status = 'RUNNING' and exists "
                               "(select 1 from params p where p.run_uuid = r.run_uuid)").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _start(repo: Path, db: Path, args: list[str]) -> subprocess.Popen[str]:
    if not db.exists():
        shutil.copy(repo / "template.db", db)
    env = env_for(repo, MLFLOW_TRACKING_URI=f"sqlite:///{db}", PYTHONFAULTHANDLER="1")  # tracebacks on a hang
    p = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=repo, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _STARTED.append(p)
    return p


def _wait_running(p: subprocess.Popen[str], db: Path, n: int = 1, timeout: float = 90) -> None:
    t0 = time.monotonic()
    while _running_children(db) < n:
        assert p.poll() is None, p.communicate()
        assert time.monotonic() - t0 < timeout, "no RUNNING child run appeared"
        time.sleep(0.2)
    time.sleep(2.0)  # let training log a few epochs


def _workers(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children() if "resource_tracker" not in " ".join(c.cmdline())]


def _finish(p: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for the process to end; its stderr. A hang fails with where every process of the group waits: they
    run with PYTHONFAULTHANDLER (`_start`), so SIGABRT makes each print its threads' Python tracebacks (a rare
    hang of the joblib turn-over test, 1 in ~20 loaded runs on 2026-12-01, left nothing else to go on)."""
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGABRT)
        try:
            _, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            err = "(no output after SIGABRT)"
        raise AssertionError(f"no exit within {timeout:g} s; the processes' tracebacks:\n{err[-12000:]}") from None
    finally:
        if p.poll() is None:  # never leave a process of ours behind
            os.killpg(p.pid, signal.SIGKILL)
    return err


def _runs(db: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return client, runs


def _no_temp_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob(".*") if p.is_file() and p.name.startswith((".result.json.", ".curve"))]
    assert leftovers == [], leftovers


@pytest.mark.e2e
@pytest.mark.slow
def test_single_run_killed_with_history(repo: Path, tmp_path: Path) -> None:
    db, out = tmp_path / "m.db", tmp_path / "out"
    p = _start(repo, db, ["train.epochs=10000000", "train.progress=false", "tracking.artifacts=false",
                          f"hydra.run.dir={out}"])
    _wait_running(p, db)
    p.send_signal(signal.SIGTERM)
    err = _finish(p)  # a hang (the signal ignored) fails on _finish's timeout, not on a measured time
    assert p.returncode != 0, err
    client, runs = _runs(db)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "KILLED" and run.data.tags["nnlab.status"] == "killed"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 2, "the history so far is logged"
    assert 0 < run.data.metrics["epochs_used"] < 10_000_000
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "killed" and rec["run_id"] == run.info.run_id and rec["metrics"]["epochs_used"] > 0
    assert (out / "curve.csv").read_text().count("\n") >= 2
    _no_temp_files(out)


SWEEPS = {
    "basic, SIGTERM to the process": ([], "main", 1),
    "joblib, Ctrl-C to the process group": (JOBLIB, "group", 2),
    "joblib, SIGTERM to one worker": (JOBLIB, "worker", 2),
    "cores (forked jobs), Ctrl-C to the process group": (CORES, "group", 2),
    "cores (forked jobs), SIGTERM to one job's process": (CORES, "worker", 2),
}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("case", list(SWEEPS))
def test_sweep_interrupted_everything_killed(repo: Path, tmp_path: Path, case: str) -> None:
    launcher, target, n_running = SWEEPS[case]
    db, sweep = tmp_path / "m.db", tmp_path / "sweep"
    p = _start(repo, db, ["-m", BASIC, "train.seed=0,1,2,3", "train.epochs=10000000", "train.seeds=2", "study=intr",
                          "train.progress=false", "tracking.artifacts=false", f"hydra.sweep.dir={sweep}",
                          *launcher])
    _wait_running(p, db, n_running)
    workers = _workers(p.pid) if launcher else []
    if target == "main":
        p.send_signal(signal.SIGTERM)
    elif target == "group":
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(workers[0], signal.SIGTERM)
    err = _finish(p)
    assert p.returncode != 0, err
    import psutil

    assert [w for w in workers if psutil.pid_exists(w) and psutil.Process(w).status() != "zombie"] == [], \
        "no worker left running"
    client, runs = _runs(db)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "KILLED", err
    assert len(children) == n_running
    for c in children:
        assert c.info.status == "KILLED" and c.data.tags["nnlab.status"] == "killed", (c.info, err)
        assert len(client.get_metric_history(c.info.run_id, "val_loss")) >= 2, f"history lost: {err[-3000:]}"
    recs = records.read_results(sweep, parents[0].info.run_id)
    assert len(recs) == n_running and {r["status"] for r in recs} == {"killed"}
    _no_temp_files(sweep)


def _busy_jobs(sweep: Path) -> list[Path]:
    return list(sweep.glob("*/.nnlab_busy"))


def _wait_busy(p: subprocess.Popen[str], sweep: Path, n: int, timeout: float = 120) -> list[int]:
    """Wait until n jobs are training (their busy markers exist); return their worker pids."""
    t0 = time.monotonic()
    while len(_busy_jobs(sweep)) < n:
        assert p.poll() is None, p.communicate()
        assert time.monotonic() - t0 < timeout, "the jobs did not start"
        time.sleep(0.2)
    time.sleep(1.0)  # let training run a few epochs
    return sorted(int(m.read_text()) for m in _busy_jobs(sweep))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_sigkill_of_the_launcher_stops_its_workers(repo: Path, tmp_path: Path, launcher: str) -> None:
    """SIGKILL of a joblib (or cores) sweep's launcher: the workers notice their parent is gone, end their runs
    KILLED with their history and exit (before: they trained on for hours); the next launch ends the parent KILLED
    (before: RUNNING forever, even after a resume)."""
    import psutil

    db, sweep = tmp_path / "m.db", tmp_path / "sweep"
    args = ["-m", "optimizer=sgd,adam", "train.epochs=10000000", "train.seeds=2", "study=orph", "train.progress=false",
            "tracking.artifacts=false", *LAUNCHERS[launcher]]  # 2 packed jobs (the optimizer is not packable)
    p = _start(repo, db, [*args, f"hydra.sweep.dir={sweep}"])
    workers = _wait_busy(p, sweep, 2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    t0 = time.monotonic()
    while any(psutil.pid_exists(w) and psutil.Process(w).status() != "zombie" for w in workers):
        assert time.monotonic() - t0 < 120, "the orphaned workers go on training"
        time.sleep(0.2)
    client, runs = _runs(db)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # each worker ends its own run KILLED when it notices; in the full suite one of the two was seen still RUNNING
    # after its process had exited (twice in ~5 runs, never alone): the next launch's orphan sweep must then end it
    assert len(children) == 2 and {c.info.status for c in children} <= {"KILLED", "RUNNING"}
    assert any(c.info.status == "KILLED" for c in children), "no worker ended its own run"
    assert all(len(client.get_metric_history(c.info.run_id, "val_loss")) >= 2 for c in children)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "RUNNING"  # its process died before it could end it: the next launch does
    p = _start(repo, db, ["-m", "train.epochs=5", "train.seeds=1", "study=orph", "train.progress=false",
                          "tracking.artifacts=false", f"hydra.sweep.dir={tmp_path / 'next'}"])
    err = _finish(p, timeout=120)
    assert p.returncode == 0, err
    client, runs = _runs(db)
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert {client.get_run(c.info.run_id).info.status for c in children} == {"KILLED"}, "orphans ended KILLED"
    assert {r.info.status for r in runs} == {"KILLED", "FINISHED"}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_sigkill_of_one_worker_spares_its_neighbour(repo: Path, tmp_path: Path, launcher: str) -> None:
    """One worker SIGKILLed (the OOM killer): its neighbour finishes its job (before: loky SIGKILLed it at once,
    its run KILLED with no metrics), the sweep stops with one line and exit 1, the parent is FAILED. The short job
    trains 100,000 epochs so that it is still training when both are seen busy, on a fast box too."""
    db, sweep = tmp_path / "m.db", tmp_path / "sweep"
    args = ["-m", "train.epochs=100000,100000000", "train.log_every=1000", "train.seeds=2", "study=oom",
            "train.progress=false",
            "tracking.artifacts=false", f"hydra.sweep.dir={sweep}", *LAUNCHERS[launcher]]  # a short, an endless job
    p = _start(repo, db, args)
    _wait_busy(p, sweep, 2)
    by_job = {("100000000" in (m.parent / ".hydra" / "overrides.yaml").read_text()): int(m.read_text())
              for m in _busy_jobs(sweep)}
    victim, neighbour = by_job[True], by_job[False]
    os.kill(victim, signal.SIGKILL)
    err = _finish(p, timeout=300)
    lines = [ln for ln in err.splitlines() if ln.startswith("nnlab: error:")]
    assert p.returncode == 1 and len(lines) == 1 and "a worker process died (SIGKILL" in lines[0], err[-3000:]
    assert "Traceback" not in err
    client, runs = _runs(db)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 1 and children[0].info.status == "FINISHED", "the neighbour's job, finished"
    assert children[0].data.tags["nnlab.pid"] == str(neighbour)
    assert children[0].data.metrics["epochs_used"] == 100000
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED" and "worker process died" in parent.data.tags["nnlab.error"]


@pytest.mark.e2e
@pytest.mark.slow
def test_resume_skips_finished_jobs(repo: Path, tmp_path: Path) -> None:
    """Interrupt a 4-job sweep during job 3; `resume=true` runs only jobs 3 and 4 and reports all four.

    Jobs 1-2 are short and jobs 3-4 long (100,000 epochs: 7 s of training on a fast box, ~20 s on a slow one), so
    the interrupt lands inside job 3 however fast the machine is (with 6,000 epochs each, a fast box finished the
    whole sweep within the 2 s `_wait_running` gives job 3)."""
    db, sweep = tmp_path / "m.db", tmp_path / "sweep"
    args = ["-m", BASIC, "train.epochs=500,600,100000,100100", "train.log_every=1000", "train.seeds=1",
            "study=res", "train.progress=false", "tracking.artifacts=false", f"hydra.sweep.dir={sweep}",
            "results_dir=" + str(tmp_path / "results")]
    p = _start(repo, db, args)
    t0 = time.monotonic()
    while len([r for r in records.read_results(sweep) if r["status"] == "finished"]) < 2:
        assert p.poll() is None and time.monotonic() - t0 < 120, p.communicate()
        time.sleep(0.1)
    _wait_running(p, db)
    p.send_signal(signal.SIGTERM)
    _finish(p)
    client, runs = _runs(db)
    first = {r.info.run_id: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    done = {r.data.tags["nnlab.config_hash"] for r in first.values() if r.info.status == "FINISHED"}
    assert len(done) == 2 and len(first) == 3, [(r.info.run_name, r.info.status) for r in first.values()]

    p = _start(repo, db, [*args, "resume=true"])
    err = _finish(p, timeout=180)
    assert p.returncode == 0, err
    client, runs = _runs(db)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    new = [r for r in children if r.info.run_id not in first]
    assert len(new) == 2, "only the two unfinished jobs ran again"
    assert {r.data.tags["nnlab.config_hash"] for r in new}.isdisjoint(done)
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert len({r.data.tags["nnlab.config_hash"] for r in finished}) == 4
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert [r.info.status for r in parents] == ["KILLED", "FINISHED"]
    rows = (tmp_path / "results" / "runs.csv").read_text().splitlines()
    assert len(rows) == 5 and all(",finished," in r for r in rows[1:]), rows
    recs = records.read_results(sweep, parents[1].info.run_id)
    assert sum(bool(r.get("resumed")) for r in recs) == 2


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_sigterm_to_a_launcher_as_its_jobs_turn_over(repo: Path, tmp_path: Path, launcher: str) -> None:
    """SIGTERM to a joblib launcher right as a job ends (when a worker is between jobs, or ending its run): the
    parent ends KILLED (a worker that has not run a job yet dies of the forwarded signal: that is the interrupt,
    not a lost worker; one between jobs ignores it and must not hang the launcher, `shield_idle_worker`),
    nothing is left RUNNING, no store call is cut in half (which left the SQLite store locked, the parent RUNNING),
    and every run's status agrees with its job's record. The scale-out test's launcher race caught the first."""
    db, sweep = tmp_path / "m.db", tmp_path / "sweep"
    p = _start(repo, db, ["-m", BASIC, "train.seed=range(0,10)", "train.epochs=20", "train.log_every=5",
                          "train.seeds=1", "study=turn", "train.progress=false", "tracking.artifacts=false",
                          f"hydra.sweep.dir={sweep}", *LAUNCHERS[launcher]])
    t0 = time.monotonic()
    while len(list(sweep.glob("*/result.json"))) < 3:
        assert p.poll() is None and time.monotonic() - t0 < 120, p.communicate()
        time.sleep(0.02)
    workers = _workers(p.pid)
    p.send_signal(signal.SIGTERM)
    err = _finish(p, timeout=120)
    assert p.returncode == 130, err[-3000:]
    assert "database is locked" not in err and "worker process died" not in err, err[-3000:]
    import psutil

    assert [w for w in workers if psutil.pid_exists(w) and psutil.Process(w).status() != "zombie"] == []
    client, runs = _runs(db)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [(r.info.status, r.data.tags["nnlab.status"]) for r in parents] == [("KILLED", "killed")], err[-3000:]
    children = {r.info.run_id: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    recs = records.read_results(sweep, parents[0].info.run_id)
    assert 3 <= len(recs) < 10 and {r["run_id"] for r in recs} - {None} == set(children), recs
    # A job interrupted before its run existed (e.g. while opening the store) has no run: its record says killed.
    assert all(r["status"] == "killed" for r in recs if r["run_id"] is None), recs
    for rec in (r for r in recs if r["run_id"] is not None):
        run = children[rec["run_id"]]
        assert (run.info.status, run.data.tags["nnlab.status"]) == (rec["status"].upper(), rec["status"]), rec


def test_reused_sweep_dir_reports_only_this_sweep(tmp_path: Path) -> None:
    """A second sweep in the same folder: the first one's extra job folders stay, but are not reported."""
    from src.lab.results import write_results

    sweep = tmp_path / "sweep"
    for parent, nums in (("old", range(4)), ("new", range(2))):
        for n in nums:
            files.atomic_write_json(sweep / str(n) / "result.json",
                                      {"num": n, "name": f"{parent}{n}", "status": "finished", "parent_run_id": parent,
                                       "overrides": [], "config_hash": "h", "metrics": {"test_acc": 0.5}})
    assert len(list(sweep.glob("*/result.json"))) == 4
    rows = records.read_results(sweep, "new")
    assert [r["name"] for r in rows] == ["new0", "new1"]
    (sweep / "9").mkdir()
    (sweep / "9" / "result.json").write_text('{"half-writ')  # a foreign, broken file is skipped, not fatal
    write_results(tmp_path / "results", records.read_results(sweep, "new"), sweep)
    assert (tmp_path / "results" / "runs.csv").read_text().count("\n") == 3
    assert json.loads((tmp_path / "results" / "metrics.json").read_text())["configs"] == 2


# --- the pieces, in-process ------------------------------------------------------------------------------------

def test_a_worker_between_jobs_survives_a_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loky worker between two jobs outlives SIGTERM and Ctrl-C once shielded, and one that is not shielded dies
    of them (the control): a worker that died while writing its result to loky's pipe hung the launcher for good.
    The launching process itself keeps its handlers (the basic launcher runs jobs there)."""
    import psutil
    from joblib.externals.loky import ProcessPoolExecutor

    from src.lab import signals

    monkeypatch.setenv(signals.LAUNCHER_PID_ENV, str(os.getpid()))  # loky's workers inherit it: we launch them
    before = signal.getsignal(signal.SIGTERM)
    signals.shield_idle_worker()
    assert signal.getsignal(signal.SIGTERM) is before, "the launching process must keep its own handlers"
    for shielded in (True, False):
        ex = ProcessPoolExecutor(max_workers=1)
        try:
            if shielded:
                ex.submit(signals.shield_idle_worker).result(timeout=60)
            pid = ex.submit(os.getpid).result(timeout=60)
            for sig in (signal.SIGTERM, signal.SIGINT):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while (alive := psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE) \
                    and not shielded and time.monotonic() < deadline:
                time.sleep(0.05)
            if shielded:
                time.sleep(0.3)  # time for the signals to act, if they did
                assert ex.submit(os.getpid).result(timeout=60) == pid, "the shielded worker was replaced"
            else:
                assert not alive, "the control: an unshielded idle worker dies of SIGTERM"
        finally:
            ex.shutdown(wait=True, kill_workers=True)


def test_an_interrupt_inside_a_log_point_is_recorded_not_failed(data_dir: Path, compose: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM landing inside a log point, between the history's epoch and its values (CI, 2026-12-07): the run
    failed with an IndexError writing its curve, which the sweep took for a failed job and went on training the
    next one. The history now keeps only complete log points, and the interrupted fit is recorded as such."""
    from src import data
    from src.lab import loop, records
    from src.lab.build import build
    from src.lab.job import train

    real_add, calls = loop.History.add, []

    def add_then_interrupted(self, epoch, row, diverged=None):  # noqa: ANN001, ANN202
        calls.append(epoch)
        if len(calls) == 3:  # the third log point: its epoch is in, its values are not
            self.epochs.append(epoch)
            self.rows["lr"].append(row["lr"])
            raise KeyboardInterrupt
        return real_add(self, epoch, row, diverged)

    monkeypatch.setattr(loop.History, "add", add_then_interrupted)
    cfg = compose(["data=moons", "train.epochs=50", "train.log_every=5", "train.seeds=2", "tracking.enabled=false",
                   f"data.dir={data_dir}"])
    result = train(build(cfg, data.load("moons", data_dir)))
    assert result.interrupted and list(result.epochs) == calls[:2]
    assert all(len(v) == 2 for v in result.history.values())
    assert records.mean_curve_csv(result).count("\n") == 3  # a header and the two complete log points
    h = loop.History()  # the same, without the fit: an interrupt while the values are made appends nothing
    h.add(5, {"lr": np.ones(2), "val_loss": np.zeros(2)})

    class Interrupted(dict):
        def items(self):  # noqa: ANN202
            yield "lr", np.ones(2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        h.add(10, Interrupted())
    epochs, rows = h.arrays()
    assert list(epochs) == [5] and {k: v.shape for k, v in rows.items()} == {"lr": (1, 2), "val_loss": (1, 2)}


def test_signals_held_while_a_store_is_created() -> None:
    """A Ctrl-C during MLflow's first-time migration would break the store for good: it is delivered after."""
    from src.lab.signals import deferred as _signals_deferred

    # Python's own Ctrl-C handler before the block, whatever the process inherited (a pytest-xdist worker, a
    # test before this one): the property is "held inside, handed to the previous handler after".
    signal.signal(signal.SIGINT, signal.default_int_handler)  # conftest restores the inherited one afterwards
    reached_end = False
    with pytest.raises(KeyboardInterrupt), _signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached_end = True
    assert reached_end


def test_a_store_call_is_not_cut_in_half(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM inside a store write: the write completes, then the job's interrupt is raised. Before, the
    KeyboardInterrupt landed inside MLflow's transaction: the run stayed RUNNING and the SQLite store stayed locked
    for every other process (the launcher could not end the sweep's parent run)."""
    from src.lab import signals, tracking

    tr = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    run_id = tr.start_run("r")
    real = tr.client.set_terminated

    def interrupted_half_way(*a, **k):  # noqa: ANN002, ANN003, ANN202
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here if the signal is not held
        return real(*a, **k)

    monkeypatch.setattr(tr.client, "set_terminated", interrupted_half_way)
    with pytest.raises(KeyboardInterrupt), signals.interrupts():
        tr.end_run(run_id, "KILLED")
    assert tr.get_run(run_id).info.status == "KILLED", "the write completed before the interrupt"
    other = tracking.Tracker(tr.uri, "x")  # another connection can write at once: no transaction left open
    other.set_tags(run_id, {"after": "1"})
    assert tr.get_run(run_id).data.tags["after"] == "1"


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_dead_worker_fails_the_sweep_unless_the_launcher_stopped_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted: bool) -> None:
    """A worker that dies on its own (OOM killer) fails the sweep; one that died of the SIGTERM an interrupted
    launcher forwarded (it was between two jobs) is the interrupt: the parent ends KILLED. Either way the dead
    worker's run, left RUNNING, ends KILLED."""
    import threading

    from src.lab import signals, tracking
    from src.lab.sweep import SweepCallback

    monkeypatch.setattr(signals, "_stopping", threading.Event())
    if interrupted:  # the state signals.stop_sweep leaves (called here, it would SIGTERM the test's own children)
        signals._stopping.set()
    cb = SweepCallback()
    cb.tracker = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    cb.parent_id = cb.tracker.start_run("sweep")
    child = cb.tracker.start_run("job", parent_id=cb.parent_id)
    cb.abort("nnlab: error: a worker process died (SIGKILL: the OOM killer, or a kill) and stopped the sweep")
    parent = cb.tracker.get_run(cb.parent_id)
    status = "KILLED" if interrupted else "FAILED"
    assert (parent.info.status, parent.data.tags["nnlab.status"]) == (status, status.lower())
    assert parent.data.tags["nnlab.error"].startswith("a worker process died")
    assert cb.tracker.get_run(child).info.status == "KILLED"
    cb._end_if_open("FINISHED")  # the atexit hook, or the main thread, after loky's thread: a no-op
    assert cb.tracker.get_run(cb.parent_id).info.status == status


@pytest.mark.parametrize("call", ["create_run", "log_inputs"])
def test_an_interrupt_while_the_run_is_created_keeps_its_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compose: Any, data_dir: Path, call: str) -> None:
    """SIGTERM while a job creates its MLflow run (or logs its dataset): the record names the run and the run ends
    KILLED. Before, the signal held during the store call was acted on as the call returned, before the job had
    the run's id: the record said run_id None and the run stayed RUNNING (the joblib turn-over test's flake)."""
    from mlflow.tracking import MlflowClient

    from src.lab.job import JobContext, run_job

    real = getattr(MlflowClient, call)

    def interrupted_half_way(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(self, *a, **k)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here if the signal is not held
        return out

    monkeypatch.setattr(MlflowClient, call, interrupted_half_way)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose(["train.epochs=2", "train.seeds=1", "train.progress=false", "tracking.artifacts=false",
                   "tracking.model=false", "tune.enabled=false", f"tracking.uri={uri}", "tracking.experiment=x",
                   f"data.dir={data_dir}"])
    out = tmp_path / "job"
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, JobContext(out_dir=out))
    rec = json.loads((out / records.RESULT_FILE).read_text())
    _, runs = _runs(tmp_path / "mlflow.db")
    assert [r.info.run_id for r in runs] == [rec["run_id"]], rec
    assert (rec["status"], runs[0].info.status, runs[0].data.tags["nnlab.status"]) == ("killed", "KILLED", "killed")


def test_a_failure_while_recording_an_interrupted_fit_still_stops(tmp_path: Path, data_dir: Path, compose: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted fit whose recording then fails (a bug, a full disk): the job ends as the interrupt it is
    (KeyboardInterrupt, record and run KILLED), not as a failed job that the sweep carries on from."""
    from src.lab import loop
    from src.lab.job import JobContext, run_job

    real_add = loop.History.add

    def interrupted(self, epoch, row, diverged=None):  # noqa: ANN001, ANN202
        if self.epochs:
            raise KeyboardInterrupt
        return real_add(self, epoch, row, diverged)

    def broken(result: Any) -> str:
        raise ValueError("cannot write the curve")

    monkeypatch.setattr(loop.History, "add", interrupted)
    monkeypatch.setattr(records, "mean_curve_csv", broken)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose(["train.epochs=20", "train.log_every=5", "train.seeds=1", "train.progress=false",
                   "tracking.artifacts=false", "tracking.model=false", "tune.enabled=false", f"tracking.uri={uri}",
                   "tracking.experiment=x", f"data.dir={data_dir}"])
    out = tmp_path / "job"
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, JobContext(out_dir=out))
    rec = json.loads((out / records.RESULT_FILE).read_text())
    _, runs = _runs(tmp_path / "mlflow.db")
    assert (rec["status"], runs[0].info.status) == ("killed", "KILLED"), rec


def test_an_interrupted_measured_study_ends_its_run_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A measured study (`log_folder_run`) interrupted as its run is created: the run ends KILLED, not RUNNING."""
    from mlflow.tracking import MlflowClient

    from src.lab import signals, tracking

    real = MlflowClient.create_run

    def interrupted_half_way(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = real(self, *a, **k)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        return out

    monkeypatch.setattr(MlflowClient, "create_run", interrupted_half_way)
    (tmp_path / "f").mkdir()
    with pytest.raises(KeyboardInterrupt), signals.interrupts():
        tracking.log_folder_run("x", "study", tmp_path / "f", {"a": 1}, {"m": 1.0}, ok=True,
                                uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, runs = _runs(tmp_path / "mlflow.db")
    assert [(r.info.status, r.data.tags["nnlab.status"]) for r in runs] == [("KILLED", "killed")]
