"""Tracking throughput: which MLflow store to use when (`python -m benchmarks.bench --only tracking`).

What is written is exactly what one job of the default config logs (measured, not assumed: the section first runs
`python -m src.train` once into a scratch SQLite store and reads back its params, tags and metric points), replayed
through `src.lab.tracking.Tracker` -- the code every job uses -- by 1 and by 4 writer processes at once ("one
launcher and four"), into:

  sqlite           the SQLite file itself (`sqlite:///.../mlflow.db`, no server: the default for one machine);
  server_sqlite    an `mlflow server` on that kind of file;
  server_postgres  an `mlflow server` on a throw-away PostgreSQL cluster: the README's "Scale out" command line,
                   started by tests/postgres_utils.py as the test does (skipped, with the reason, without it).

Figures are runs per second and metric points per second of all writers together (total / wall time from a
barrier that every writer reaches after its imports and connection), as ratios to the baseline `sqlite, 1
writer`; cases alternate within each round and the median over rounds is kept. Wall time, not CPU time: the
servers' work happens in other processes, and the wall time is what a sweep waits for.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STORES = ("sqlite", "server_sqlite", "server_postgres")
BASELINE = ("sqlite", 1)


def _tests_on_path() -> None:
    for p in (str(ROOT), str(ROOT / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def job_payload(repo: Path, env: dict[str, str], job_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """What one job of the default config logs: run it once into a scratch SQLite store and read its run back."""
    db = repo / "shape.db"
    subprocess.run([sys.executable, "-m", "src.train", "train.progress=false", "tracking.artifacts=false",
                    "study=shape", *job_args], cwd=repo, env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"},
                   check=True, capture_output=True, timeout=900)
    con = sqlite3.connect(db)
    try:
        (run_id,) = con.execute("select run_uuid from runs").fetchone()
        params = dict(con.execute("select key, value from params where run_uuid = ?", (run_id,)).fetchall())
        tags = dict(con.execute("select key, value from tags where run_uuid = ? and key like 'nnlab.%'",
                                (run_id,)).fetchall())
        points = con.execute("select key, step, value from metrics where run_uuid = ? order by key, step",
                             (run_id,)).fetchall()
    finally:
        con.close()
    last = max(s for _, s, _ in points)
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for key, step, value in points:
        by_key[key].append((step, value))
    # A job logs its curves in one batch, then its final metrics at the last step in another (a key may be in both:
    # train_loss's last curve point and the final train_loss, two rows at the same step).
    curves: dict[str, tuple[list[int], list[float]]] = {}
    finals: dict[str, float] = {}
    for key, pts in by_key.items():
        at_last = [v for s, v in pts if s == last]
        if len(pts) == 1 or len(at_last) > 1:
            finals[key] = at_last[-1]
            pts = pts[:-1]
        if pts:
            curves[key] = ([s for s, _ in pts], [v for _, v in pts])
    return {"params": params, "tags": tags, "curves": dict(curves), "finals": finals, "last_step": last,
            "points": len(points)}


def _writer(uri: str, experiment: str, payload: dict[str, Any], n_runs: int, barrier: Any, out: Any) -> None:
    """One launcher's worth of jobs: n_runs runs written like `src.lab.job` writes them (same Tracker calls)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - MLflow prints two "View run" lines per run ended on a server
    _tests_on_path()
    from src.lab.tracking import Tracker

    tracker = Tracker(uri, experiment)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n_runs):
        run_id = tracker.start_run(f"bench{i}", {**payload["tags"], "nnlab.status": "running"})
        tracker.log_params(run_id, payload["params"])
        tracker.log_series(run_id, payload["curves"])
        tracker.log_metrics(run_id, payload["finals"], step=payload["last_step"])
        tracker.set_tags(run_id, {"nnlab.status": "finished"})
        tracker.end_run(run_id)
    out.put(time.perf_counter() - t0)


def _round(uri: str, experiment: str, payload: dict[str, Any], writers: int, n_runs: int) -> float:
    """Wall seconds for `writers` processes to write `n_runs` runs each, timed from a common start."""
    ctx = mp.get_context("spawn")  # fresh interpreters, like launchers: nothing inherited from this process
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(uri, experiment, payload, n_runs, barrier, out))
             for _ in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    for p in procs:
        p.join(timeout=900)
    wall = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a writer into {uri} failed: exit codes {[p.exitcode for p in procs]}")
    return wall


def _count(db: Path) -> tuple[int, int]:
    """(runs, metric points) in an SQLite store."""
    con = sqlite3.connect(db)
    try:
        return (con.execute("select count(*) from runs").fetchone()[0],
                con.execute("select count(*) from metrics").fetchone()[0])
    finally:
        con.close()


