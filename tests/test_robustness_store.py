"""Robustness, the tracking store: concurrent creation, faults during creation, and stores nnlab must refuse.

- Races: N processes (2 and 4) open one brand-new SQLite store at the same instant, 10 times, through
  `tracking.ensure_store` with a slow builder that writes the file in chunks (so a non-atomic or unlocked creation
  shows up as two builders or a half-written file), then once through the real `Tracker` (MLflow's ~60 migrations):
  every process succeeds, exactly one builds, nobody ever sees a partial store, the store holds every run.
  Measured before the fix with the real Tracker: 40 of 60 processes failed ("table experiments already exists",
  "duplicate column name: step"); the CLI race of the issue lost every job of one sweep in 12 of 12 tries.
- Faults: a full disk while the store is built (the kernel refuses writes past RLIMIT_FSIZE: a real SQLite I/O
  error, no tmpfs needed) leaves no file at the target and a one-line error; the next creation works.
- Refusals: in-memory, corrupt, truncated, locked, foreign, half-created and other-version stores, in one line
  naming the file, before MLflow touches them (a foreign database is left exactly as it was).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from src.lab import tracking
from src.lab.tracking import TrackingError

ROOT = Path(__file__).resolve().parents[1]
REPS = 10

# A child process: imports once, then for each rep waits for the "go" file and opens the rep's new store.
CHILD = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    base, me, reps, real = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "real"
    from src.lab import tracking
    CONTENT = b"SQLite format 3\\x00" + bytes(range(256)) * 64
    def slow_build(tmp, final):
        with open(base / "builders.log", "a") as log:
            log.write(f"{os.getpid()}\\n")
        with open(tmp, "wb") as f:  # in chunks, with pauses: a reader of a non-atomic creation sees a partial file
            for i in range(0, len(CONTENT), 2048):
                f.write(CONTENT[i:i + 2048]); f.flush(); time.sleep(0.002)
    if not real:
        tracking._build_store = slow_build
        tracking._check_sqlite = lambda uri, *a, **k: None
    (base / f"ready-{me}").write_text("")
    for rep in range(reps):
        while not (base / f"go-{rep}").exists():
            time.sleep(0.001)
        uri = f"sqlite:///{base / f'store{rep}.db'}"
        try:
            if real:
                t = tracking.Tracker(uri, f"exp{me % 2}")
                run = t.start_run(f"r{me}"); t.log_metrics(run, {"x": float(me)}); t.end_run(run)
                seen = "ok"
            else:
                tracking.ensure_store(uri)
                seen = "complete" if Path(uri[10:]).read_bytes() == CONTENT else "partial"
            out = {"ok": True, "seen": seen}
        except BaseException as exc:
            out = {"ok": False, "error": str(exc).splitlines()[0][:300]}
        tmp = base / f".done-{rep}-{me}"  # then renamed: the parent polls for the file and reads it at once
        tmp.write_text(json.dumps(out))
        os.replace(tmp, base / f"done-{rep}-{me}")
''')


def _race(base: Path, n: int, reps: int, real: bool) -> list[list[dict]]:
    """Start n children, release them together `reps` times; return each rep's results."""
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(base), str(i), str(reps), "real" if real else "fake"],
                              cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
             for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while not all((base / f"ready-{i}").exists() for i in range(n)):
            assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.05)
        results = []
        for rep in range(reps):
            (base / f"go-{rep}").write_text("")
            while not all((base / f"done-{rep}-{i}").exists() for i in range(n)):
                dead = [i for i, p in enumerate(procs)
                        if p.poll() is not None and not (base / f"done-{rep}-{i}").exists()]
                assert not dead, [procs[i].communicate()[1][-2000:] for i in dead]
                assert time.monotonic() < deadline + 300, "a rep did not finish"
                time.sleep(0.01)
            results.append([json.loads((base / f"done-{rep}-{i}").read_text()) for i in range(n)])
        return results
    finally:
        for p in procs:  # done after the last rep; on a failure, waiting for a "go" that never comes: killed
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_creation_of_one_new_store(tmp_path: Path, n: int) -> None:
    """10 times, n processes create one new store at once (the creation step itself, with a slow chunked builder)."""
    fake = _race(tmp_path, n, REPS, real=False)
    builders = (tmp_path / "builders.log").read_text().split()
    assert all(r["ok"] for rep in fake for r in rep), fake
    assert len(builders) == REPS, f"exactly one builder per new store, got {len(builders)} for {REPS}"
    assert {r["seen"] for rep in fake for r in rep} == {"complete"}, "a process saw a half-built store"
    leftovers = [p.name for p in tmp_path.iterdir() if ".new-" in p.name]
    assert leftovers == [], leftovers


