"""The README's multi-machine recipe on real parts: launchers racing into `mlflow server` on PostgreSQL.

A throw-away PostgreSQL cluster (tests/postgres_utils.py: its own folder and port on 127.0.0.1, password auth
through a pgpass file) and the README's own `mlflow server` command line (read from README.md, with this
machine's database URI, artifact folder and port) on a fresh database. Then, with `python -m src.train`:

four launches at once (basic and joblib launchers mixed) into one new experiment, 10 jobs each; one of them
(joblib) is stopped by SIGTERM to its launcher mid-sweep while the others run on, and re-run with resume. The three
untouched launches: every run FINISHED; the stopped one: nothing left RUNNING, its finished jobs skipped on resume;
all four: one FINISHED run per job under its own launch's parent, every metric point present, the database
consistent. (One race for both scenarios: two races of four launches cost twice as much and showed nothing more.)

What "every metric point" means is not hard-coded: a reference job with the same settings runs alone into a
private SQLite store, and each run's (metric, step) points, counted with repeats, must equal that job's (the sweeps
vary only the seed, which changes values, not which points are logged; a job logs the last step of its four
loss/accuracy curves twice, as a curve point and as a final metric, so the count is a multiset, not a set).
Values are checked against each job's own record (the sweep's runs.csv, written from its result.json).
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_utils import env_for, make_project, py
from postgres_utils import PgCluster, free_port, missing_reason, mlflow_server, postgres_cluster, server_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))]

JOBS = 10  # per launch
JOB = ["train.epochs=20", "train.log_every=5", "train.seeds=1", "train.progress=false", "tracking.artifacts=false"]
LAUNCHERS = [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]]  # basic, joblib (alternating)




@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_project(tmp_path_factory.mktemp("pg") / "p", git=False)
    py(["-m", "src.data", "generate", "--only", "moons", "--out", "data"], repo, timeout=300)
    return repo


@pytest.fixture(scope="module")
def reference(repo: Path) -> dict[str, object]:
    """One job alone into a private SQLite store: the (metric, step) points a job of these settings logs."""
    db = repo / "reference.db"
    py(["-m", "src.train", *JOB, "study=reference", "train.seed=0"], repo, timeout=300,
       MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    con = sqlite3.connect(db)
    try:
        points = Counter(con.execute("select key, step from metrics").fetchall())
        alembic = con.execute("select version_num from alembic_version").fetchall()
    finally:
        con.close()
    assert points, "the reference job logged no metric"
    return {"points": points, "alembic": alembic}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    with postgres_cluster(log_to=tmp_path_factory.mktemp("pglog") / "postgres.log") as c:
        yield c


@pytest.fixture(scope="module")
def server(cluster: PgCluster, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mlflow-server")
    uri = cluster.create_database("mlflow")  # fresh and empty: the server runs MLflow's migrations on it
    readme_env, cmd = server_command(uri, tmp / "artifacts", free_port())
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1", "the recipe binds the loopback address"
    env = env_for(repo, **readme_env, **cluster.env())
    with mlflow_server(cmd, cwd=tmp, env=env, log=tmp / "server.log") as srv:
        yield srv.url


def _launch(repo: Path, url: str, tmp: Path, study: str, i: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    seeds = f"range({i * JOBS},{(i + 1) * JOBS})"
    # one job per config (hydra/sweeper=basic): many jobs writing the store, not one packed job
    args = ["-m", "hydra/sweeper=basic", f"train.seed={seeds}", *JOB, f"study={study}", *LAUNCHERS[i % 2],
            f"hydra.sweep.dir={tmp}/sweep{i}", f"results_dir={tmp}/results{i}", *extra]
    with open(tmp / f"launch{i}.log", "a") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=repo, stdout=log,
                                stderr=subprocess.STDOUT, env=env_for(repo, MLFLOW_TRACKING_URI=url),
                                start_new_session=True)


def _wait(p: subprocess.Popen, tmp: Path, i: int, timeout: float = 300) -> int:
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise AssertionError(f"launch {i} did not finish:\n{(tmp / f'launch{i}.log').read_text()[-3000:]}") from None


def _runs(cluster: PgCluster, study: str) -> dict[str, dict[str, object]]:
    """run id -> status, parent, sweep dir, seed, straight from the server's database."""
    rows = cluster.sql(
        "select r.run_uuid, r.status, r.start_time, r.end_time, "
        "  (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId'), "
        "  (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'nnlab.sweep_dir'), "
        "  (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'nnlab.status'), "
        "  (select value from params p where p.run_uuid = r.run_uuid and p.key = 'train.seed') "
        "from runs r join experiments e on e.experiment_id = r.experiment_id "
        f"where e.name = '{study}' and r.lifecycle_stage = 'active'", db="mlflow", role="mlflow")
    keys = ("status", "start", "end", "parent", "sweep_dir", "nnlab_status", "seed")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def _points(cluster: PgCluster, run_ids: list[str]) -> dict[str, list[tuple[str, int]]]:
    ids = ",".join(f"'{r}'" for r in run_ids)
    out: dict[str, list[tuple[str, int]]] = {r: [] for r in run_ids}
    for run_id, key, step in cluster.sql(f"select run_uuid, key, step from metrics where run_uuid in ({ids})",
                                         db="mlflow", role="mlflow"):
        out[run_id].append((key, int(step)))
    return out


