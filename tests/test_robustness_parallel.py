"""Robustness, parallel sweeps: many processes writing one store lose no run and no metric point.

- 52 jobs through Hydra's joblib launcher (n_jobs = cores) into a brand-new SQLite store: the store is created by
  the launching process before any worker starts (a fresh store hit by several processes at once breaks in
  MLflow's migrations); every run is counted, and every run's (metric, step) points are compared, as a set, with
  what the job logs for that config (computed in-process through the same `src.lab.job` code with a counting tracker).
- A real `mlflow server` on 127.0.0.1 as the target of a 3-job sweep.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_utils import env_for, run

from src import data
from src.lab import records

pytestmark = pytest.mark.e2e
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


@pytest.fixture
def mlflow_server(tmp_path: Path, repo: Path):
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
    assert list((tmp_path / "artifacts").rglob("leaderboard.md")), "artifacts went through the server"