@pytest.mark.e2e
@pytest.mark.slow
def test_concurrent_trackers_on_one_new_store(tmp_path: Path) -> None:
    """4 real Trackers (MLflow's own migrations) open one new store at the same instant and each logs a run."""
    n = 4
    real = _race(tmp_path, n, 1, real=True)[0]
    assert all(r["ok"] for r in real), real
    db = tmp_path / "store0.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0] == n
        assert not con.execute("select name from sqlite_master where name like '_alembic_tmp%'").fetchall()
    finally:
        con.close()
    tracking._check_sqlite(f"sqlite:///{db}", deep=True)  # a complete store of this MLflow's schema


def test_failed_creation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error half-way through building (the disk fills up) leaves no file at the target: the old behaviour
    left a half-migrated store that no later open could fix ("table trace_info already exists")."""
    db = tmp_path / "mlflow.db"

    def half_then_full(tmp: Path, final: Path) -> None:
        tmp.write_bytes(b"SQLite format 3\x00" + b"\0" * 5000)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(tracking, "_build_store", half_then_full)
    with pytest.raises(TrackingError) as err:
        tracking.ensure_store(f"sqlite:///{db}")
    msg = str(err.value)
    assert "\n" not in msg and str(db) in msg and "disk is full" in msg and "free some space" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mlflow.db.lock"], "nothing half-built left behind"


@pytest.mark.e2e
@pytest.mark.slow
def test_disk_full_during_creation_then_space_back(tmp_path: Path) -> None:
    """A real SQLite I/O error mid-creation: the child may write at most 200 kB (RLIMIT_FSIZE: the kernel refuses
    the rest, as a full disk would). Before: the half-migrated file stayed, and every later open failed with
    "table trace_info already exists". Now: nothing at the target; with the limit gone the same path works."""
    db = tmp_path / "mlflow.db"
    code = ("import sys; from src.lab.tracking import Tracker; t = Tracker(sys.argv[1], 'x'); r = t.start_run('r'); "
            "t.end_run(r); print('ok')")

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    full = subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, preexec_fn=limited, timeout=300)
    assert full.returncode != 0
    assert "could not create the MLflow store" in full.stderr and "nothing was left" in full.stderr
    assert not db.exists(), "no half-built store at the target"
    t = tracking.Tracker(f"sqlite:///{db}", "x")  # space is back: the same path now gets a working store
    t.end_run(t.start_run("r"))
    assert [r.info.status for r in t.search_runs()] == ["FINISHED"]


# --- stores that are refused, in one line, before MLflow touches them -------------------------------------------

def _copy(template: Path, dest: Path) -> Path:
    shutil.copy(template, dest)
    return dest


def _corrupt(db: Path) -> None:
    b = bytearray(db.read_bytes())
    for i in range(4096, len(b), 97):
        b[i] = (b[i] * 31 + 7) % 256
    db.write_bytes(bytes(b))


def _truncate(db: Path) -> None:
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])


def _revision(db: Path, rev: str) -> None:
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = ?", (rev,))
    con.commit()
    con.close()


def _half(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("create table _alembic_tmp_latest_metrics (x int)")
    con.commit()
    con.close()


BROKEN = {
    "corrupt": (_corrupt, "is corrupt"),
    "truncated": (_truncate, "is truncated"),
    "unknown revision": (lambda db: _revision(db, "deadbeef1234"), "has schema revision deadbeef1234"),
    "half-created": (_half, "is half-created"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_store_refused_in_one_line(tmp_path: Path, mlflow_template: Path, case: str) -> None:
    breaker, expected = BROKEN[case]
    db = _copy(mlflow_template, tmp_path / "m.db")
    breaker(db)
    with pytest.raises(TrackingError) as err:
        tracking.check_store(f"sqlite:///{db}")
    msg = str(err.value)
    assert expected in msg and str(db) in msg and "\n" not in msg, msg


def test_locked_store_refused(tmp_path: Path, mlflow_template: Path) -> None:
    db = _copy(mlflow_template, tmp_path / "m.db")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("begin exclusive")
    try:
        with pytest.raises(TrackingError, match="locked by another process"):
            tracking.check_store(f"sqlite:///{db}", timeout=0.2)
    finally:
        holder.close()
    tracking.check_store(f"sqlite:///{db}")  # released: fine again


def test_a_store_mid_commit_is_not_called_truncated(tmp_path: Path, mlflow_template: Path) -> None:
    """Another process commits: under its exclusive lock the file's header already declares the new pages, the
    file is not yet extended. The check waits for the lock and reads a consistent file (before: it read the header
    without a lock and refused a healthy store as "truncated", failing 3 jobs of a 1,000-job 2-worker sweep)."""
    import threading

    db = _copy(mlflow_template, tmp_path / "m.db")
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("begin exclusive")
    with open(db, "r+b") as f:
        f.seek(28)
        declared = f.read(4)
        f.seek(28)
        f.write((int.from_bytes(declared, "big") + 8).to_bytes(4, "big"))  # the mid-commit state: 8 pages ahead

    def commit() -> None:
        time.sleep(0.3)
        with open(db, "r+b") as f:  # the commit completes: the header and the file agree again
            f.seek(28)
            f.write(declared)
        writer.close()

    done = threading.Thread(target=commit)
    done.start()
    try:
        tracking.check_store(f"sqlite:///{db}", timeout=10)
    finally:
        done.join()


def test_foreign_database_is_left_untouched(tmp_path: Path) -> None:
    """A user's own SQLite database silently received MLflow's 60-odd tables; now it is refused, byte for byte
    unchanged, by the pre-flight check and by the Tracker itself (a job run without the CLI)."""
    db = tmp_path / "mine.db"
    con = sqlite3.connect(db)
    con.execute("create table my_data (a int, b text)")
    con.execute("insert into my_data values (1, 'precious')")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(TrackingError, match="not an MLflow store .tables: my_data."):
        tracking.check_store(f"sqlite:///{db}")
    with pytest.raises(TrackingError, match="not an MLflow store"):
        tracking.Tracker(f"sqlite:///{db}", "x")
    assert db.read_bytes() == before


@pytest.mark.parametrize("uri, expected", [
    ("sqlite://", "in-memory store"),
    ("sqlite:///:memory:", "in-memory store"),
    ("ftp://127.0.0.1/x", "is not supported"),
    ("databricks", "is not supported"),
    ("mysql://u:p@127.0.0.1:1/db", "driver is not installed"),
])
def test_unusable_uris_refused(uri: str, expected: str) -> None:
    with pytest.raises(TrackingError) as err:
        tracking.check_store(uri)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert ":p@" not in str(err.value), "no password in messages"


def test_bounded_http_retries() -> None:
    """MLflow's defaults retry a dead server for ~4 minutes per call; nnlab bounds them (unless the user set them)."""
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 2
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 20


