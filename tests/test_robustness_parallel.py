"""Robustness, parallel sweeps: many processes writing one store lose no run and no metric point.

- 52 jobs through Hydra's joblib launcher (n_jobs = cores) into a brand-new SQLite store: the store is created by
  the launching process before any worker starts (a fresh store hit by several processes at once breaks in
  MLflow's migrations); every run is counted, and every run's (metric, step) points are compared, as a set, with
  what the job logs for that config (computed in-process through the same `src.lab.job` code with a counting tracker).
- A real `mlflow server` on 127.0.0.1 as the target of a 3-job sweep; 4 threads creating one new experiment on it
  at once, 10 times; and the server going away mid-sweep (a TCP proxy in front of it is closed after job 1).
- Two sweeps of one study launched at the same instant into a brand-new SQLite store (issue 13, item 1: 12 of 12
  such tries lost every job of one sweep; item 4: a shared folder, a job without its parent, results/<study>/ from
  whichever finished last).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_utils import env_for, kill_group, run

from src import data
from src.lab import records

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
N_JOBS = 52
JOB = ["train.epochs=20", "train.log_every=5", "train.seeds=1", "train.progress=false", "tracking.artifacts=false",
       "study=par"]
BASIC = "hydra/sweeper=basic"  # one job per config: many processes writing one store


@pytest.fixture(scope="module")
def repo(project) -> Path:  # noqa: ANN001
    return project("par")


class CountingTracker:
    """Records every (metric, step) point `src.lab.job` logs for finite values, like `Tracker.log_series`."""

    def __init__(self) -> None:
        self.points: set[tuple[str, int]] = set()

    def log_series(self, run_id: str, series: dict[str, tuple[list[int], list[float]]]) -> int:
        for k, (steps, vals) in series.items():
            self.points |= {(k, int(s)) for s, v in zip(steps, vals, strict=True) if np.isfinite(v)}
        return len(self.points)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, model_id: str | None = None) -> None:
        self.log_series(run_id, {k: ([step], [v]) for k, v in metrics.items()})

    def log_model(self, run_id: str, *args: Any, **kwargs: Any) -> str:
        return "model"  # a model is files and a model record, no metric point of the run

    def set_tags(self, *a: Any, **k: Any) -> None:
        pass


def _expected_points(repo: Path, seed: int, tmp: Path) -> set[tuple[str, int]]:
    from src.lab import job
    from src.lab.config import to_container
    from src.lab.preflight import compose

    cfg = compose([*JOB, f"train.seed={seed}", f"data.dir={repo / 'data'}"])
    ds = data.load("moons", repo / "data")
    tracker = CountingTracker()
    job._train_and_log(cfg, to_container(cfg), ds, tracker, "run", tmp)  # type: ignore[arg-type]
    return tracker.points


@pytest.mark.slow
def test_52_joblib_jobs_into_a_new_sqlite_store(repo: Path, tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "mlflow.db"
    db.parent.mkdir()
    assert not db.exists()
    sweep = tmp_path / "sweep"
    t0 = time.perf_counter()
    proc = run([sys.executable, "-m", "src.train", "-m", BASIC, f"train.seed=range(0,{N_JOBS})", *JOB,
                "hydra/launcher=joblib", f"hydra.launcher.n_jobs={os.cpu_count() or 2}", f"hydra.sweep.dir={sweep}",
                f"results_dir={tmp_path / 'results'}"], repo, timeout=600, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    took = time.perf_counter() - t0
    assert "migration" not in proc.stderr.lower() and "already exists" not in proc.stderr, proc.stderr[-3000:]

    con = sqlite3.connect(db)
    runs = con.execute("select run_uuid, status, start_time from runs").fetchall()
    parent = [r for r in runs if not con.execute("select 1 from tags where run_uuid=? and key='mlflow.parentRunId'",
                                                 (r[0],)).fetchone()]
    children = [r for r in runs if r not in parent]
    assert len(parent) == 1 and len(children) == N_JOBS, (len(parent), len(children))
    assert {r[1] for r in runs} == {"FINISHED"}
    assert parent[0][2] <= min(r[2] for r in children), "the parent (and the store) exist before any job"
    seeds = {}
    for run_id, *_ in children:
        tags = dict(con.execute("select key, value from tags where run_uuid=?", (run_id,)).fetchall())
        params = dict(con.execute("select key, value from params where run_uuid=?", (run_id,)).fetchall())
        assert tags["mlflow.parentRunId"] == parent[0][0] and tags["nnlab.status"] == "finished"
        seeds[int(params["train.seed"])] = run_id
    assert sorted(seeds) == list(range(N_JOBS)), "one run per job, none lost, none doubled"

    total_expected = total_found = 0
    for seed, run_id in seeds.items():
        found = set(con.execute("select key, step from metrics where run_uuid=?", (run_id,)).fetchall())
        expected = _expected_points(repo, seed, tmp_path)
        assert found == expected, (seed, sorted(expected ^ found)[:10])
        total_expected += len(expected)
        total_found += len(found)
    latest = con.execute("select count(*) from latest_metrics").fetchone()[0]
    con.close()
    assert total_found == total_expected
    rows = (tmp_path / "results" / "runs.csv").read_text().splitlines()
    assert len(rows) == N_JOBS + 1 and all(",finished," in r for r in rows[1:])
    assert len(records.read_results(sweep)) == N_JOBS
    print(f"\n{N_JOBS} jobs, joblib n_jobs={os.cpu_count()}: {took:.1f} s; runs {len(runs)}/{N_JOBS + 1}; "
          f"metric points {total_found}/{total_expected}; latest_metrics rows {latest}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, repo: Path, mlflow_template: Path):
    """A real `mlflow server` on 127.0.0.1 (one per module: it takes ~10 s to answer), on a copy of the template."""
    tmp_path = tmp_path_factory.mktemp("server")
    shutil.copy(mlflow_template, tmp_path / "server.db")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, env=env_for(repo), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server runs a group of processes
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_sweep_into_an_mlflow_server(repo: Path, tmp_path: Path, mlflow_server: str) -> None:
    sweep = tmp_path / "sweep"
    run([sys.executable, "-m", "src.train", "-m", BASIC, "train.seed=0,1,2", *JOB, "study=srv",
         f"hydra.sweep.dir={sweep}"],
        repo, timeout=300, MLFLOW_TRACKING_URI=mlflow_server)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("srv")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    expected = _expected_points(repo, 0, tmp_path)
    for c in children:
        found = {(k, m.step) for k in c.data.metrics for m in client.get_metric_history(c.info.run_id, k)}
        assert {k for k, _ in found} == {k for k, _ in expected} and len(found) == len(expected)
    assert "leaderboard.md" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_experiment_creation_on_a_server(mlflow_server: str, n: int) -> None:
    """n launches opening one new experiment on one server at the same instant, 10 times: one experiment each."""
    from src.lab.tracking import Tracker

    for rep in range(10):
        barrier, ids, errors = threading.Barrier(n), [], []

        def open_it(rep: int = rep, barrier: threading.Barrier = barrier, ids: list = ids,  # noqa: B006
                    errors: list = errors) -> None:  # noqa: B006
            barrier.wait()
            try:
                ids.append(Tracker(mlflow_server, f"race{n}-{rep}").experiment_id)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert errors == [] and len(ids) == n and len(set(ids)) == 1, (rep, errors, ids)


class _Proxy:
    """A TCP proxy to `target` on a free port; :meth:`close` makes the tracking server "go away" at once."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
                c.close()