def bench_tracking(runs_per_writer: int = 20, rounds: int = 3, writers: tuple[int, ...] = (1, 4),
                   stores: tuple[str, ...] = STORES, job_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """The section: see the module docstring. `job_args` shrink the measured job (tests: fewer epochs)."""
    _tests_on_path()
    from e2e_utils import env_for, make_project
    from postgres_utils import free_port, missing_reason, mlflow_server, postgres_cluster, server_command

    out: dict[str, Any] = {"runs_per_writer": runs_per_writer, "rounds": rounds, "writers": list(writers),
                           "baseline": f"{BASELINE[0]}, {BASELINE[1]} writer", "cases": {}, "skipped": {}}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-tracking-") as tmp, ExitStack() as stack:
        tmp_p = Path(tmp)
        repo = make_project(tmp_p / "repo", git=False)
        env = env_for(repo)
        subprocess.run([sys.executable, "-m", "src.data", "generate", "--only", "moons", "--out", "data"], cwd=repo,
                       env=env, check=True, capture_output=True, timeout=600)
        payload = job_payload(repo, env, job_args)
        out["per_run"] = {"params": len(payload["params"]), "tags": len(payload["tags"]),
                          "metric_points": payload["points"]}
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from src.lab.tracking import Tracker

        uris: dict[str, str] = {}
        for store in stores:
            if store == "sqlite":
                uris[store] = f"sqlite:///{tmp_p / 'direct.db'}"
            elif store == "server_sqlite":
                # The README's server command line, on an SQLite file instead of PostgreSQL.
                readme_env, cmd = server_command(f"sqlite:///{tmp_p / 'server.db'}", tmp_p / "art1", free_port())
                srv = stack.enter_context(mlflow_server(cmd, cwd=tmp_p, env={**env, **readme_env},
                                                        log=tmp_p / "server_sqlite.log"))
                uris[store] = srv.url
            elif store == "server_postgres":
                reason = missing_reason()
                if reason:
                    out["skipped"][store] = reason
                    continue
                cluster = stack.enter_context(postgres_cluster())
                readme_env, cmd = server_command(cluster.create_database("mlflow"), tmp_p / "art2", free_port())
                srv = stack.enter_context(mlflow_server(cmd, cwd=tmp_p, env={**env, **readme_env, **cluster.env()},
                                                        log=tmp_p / "server_postgres.log"))
                uris[store] = srv.url
            else:
                raise ValueError(f"unknown store {store!r}; valid: {', '.join(STORES)}")
        walls: dict[tuple[str, int], list[float]] = defaultdict(list)
        for r in range(rounds):
            for store, uri in uris.items():
                for w in writers:
                    exp = f"bench-{store}-{w}-{r}"
                    Tracker(uri, exp)  # store and experiment exist before writers fan out, as a sweep ensures
                    walls[(store, w)].append(_round(uri, exp, payload, w, runs_per_writer))
        if "sqlite" in uris:  # what the writers claim to have written is in the file
            expected = sum(len(v) * w * runs_per_writer for (s, w), v in walls.items() if s == "sqlite")
            runs, points = _count(tmp_p / "direct.db")
            out["sqlite_written"] = {"runs_expected": expected, "runs": runs,
                                     "points_expected": expected * payload["points"], "points": points}
    for (store, w), ws in walls.items():
        wall = statistics.median(ws)
        runs = w * runs_per_writer
        out["cases"][f"{store}/{w}"] = {"store": store, "writers": w, "wall_s": wall, "walls_s": ws,
                                        "runs_per_s": runs / wall, "points_per_s": runs * payload["points"] / wall}
    base = out["cases"].get(f"{BASELINE[0]}/{BASELINE[1]}")
    if base:
        for c in out["cases"].values():
            c["vs_baseline"] = c["runs_per_s"] / base["runs_per_s"]
    return out


def rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, measured) rows for bench.py's table."""
    out = []
    per = res.get("per_run", {})
    names = {"sqlite": "SQLite file", "server_sqlite": "mlflow server on SQLite",
             "server_postgres": "mlflow server on PostgreSQL"}
    for c in sorted(res["cases"].values(), key=lambda c: (STORES.index(c["store"]), c["writers"])):
        fig = (f"tracking: {names[c['store']]}, {c['writers']} writer{'s' if c['writers'] > 1 else ''} "
               f"(runs of {per.get('metric_points', '?')} points)")
        val = f"{c['runs_per_s']:.1f} runs/s, {c['points_per_s']:.0f} points/s"
        if (c["store"], c["writers"]) == BASELINE:
            val += " (baseline)"
        elif "vs_baseline" in c:
            val = f"{c['vs_baseline']:.2f}× baseline ({val})"
        out.append((fig, val))
    for store, reason in res.get("skipped", {}).items():
        out.append((f"tracking: {names[store]}", f"skipped: {reason}"))
    return out