def test_dead_server_fails_once_then_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After one call found the server gone, every later call to it fails at once with the same line."""
    uri = "http://127.0.0.1:9"
    monkeypatch.setattr(tracking, "_UNREACHABLE", {})
    calls = []

    def refused() -> None:
        calls.append(1)
        raise ConnectionError("API request failed: Max retries exceeded (Caused by NewConnectionError: "
                              "[Errno 111] Connection refused)")

    with pytest.raises(TrackingError, match=r"MLflow server http://127.0.0.1:9 went away \(connection refused\)"):
        tracking._retry(refused, "logging metrics", uri)
    with pytest.raises(TrackingError, match="went away"):
        tracking._retry(refused, "ending a run", uri)
    with pytest.raises(TrackingError, match="went away"):
        tracking.Tracker(uri, "x")
    assert len(calls) == 1, "no second attempt at a server known to be gone"


def _unique_violation() -> Exception:
    """The error a losing get-or-create gets: a real SQLite UNIQUE violation, wrapped as SQLAlchemy wraps it."""
    import sqlalchemy.exc

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE datasets (name TEXT, digest TEXT, UNIQUE (name, digest))")
    con.execute("INSERT INTO datasets VALUES ('moons', 'abc')")
    try:
        con.execute("INSERT INTO datasets VALUES ('moons', 'abc')")
    except sqlite3.IntegrityError as exc:
        return sqlalchemy.exc.IntegrityError("INSERT INTO datasets ...", {}, exc)
    raise AssertionError("SQLite accepted a duplicate")


def test_dataset_logged_by_two_jobs_at_once_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs logging the same new dataset at once: MLflow looks it up, finds none in both, and the second insert
    violates the unique constraint (a 52-job joblib sweep lost a run to it). The rolled-back call is retried and
    finds the row the other job inserted; any other call that violates a constraint still fails at once."""
    from src import data

    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    tr = tracking.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "race")
    ds = data.make("moons", n_samples=60, seed=0)
    path = tmp_path / "moons.npz"
    path.write_bytes(b"x")
    dataset = tracking.dataset_input(ds, path)
    first, second = tr.start_run("a"), tr.start_run("b")
    tr.log_dataset(first, dataset)  # the job that won the race
    real, calls = tr.client.log_inputs, []

    def lost_the_race(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise _unique_violation()
        return real(*a, **k)

    monkeypatch.setattr(tr.client, "log_inputs", lost_the_race)
    tr.log_dataset(second, dataset)
    assert len(calls) == 2
    inputs = tr.client.get_run(second).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [(dataset.dataset.name, dataset.dataset.digest)]
    calls.clear()
    with pytest.raises(TrackingError, match="logging params failed: .*UNIQUE constraint failed"):
        tracking._retry(lambda: lost_the_race(), "logging params", tr.uri)
    assert len(calls) == 1, "a constraint violation elsewhere is a bug to report, not a race to retry"
