"""The one module that talks to MLflow.

Why it is written against `MlflowClient` rather than the fluent `mlflow.start_run()` API:
- runs are created and ended explicitly, so a job that fails, diverges or is interrupted ends its run as
  FAILED / FINISHED(+status tag) / KILLED instead of leaving it RUNNING forever;
- a parent run per sweep is created once in the launching process (which also creates the SQLite store:
  a brand-new store hit by several processes at once breaks during its schema migration), and children
  only need the `mlflow.parentRunId` tag to nest under it in the UI;
- every metric goes through `log_batch` in chunks of MLflow's request limits (1000 metrics, 100 params,
  100 tags): one call per step costs ~3 ms on SQLite and ~50 ms over HTTP.
- a busy store (SQLite "database is locked", an HTTP 5xx) is retried with back-off before giving up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from src.lab import signals

ROOT = Path(__file__).resolve().parents[2]  # the project folder
PARENT_FILE = ".nnlab_parent_run"
T = TypeVar("T")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Against an mlflow server, MLflow prints two "View run/experiment at" lines for every run it ends, and fetches the
# run once more to do so (an extra HTTP round trip per job); each job prints its own summary line instead.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line and names the URI."""


def default_uri() -> str:
    """`sqlite:///<project root>/mlflow.db`: absolute, so Hydra or DVC working directories never scatter stores."""
    return f"sqlite:///{ROOT / 'mlflow.db'}"


def resolve_uri(configured: str | None = None) -> str:
    """The config's `tracking.uri`, else `$MLFLOW_TRACKING_URI`, else :func:`default_uri`."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def artifact_root(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: `mlruns/<experiment>/` next to a SQLite file (absolute, so the
    working directory of Hydra or DVC never matters); an mlflow server's own choice otherwise."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
        return (db.parent / "mlruns" / safe).resolve().as_uri()
    return None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:` URI (None for an in-memory store or another scheme)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite://"):].split("?", 1)[0]  # sqlite:///rel.db -> "/rel.db"; sqlite:////abs.db -> "//abs.db"
    path = rest[1:] if rest.startswith("/") else rest
    return Path(path) if path and path != ":memory:" else None


def _creates_store(uri: str) -> bool:
    p = _sqlite_path(uri)
    return p is not None and (not p.exists() or p.stat().st_size == 0)


def _retry(fn: Callable[[], T], what: str, uri: str, attempts: int = 6) -> T:
    """Call `fn`, retrying on a busy/unavailable store with exponential back-off (0.2 s .. 6.4 s)."""
    delay = 0.2
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; we classify by message
            msg = str(exc)
            transient = any(s in msg.lower() for s in ("locked", "busy", "temporarily", "503", "502", "timed out"))
            if not transient or i == attempts - 1:
                first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
                raise TrackingError(f"MLflow store {uri}: {what} failed: {first}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _chunks(items: Sequence[T], n: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.lr": "0.01", ...} (MLflow params are strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


class Tracker:
    """A thin handle on one tracking store and one experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        with signals.deferred(_creates_store(uri)):
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = _retry(lambda: self._ensure_experiment(experiment), "opening the experiment", uri)

    def _ensure_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root(self.uri, name))
        except Exception:  # noqa: BLE001 - another process created it between our get and create
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # --- runs -----------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, str] | None = None, parent_id: str | None = None) -> str:
        all_tags = {"mlflow.runName": name, **(tags or {})}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = _retry(lambda: self.client.create_run(self.experiment_id, tags=all_tags, run_name=name),
                     "creating a run", self.uri)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status), f"ending run {run_id}", self.uri)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, 100):
            _retry(lambda c=chunk: self.client.log_batch(run_id, tags=list(c)), "logging tags", self.uri)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for chunk in _chunks(items, 100):
            _retry(lambda c=chunk: self.client.log_batch(run_id, params=list(c)), "logging params", self.uri)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Scalars at one step; non-finite values are skipped (MLflow stores NaN, but the UI charts choke)."""
        self.log_series(run_id, {k: ([step], [v]) for k, v in metrics.items()})

    def log_series(self, run_id: str, series: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> int:
        """Whole curves {name: (steps, values)} in batches of 1000 points; returns the number of points logged."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, int(s)) for k, (steps, vals) in series.items()
                 for s, v in zip(steps, vals, strict=True) if np.isfinite(v)]
        for chunk in _chunks(items, 1000):
            _retry(lambda c=chunk: self.client.log_batch(run_id, metrics=list(c)), "logging metrics", self.uri)
        return len(items)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
        _retry(lambda: self.client.log_artifacts(run_id, str(local_dir), artifact_path),
               "logging artifacts", self.uri)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(run_id, str(path), artifact_path), "logging an artifact", self.uri)

    def log_table(self, run_id: str, columns: dict[str, list[Any]], artifact_file: str) -> None:
        """A table the MLflow UI renders (and `mlflow.load_table` reads back), e.g. a sweep's leaderboard."""
        _retry(lambda: self.client.log_table(run_id, data=columns, artifact_file=artifact_file),
               "logging a table", self.uri)

    def get_run(self, run_id: str) -> Any:
        return _retry(lambda: self.client.get_run(run_id), f"reading run {run_id}", self.uri)

    def search_runs(self, filter_string: str = "", max_results: int = 5000) -> list[Any]:
        return _retry(lambda: self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                                      max_results=max_results), "searching runs", self.uri)