def test_server_going_away_mid_sweep(repo: Path, tmp_path: Path, mlflow_server: str) -> None:
    """The server goes away after job 1 of 4: the sweep ends in seconds (before: MLflow retried each call for ~4
    minutes, ~25 minutes in all), exits 1 saying how many jobs failed, each failure naming the server; once it
    is back, a resume ends the orphaned parent KILLED and runs only the 3 failed jobs."""
    proxy = _Proxy(int(mlflow_server.rsplit(":", 1)[1]))
    url = f"http://127.0.0.1:{proxy.port}"
    args = [sys.executable, "-m", "src.train", "-m", BASIC, "train.seed=0,1,2,3", *JOB, "train.epochs=3000",
            "study=gone", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    p = subprocess.Popen(args, cwd=repo, env=env_for(repo, MLFLOW_TRACKING_URI=url), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        while not (tmp_path / "sweep" / "0" / "result.json").exists():
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        proxy.close()
        _, err = p.communicate(timeout=120)  # MLflow's default retries would take ~4 minutes per call
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 1, err[-3000:]
    assert "nnlab: error: 3 of 4 jobs FAILED" in err, err[-3000:]
    failures = [ln for ln in err.splitlines() if ": FAILED: " in ln]
    assert len(failures) == 3 and all(f"MLflow server {url} went away" in ln for ln in failures), failures
    assert "Traceback" not in err

    back = _Proxy(int(mlflow_server.rsplit(":", 1)[1]))
    url2 = f"http://127.0.0.1:{back.port}"
    try:
        run([sys.executable, "-m", "src.train", "-m", BASIC, "train.seed=0,1,2,3", *JOB, "train.epochs=3000",
             "study=gone", "resume=true", f"hydra.sweep.dir={tmp_path / 'again'}"], repo, timeout=300,
            MLFLOW_TRACKING_URI=url2)
    finally:
        back.close()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("gone").experiment_id])
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert [r.info.status for r in parents] == ["KILLED", "FINISHED"], "the orphaned parent ended by the resume"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 4, "job 1 once, the 3 failed ones rerun"