def _runs_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _check_database(cluster: PgCluster, reference: dict[str, object]) -> None:
    """The server's database is whole: schema at MLflow's head, no leftovers of a migration, the derived
    `latest_metrics` table agrees with `metrics`, nothing RUNNING, every run ended after it started."""
    q = lambda s: cluster.sql(s, db="mlflow", role="mlflow")  # noqa: E731
    assert q("select version_num from alembic_version") == reference["alembic"], "schema at the same head"
    assert q("select count(*) from information_schema.tables where table_name like '\\_alembic\\_tmp%'") == [(0,)]
    for table in ("metrics", "latest_metrics", "params", "tags"):
        orphans = q(f"select count(*) from {table} x left join runs r on r.run_uuid = x.run_uuid "
                    "where r.run_uuid is null")
        assert orphans == [(0,)], f"{table} rows without a run"
    # latest_metrics holds, per (run, key), the point with the largest (step, timestamp, value) of metrics.
    mismatched = q(
        "with ranked as (select run_uuid, key, step, timestamp, value, row_number() over ("
        "  partition by run_uuid, key order by step desc, timestamp desc, value desc) as k from metrics) "
        "select count(*) from ranked m full outer join latest_metrics l "
        "  on l.run_uuid = m.run_uuid and l.key = m.key "
        "where m.k = 1 and (l.run_uuid is null or l.step <> m.step or l.value <> m.value "
        "  or l.timestamp <> m.timestamp)")
    assert mismatched == [(0,)], "latest_metrics disagrees with metrics"
    n_keys = q("select count(*) from (select distinct run_uuid, key from metrics) d")
    assert q("select count(*) from latest_metrics") == n_keys
    assert q("select count(*) from runs where status = 'RUNNING'") == [(0,)], "a run was left RUNNING"
    assert q("select count(*) from runs where end_time is null or end_time < start_time") == [(0,)]


def _check_launch(cluster: PgCluster, runs: dict[str, dict[str, object]], sweep_dir: Path, seeds: range,
                  results: Path, reference: dict[str, object], parents_expected: int = 1) -> None:
    """A launch's parent(s) and children: one FINISHED child per seed, full metric points, values as recorded."""
    parents = {rid: r for rid, r in runs.items() if r["parent"] is None and r["sweep_dir"] == str(sweep_dir)}
    assert len(parents) == parents_expected, parents
    children = {rid: r for rid, r in runs.items() if r["parent"] in parents}
    finished = {int(r["seed"]): rid for rid, r in children.items() if r["status"] == "FINISHED"}
    assert sorted(finished) == list(seeds), f"one FINISHED run per job of {sweep_dir.name}: {sorted(finished)}"
    assert len(finished) == sum(r["status"] == "FINISHED" for r in children.values()), "a job ran twice"
    first, *later = sorted(parents, key=lambda p: parents[p]["start"])
    assert runs[(later or [first])[-1]]["status"] == "FINISHED", "the (last) launch's parent run is FINISHED"
    # an interrupted launch's parent is ended, never left RUNNING: KILLED when the launcher's own exit ends it, FAILED
    # when the sweep's end sees the jobs its SIGTERM stopped (issue 13: a sweep with failed jobs ends FAILED)
    stopped = {runs[p]["status"] for p in ([first] if later else [])}
    assert stopped <= {"KILLED", "FAILED"}, f"an interrupted launch's parent is ended: {stopped}"
    points = _points(cluster, list(finished.values()))
    for seed, rid in finished.items():
        assert children[rid]["nnlab_status"] == "finished"
        found = Counter(points[rid])
        assert found == reference["points"], (seed, found - reference["points"], reference["points"] - found)
    rows = _runs_csv(results / "runs.csv")  # the last launch's record of every job, resumed ones included
    assert sorted(r["run_id"] for r in rows) == sorted(finished.values())
    acc = dict(cluster.sql(f"select run_uuid, value from latest_metrics where key = 'test_acc' and run_uuid in "
                           f"({','.join(repr(r) for r in finished.values())})", db="mlflow", role="mlflow"))
    for r in rows:
        assert r["status"] == "finished"
        assert abs(acc[r["run_id"]] - float(r["test_acc"])) <= 1e-5 * max(1.0, abs(float(r["test_acc"]))), r