def check_reachable(uri: str, timeout: float = 5.0, busy_wait: float = 60.0) -> None:
    """Fail fast, in one line, when an http(s) tracking server does not answer (MLflow itself retries for minutes).

    A refused connection or a bad address fails at once. A server that accepts the connection but is slow to
    answer is busy, not dead (measured: a PostgreSQL-backed server with 4 launchers logging into it on 2 cores
    took > 5 s to answer `/health`, and the 5th launch failed its pre-flight), so it is asked again for up to
    `busy_wait` seconds before giving up.
    """
    if not uri.startswith(("http://", "https://")):
        if uri.startswith("file:") or "://" not in uri and not uri.startswith("sqlite"):
            raise TrackingError(f"tracking URI {uri!r} is not supported; valid: sqlite:///path/to/mlflow.db, "
                                "http(s)://host:port of an mlflow server, or another SQL database URI")
        _check_sqlite(uri)
        return
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + busy_wait
    while True:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:  # noqa: S310
                if r.status != 200:
                    raise TrackingError(f"MLflow server {uri} answered /health with HTTP {r.status}")
                return
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                if time.monotonic() < deadline:
                    continue  # accepted but slow: busy
                raise TrackingError(f"MLflow server {uri} accepted connections but did not answer /health within "
                                    f"{busy_wait:.0f} s; check its log and load") from exc
            raise TrackingError(f"MLflow server {uri} cannot be reached ({reason}); start it with "
                                f"`mlflow server --host 127.0.0.1` or unset MLFLOW_TRACKING_URI") from exc


def _check_sqlite(uri: str) -> None:
    """A SQLite store must be a database file (or not exist yet) in an existing, writable folder.

    Why: MLflow silently creates every missing parent folder, so a typo in the path would start a new, empty
    store somewhere else; a directory or a non-database file would only fail inside the first job.
    """
    p = _sqlite_path(uri)
    if p is None:
        return
    hint = "fix tracking.uri / MLFLOW_TRACKING_URI"
    if p.is_dir():
        raise TrackingError(f"tracking URI {uri!r} names a folder, not a database file; {hint}")
    if not p.parent.is_dir():
        raise TrackingError(f"tracking URI {uri!r}: folder {str(p.parent)!r} does not exist; create it or {hint}")
    if not os.access(p.parent, os.W_OK):
        raise TrackingError(f"tracking URI {uri!r}: folder {str(p.parent)!r} is not writable; {hint}")
    if p.is_file() and p.stat().st_size > 0:
        with open(p, "rb") as f:
            head = f.read(16)
        if head != b"SQLite format 3\x00":
            raise TrackingError(f"tracking URI {uri!r}: {str(p)!r} is not an SQLite database; {hint}")