def test_two_sweeps_of_one_study_at_once_into_a_new_store(repo: Path, tmp_path: Path) -> None:
    """Two launches of one study at the same instant into a store that does not exist yet: no job lost, each
    sweep its own folder (same second) and parent run, and results/<study>/ is exactly one sweep's (the one
    started last owns it; the other says so)."""
    (tmp_path / "new").mkdir()
    db = tmp_path / "new" / "mlflow.db"
    args = [sys.executable, "-m", "src.train", "-m", BASIC, "train.seed=0,1,2", *JOB, "study=twin",
            f"results_dir={tmp_path / 'results'}"]
    env = env_for(repo, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    procs = [subprocess.Popen(args, cwd=repo, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True) for _ in range(2)]
    errs = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=300)
            errs.append(err)
    finally:
        for p in procs:
            kill_group(p)
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert not any("migration" in e.lower() or "already exists" in e for e in errs), errs
    con = sqlite3.connect(db)
    try:
        parents = con.execute("select r.run_uuid, t.value from runs r join tags t on r.run_uuid = t.run_uuid "
                              "where t.key = 'nnlab.sweep_dir'").fetchall()
        kids = con.execute("select value, count(*) from tags where key = 'mlflow.parentRunId' group by value"
                           ).fetchall()
        statuses = {r[0] for r in con.execute("select status from runs")}
    finally:
        con.close()
    assert len(parents) == 2 and parents[0][1] != parents[1][1], "one folder per sweep"
    assert sorted(kids) == sorted((pid, 3) for pid, _ in parents), "every job under its own sweep's parent"
    assert statuses == {"FINISHED"}
    owners = [pid for pid, _ in parents if _children_of(db, pid) == _csv_run_ids(tmp_path)]
    assert len(owners) == 1, "results/<study>/ is one sweep's, whole"
    assert sum("is left to the sweep started after this one" in e for e in errs) == 1, errs


def _csv_run_ids(tmp_path: Path) -> set[str]:
    import csv

    with open(tmp_path / "results" / "runs.csv") as f:
        return {row["run_id"] for row in csv.DictReader(f)}


def _children_of(db: Path, parent: str) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("select run_uuid from tags where key = 'mlflow.parentRunId' and value = ?",
                                          (parent,))}
    finally:
        con.close()