def _finished_children(cluster: PgCluster, sweep_dir: Path) -> int:
    return cluster.sql(
        "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId' "
        "join tags s on s.run_uuid = t.value and s.key = 'nnlab.sweep_dir' "
        f"where s.value = '{sweep_dir}' and r.status = 'FINISHED'", db="mlflow", role="mlflow")[0][0]


def test_four_launches_at_once_one_killed_and_resumed_lose_nothing(
        repo: Path, cluster: PgCluster, server: str, reference: dict[str, object], tmp_path: Path) -> None:
    """Four launches at once (basic and joblib alternating, JOBS jobs each) into one new experiment; one joblib
    launch is stopped by SIGTERM to its launcher mid-sweep, the other three run to the end untouched. Then the
    victim is re-run with resume=true. One race stands for both scenarios (each of them alone cost as much)."""
    victim = 1  # a joblib launch: SIGTERM to its launcher must end its workers' runs KILLED before it stops
    t0 = time.monotonic()
    procs = [_launch(repo, server, tmp_path, "pgrace", i) for i in range(4)]
    deadline = time.monotonic() + 240
    while _finished_children(cluster, tmp_path / f"sweep{victim}") < 3:
        assert procs[victim].poll() is None, "the victim finished before it could be interrupted"
        assert time.monotonic() < deadline, (tmp_path / f"launch{victim}.log").read_text()[-3000:]
        time.sleep(0.2)
    procs[victim].send_signal(signal.SIGTERM)  # the launcher only, as a scheduler's `scancel` or `kill` would
    codes = [_wait(p, tmp_path, i) for i, p in enumerate(procs)]
    took = time.monotonic() - t0
    assert codes[victim] != 0 and [c for i, c in enumerate(codes) if i != victim] == [0] * 3, \
        [(tmp_path / f"launch{i}.log").read_text()[-2000:] for i, c in enumerate(codes) if c and i != victim]
    done_before = _finished_children(cluster, tmp_path / f"sweep{victim}")
    assert done_before < JOBS, "the interrupt came too late to test anything"
    logs = {i: (tmp_path / f"launch{i}.log").read_text() for i in range(4)}
    assert all(logs[i].count("finished  test_acc") == JOBS for i in logs if i != victim), "one summary line per job"
    assert not any("View run" in log for log in logs.values()), "MLflow's per-run link lines are off"
    runs = _runs(cluster, "pgrace")
    assert "RUNNING" not in {r["status"] for r in runs.values()}, "an interrupted run was left RUNNING"
    hit = {rid for rid, r in runs.items() if r["parent"] is None and r["sweep_dir"] == str(tmp_path / f"sweep{victim}")}
    untouched = [rid for rid, r in runs.items() if rid not in hit and r["parent"] not in hit]
    assert len(untouched) == 3 * (JOBS + 1), len(untouched)
    assert {runs[rid]["status"] for rid in untouched} == {"FINISHED"}

    resumed = _launch(repo, server, tmp_path, "pgrace", victim, extra=("resume=true",))
    assert _wait(resumed, tmp_path, victim) == 0, (tmp_path / f"launch{victim}.log").read_text()[-3000:]
    log = (tmp_path / f"launch{victim}.log").read_text()
    assert log.count("already done") == done_before, "finished jobs are skipped, not re-run"
    runs = _runs(cluster, "pgrace")
    for i in range(4):
        _check_launch(cluster, runs, tmp_path / f"sweep{i}", range(i * JOBS, (i + 1) * JOBS),
                      tmp_path / f"results{i}", reference, parents_expected=2 if i == victim else 1)
    killed = [r for r in runs.values() if r["status"] == "KILLED"]
    assert killed and all(r["nnlab_status"] == "killed" for r in killed), "the interrupted sweep is recorded"
    _check_database(cluster, reference)
    print(f"\n4 launches x {JOBS} jobs into mlflow server on PostgreSQL, one killed: {took:.1f} s")
