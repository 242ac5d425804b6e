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

What a run carries, so that the places MLflow users look first are filled (README "MLflow"):
- its experiment is tagged as model training (`mlflow.experimentKind=custom_model_development`) and described by
  the study's claim (`mlflow.note.content`, passed down by the CLI: the lab knows no studies);
- MLflow's standard source tags (`mlflow.source.name/type/git.commit/git.branch`, `mlflow.user`), as
  `mlflow.start_run` would set them: the UI's Source column and its commit link;
- its dataset as a run input (`log_inputs`: name, digest = the first 12 hex digits of nnlab's sha256 of the
  arrays, source = the .npz file, profile = split sizes, classes, transform and the full sha256): the UI's
  Dataset column says what trained the run;
- its net as an MLflow model (a LoggedModel named `model`: pyfunc, signature, input example, NumPy-only
  requirements; src/lab/model_writer.py), linked as the run's output, with the final metrics attached.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from src.lab import signals

ROOT = Path(__file__).resolve().parents[2]  # the project folder
PARENT_FILE = ".nnlab_parent_run"
KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"
MODEL_NAME = "model"  # a run's model: runs:/<run id>/model
DIGEST_CHARS = 12  # MLflow keeps at most 36 characters of a dataset digest; its own digests are 8
PARENT_RUN_ENV = "NNLAB_PARENT_RUN_ID"  # set by the sweep's launcher for its workers, with SWEEP_DIR_ENV
SWEEP_DIR_ENV = "NNLAB_SWEEP_DIR"
T = TypeVar("T")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Against an mlflow server, MLflow prints two "View run/experiment at" lines for every run it ends, and fetches the
# run once more to do so (an extra HTTP round trip per job); each job prints its own summary line instead.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no "Downloading artifacts" bars per run
# MLflow's own HTTP retries default to 7 attempts with a backoff factor of 2 and a 120 s timeout: about 4 minutes per
# call to a dead server (measured), so a sweep whose server went away took ~25 minutes to fail. nnlab's bound: 2
# retries (backoff 0 s, 2 s), 20 s per attempt; set the variables yourself to override (e.g. a rate-limited server).
HTTP_RETRY_POLICY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
for _k, _v in HTTP_RETRY_POLICY.items():
    os.environ.setdefault(_k, _v)


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line and names the URI."""


def project_root() -> Path:
    """The project folder whose `mlflow.db` runs go to.

    Why not always ROOT: `dvc exp run --queue`/`--temp` runs a copy of the repository in
    `<repo>/.dvc/tmp/exps/<tmp>/` and deletes it afterwards; runs logged there would vanish with it. DVC names
    the original repository in `DVC_ROOT`; without it the part of the path before `.dvc/tmp/exps` is used.
    """
    parts = ROOT.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            repo = Path(os.environ.get("DVC_ROOT") or Path(*parts[:i]))
            return repo.joinpath(*parts[i + 4:])
    return ROOT


def default_uri() -> str:
    """`sqlite:///<project root>/mlflow.db`: absolute, so Hydra or DVC working directories never scatter stores."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


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
    return Path(path) if path and path != ":memory:" and not path.startswith("file::memory:") else None


def _is_in_memory(uri: str) -> bool:
    return uri.startswith("sqlite:") and (_sqlite_path(uri) is None or "mode=memory" in uri)


# ------------------------------------------------------------------------------------------- store creation
def ensure_store(uri: str) -> None:
    """Create a new SQLite store once and atomically, however many processes start at the same instant.

    Why: MLflow builds a new SQLite store by running ~60 schema migrations on the file in place. Two processes
    doing that at once fail ("table experiments already exists", "duplicate column name: step": measured, every
    second launch of a race lost its jobs) and a creation cut short (a full disk, a kill) leaves a half-migrated
    file that no later open can fix. So: under an exclusive lock file next to the database (`.<name>.lock`, left
    in place), the first process builds the store in a temp file in the same folder and renames it into place;
    the others wait, see a complete store and just open it. A failure leaves no file at the target at all, and
    the message says what to free or fix. (MLflow 3.17 has a file lock for this, `_safe_initialize_tables`, but
    its SQLAlchemy store does not call it.) Other schemes: the server or the database creates its own schema.
    """
    path = _sqlite_path(uri)
    if path is None or (path.exists() and path.stat().st_size > 0):
        return
    from src.files import locked

    with locked(path.with_name(f".{path.name}.lock")):
        if path.exists() and path.stat().st_size > 0:  # another process created it while we waited
            return
        _remove_stale_temp_stores(path)
        tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
        try:
            with signals.deferred():  # Ctrl-C/SIGTERM: finish (or undo) the creation first, then act
                _build_store(tmp, path)
                os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy/alembic/OS errors: one line, nothing left behind
            reason = _first_line(exc)
            if "full" in reason.lower() or "space" in reason.lower() or "too large" in reason.lower():
                reason += "; free some space and run again"
            raise TrackingError(f"could not create the MLflow store {str(path)!r} ({reason}); nothing was left "
                                "at that path") from exc
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
                leftover.unlink(missing_ok=True)


def _build_store(tmp: Path, final: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{tmp}", (final.parent / "mlruns").resolve().as_uri())
    store.engine.dispose()


def _remove_stale_temp_stores(path: Path) -> None:
    """Temp stores of creators that died (SIGKILL) before renaming or removing them; called under the lock."""
    import psutil

    for old in path.parent.glob(f".{path.name}.new-*"):
        pid = old.name.rsplit("-", 1)[-1].removesuffix("-journal")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            old.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -------------------------------------------------------------------------------------------- retry policy
_UNREACHABLE: dict[str, str] = {}  # uri -> the message: a target that went away fails every later call at once
_CONNECTION_LOST = ("max retries exceeded", "connection refused", "failed to establish", "connection aborted",
                    "name or service not known", "read timed out", "connect timeout", "remote end closed")


def _retry(fn: Callable[[], T], what: str, uri: str, attempts: int = 6, races: bool = False) -> T:
    """Call `fn`; retry a busy SQLite store ("database is locked") with back-off (0.2 s .. 6.4 s).

    Over HTTP MLflow has already retried (bounded by HTTP_RETRY_POLICY): a connection that still fails means the
    server is gone, so the process remembers it and every later call to it fails at once with the same line.

    Each call runs with Ctrl-C/SIGTERM held (acted on right after it; off the main thread, as in loky's, there is
    nothing to hold) unless the store is a server: a KeyboardInterrupt inside a database write leaves its
    transaction open and the SQLite store locked for every other process (see :mod:`src.lab.signals`).

    `races=True` also retries a unique-constraint violation, for MLflow calls that get-or-create a shared row
    (a dataset is looked up, then inserted, in one transaction): two processes logging the same new dataset at
    once both find none and the second insert fails (SQLite "UNIQUE constraint failed", PostgreSQL "violates unique
    constraint"), rolled back whole; on the retry the row exists and is reused. Seen in a 52-job joblib sweep.
    """
    if uri in _UNREACHABLE:
        raise TrackingError(_UNREACHABLE[uri])
    http = uri.startswith(("http://", "https://"))
    delay = 0.2
    for i in range(attempts):
        try:
            with signals.deferred(active=not http):
                return fn()
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; we classify by message
            msg = _first_line(exc)
            low = msg.lower()
            if http and any(s in low for s in _CONNECTION_LOST):
                why = "connection refused" if "refused" in low else "no answer" if "timed out" in low else msg[:120]
                _UNREACHABLE[uri] = (f"MLflow server {uri} went away ({why}); start it again, then re-run with "
                                     "resume=true")
                raise TrackingError(_UNREACHABLE[uri]) from exc
            transient = ((not http and any(s in low for s in ("database is locked", "busy")))
                         or (races and "unique constraint" in low))
            if not transient or i == attempts - 1:
                raise TrackingError(f"MLflow store {uri}: {what} failed: {msg}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _chunks(items: Sequence[T], n: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


HOST_TAG, PID_TAG, PID_START_TAG = "nnlab.host", "nnlab.pid", "nnlab.pid_started"


def process_tags() -> dict[str, str]:
    """This process as run tags: host name, pid and the pid's start time (a pid can be reused later)."""
    import socket

    import psutil

    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_START_TAG: f"{psutil.Process().create_time():.2f}"}


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


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's standard source tags, the ones `mlflow.start_run` sets: entry point, LOCAL, user, git commit,
    branch and remote. Computed once per process (four `git` calls, ~20 ms)."""
    entry = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else ROOT / "src" / "train.py"
    try:
        name = str(entry.relative_to(ROOT))
    except ValueError:
        name = str(entry)
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": name}
    with contextlib.suppress(KeyError, OSError):  # no user name in some containers
        tags["mlflow.user"] = getpass.getuser()
    for tag, args in (("mlflow.source.git.commit", ("rev-parse", "HEAD")),
                      ("mlflow.source.git.branch", ("rev-parse", "--abbrev-ref", "HEAD")),
                      ("mlflow.source.git.repoURL", ("config", "--get", "remote.origin.url"))):
        if value := _git(*args):
            tags[tag] = value
    return tags


_DESCRIBE: list[Callable[[str], str | None]] = []


def describe_studies_with(describe: Callable[[str], str | None]) -> None:
    """Register how a study name becomes its experiment's description (the CLI passes the studies' claims:
    the lab itself knows no studies)."""
    _DESCRIBE[:] = [describe]


def description_for(study: str) -> str | None:
    """The registered description of `study` (None: none registered, or the study is not a registered one)."""
    if not _DESCRIBE:
        return None
    try:
        return _DESCRIBE[0](study)
    except Exception:  # noqa: BLE001 - a description is never worth failing a sweep over
        return None


@functools.cache
def model_writer() -> Any:
    """This process's :class:`src.lab.model_writer.ModelWriter` (its templates are reused by every run)."""
    from src.lab.model_writer import ModelWriter

    return ModelWriter()


def dataset_input(ds: Any, path: str | Path, context: str = "training") -> Any:
    """The MLflow `DatasetInput` of dataset `ds` read from `path` (cached: one per dataset and file per process).

    Name = the dataset's name; digest = the first DIGEST_CHARS hex digits of nnlab's sha256 (`ds.digest()`, also
    the run tag `nnlab.dataset_hash`); source = the absolute file; schema = MLflow's tensor spec of the training
    features and labels; profile = split sizes, features, classes, class balance, transform and the full sha256.
    """
    key = (ds.digest(), str(Path(path).resolve()), context)
    if key not in _DATASET_INPUTS:
        _DATASET_INPUTS[key] = _dataset_input(*key, ds)
    return _DATASET_INPUTS[key]


_DATASET_INPUTS: dict[tuple[str, str, str], Any] = {}


def _dataset_input(digest: str, path: str, context: str, ds: Any) -> Any:
    import mlflow.data
    from mlflow.entities import Dataset, DatasetInput, InputTag

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": MLflow registers file paths twice
        warnings.simplefilter("ignore", UserWarning)
        numpy_ds = mlflow.data.from_numpy(ds.X_train, targets=ds.y_train, source=path, name=ds.name,
                                          digest=digest[:DIGEST_CHARS])
    card = ds.card
    profile = {"sha256": digest, "rows": {s: int(len(getattr(ds, f"y_{s}"))) for s in ("train", "val", "test")},
               "features": int(ds.n_features), "classes": int(ds.n_classes),
               "class_counts_train": [int(c) for c in np.bincount(ds.y_train, minlength=ds.n_classes)],
               "transform": card.get("transform"), "seed": card.get("seed")}
    d = numpy_ds.to_dict()
    entity = Dataset(name=d["name"], digest=d["digest"], source_type=d["source_type"], source=d["source"],
                     schema=d.get("schema"), profile=json.dumps(profile, default=str))
    return DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", context)])


def ui_hint(uri: str, experiment_id: str) -> str:
    """How to look at an experiment: the `mlflow ui` command for this store and the URL of its runs table.

    Why `?workflowType=machine_learning` in the URL: MLflow 3.17's UI chooses between its GenAI view (an empty
    Traces page for nnlab's experiments) and the model-training view (the runs table) from that URL parameter or
    from its sidebar switch, whatever the experiment's `mlflow.experimentKind` tag says (tests/test_mlflow_ui.py).
    """
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/{page}"
    db = _sqlite_path(uri)
    if db is not None and db.resolve() == (Path.cwd() / "mlflow.db").resolve():
        cmd = "mlflow ui"
    else:
        cmd = f"mlflow ui --backend-store-uri {uri}"
    return f"{cmd}, then open http://127.0.0.1:5000/{page}"


class Tracker:
    """A thin handle on one tracking store and one experiment.

    `description` (the study's claim) becomes the experiment's description; every experiment nnlab opens is
    tagged as model training, whichever process opens it first (the tag costs one write, once per experiment).
    """

    def __init__(self, uri: str, experiment: str, description: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment = experiment
        if uri in _UNREACHABLE:
            raise TrackingError(_UNREACHABLE[uri])
        if uri.startswith("sqlite:"):
            _check_sqlite(uri)  # never let MLflow add its tables to a foreign or broken file
        ensure_store(uri)  # a new SQLite store: created once, atomically, whoever else starts now
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = _retry(lambda: self._ensure_experiment(experiment, description),
                                    "opening the experiment", uri)

    def _ensure_experiment(self, name: str, description: str | None) -> str:
        wanted = {KIND_TAG: MODEL_TRAINING, **({NOTE_TAG: description} if description else {})}
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifact_root(self.uri, name),
                                                     tags=wanted)
            except Exception:  # noqa: BLE001 - another process created it between our get and create
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        for key, value in wanted.items():
            if exp.tags.get(key) != value:
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    # --- runs -----------------------------------------------------------------------------------
    def held(self) -> contextlib.AbstractContextManager[None]:
        """Hold Ctrl-C/SIGTERM across store calls whose results belong together, e.g. creating a run and keeping
        its id: each call alone holds a signal only until it returns (:func:`_retry`), so an interrupt during
        `create_run` was raised as the id came back and the run stayed RUNNING, nameless to its job. Local stores
        only, as in :func:`_retry` (a server's call may wait out its HTTP retries)."""
        return signals.deferred(active=not self.uri.startswith(("http://", "https://")))

    def start_run(self, name: str, tags: Mapping[str, str] | None = None, parent_id: str | None = None) -> str:
        """A new RUNNING run with MLflow's source tags (:func:`source_tags`), `tags`, its parent if any, and the
        process that owns it (host, pid, its start time): a later launch ends it KILLED if that process died without
        ending it (:meth:`end_orphaned_runs`)."""
        all_tags = {**source_tags(), "mlflow.runName": name, **process_tags(), **(tags or {})}
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

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0, model_id: str | None = None
                    ) -> None:
        """Scalars at one step; non-finite values are skipped (MLflow stores NaN, but the UI charts choke).
        With `model_id`, the metrics also belong to that logged model (its row in the UI's Models tab)."""
        self.log_series(run_id, {k: ([step], [v]) for k, v in metrics.items()}, model_id=model_id)

    def log_series(self, run_id: str, series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                   model_id: str | None = None) -> int:
        """Whole curves {name: (steps, values)} in batches of 1000 points; returns the number of points logged."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, int(s), model_id=model_id) for k, (steps, vals) in series.items()
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

    def log_dataset(self, run_id: str, dataset: Any) -> None:
        """`dataset` (from :func:`dataset_input`) as the run's training input: the UI's Dataset column."""
        _retry(lambda: self.client.log_inputs(run_id, datasets=[dataset]), "logging the dataset", self.uri, races=True)

    def log_model(self, run_id: str, net: Any, finite: np.ndarray, example: np.ndarray,
                  params: Mapping[str, Any] | None = None, step: int = 0) -> str:
        """The run's net as an MLflow model (`runs:/<run id>/model`, also `models:/<model id>`); its model id.

        MLflow 3's model record: a LoggedModel of this experiment whose source is the run, listed as the run's
        output (the UI's Models column; a run without one counts as an evaluation run). Costs three writes to
        the store and two file uploads per run (README "Speed"); the folder comes from :func:`model_writer`.
        """
        from mlflow.entities import LoggedModelOutput

        model = _retry(lambda: self.client.create_logged_model(
            self.experiment_id, name=MODEL_NAME, source_run_id=run_id, model_type="nnlab-mlp",
            params={k: str(v)[:6000] for k, v in (params or {}).items()}), "creating the model", self.uri)
        try:
            with model_writer().files(net, finite, example, run_id, model.model_id, model.artifact_location
                                      ) as (shared, own):
                for folder in (shared, own):
                    _retry(lambda f=folder: self.client.log_model_artifacts(model.model_id, str(f)),
                           "uploading the model", self.uri)
        except BaseException:
            with contextlib.suppress(Exception):  # the original error matters more
                self.client.finalize_logged_model(model.model_id, "FAILED")
            raise
        _retry(lambda: self.client.finalize_logged_model(model.model_id, "READY"), "finalizing the model", self.uri)
        _retry(lambda: self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=int(step))]),
               "linking the model to its run", self.uri)
        return model.model_id

    def end_orphaned_runs(self) -> int:
        """End KILLED every RUNNING run of this experiment whose process, on this host, is gone; return how many.

        Why: SIGKILL (or the OOM killer) of a launcher or a worker leaves its runs RUNNING forever (measured: the
        parent and two children stayed RUNNING, even after a resume). A run is an orphan when it carries this
        host's name and its pid is not alive, or is alive but started at another time (a reused pid). Runs of
        other hosts, or without the tags (older nnlab), are left alone: their process cannot be checked from here.
        """
        import socket

        import psutil

        host, n = socket.gethostname(), 0
        for run in self.search_runs("attributes.status = 'RUNNING'"):
            tags = run.data.tags
            if tags.get(HOST_TAG) != host or not str(tags.get(PID_TAG, "")).isdigit():
                continue
            pid, started = int(tags[PID_TAG]), tags.get(PID_START_TAG)
            try:
                proc = psutil.Process(pid) if psutil.pid_exists(pid) else None
                # a zombie is dead: a SIGKILLed launcher's workers are reparented to a PID 1 that may never reap them
                if proc and proc.status() != psutil.STATUS_ZOMBIE and f"{proc.create_time():.2f}" == started:
                    continue
            except psutil.Error:
                pass
            self.set_tags(run.info.run_id, {"nnlab.status": "killed", "nnlab.error": f"process {pid} on {host} "
                                            "ended without ending this run (SIGKILL?); ended by a later launch"})
            self.end_run(run.info.run_id, "KILLED")
            n += 1
        return n

    def get_run(self, run_id: str) -> Any:
        return _retry(lambda: self.client.get_run(run_id), f"reading run {run_id}", self.uri)

    def search_runs(self, filter_string: str = "", max_results: int = 5000) -> list[Any]:
        return _retry(lambda: self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                                      max_results=max_results), "searching runs", self.uri)


def log_folder_run(experiment: str, name: str, folder: Path, params: Mapping[str, Any],
                   metrics: Mapping[str, Any], ok: bool, description: str | None = None, uri: str | None = None
                   ) -> tuple[Tracker, str]:
    """One finished run for a measurement without a Hydra grid (the measured studies): its params, the numeric
    `metrics`, and every file of `folder` as artifacts; FINISHED if `ok`, else FAILED. Returns (tracker, run id)."""
    tracker = Tracker(resolve_uri(uri), experiment, description=description)
    tags = {"nnlab.study": experiment, "nnlab.status": "finished" if ok else "failed"}
    if os.environ.get("DVC_EXP_NAME"):
        tags["nnlab.dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    run_id = None
    try:
        with tracker.held():
            run_id = tracker.start_run(name, tags)
        tracker.log_params(run_id, params)
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)}
        tracker.log_metrics(run_id, numbers)
        tracker.log_artifacts(run_id, folder)
    except BaseException as exc:
        if run_id is not None:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            with contextlib.suppress(Exception):
                tracker.set_tags(run_id, {"nnlab.status": status.lower()})
                tracker.end_run(run_id, status)
        raise
    tracker.end_run(run_id, "FINISHED" if ok else "FAILED")
    return tracker, run_id


def register_best(uri: str, experiment: str, name: str, metric: str = "val_acc", alias: str = "best",
                  description: str | None = None) -> tuple[Any, Any]:
    """Register the model of `experiment`'s best run under `name`; point `alias` at the new version.

    Best = the highest `metric` (mean over seeds; by default VALIDATION accuracy: a choice made on test would be
    optimistically biased), ties broken by the lower validation loss, among the FINISHED runs with a model.
    Returns (model version, run). Raises TrackingError (one line) when there is nothing to register.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = _retry(lambda: client.get_experiment_by_name(experiment), "reading the experiment", uri)
    if exp is None:
        raise TrackingError(f"no MLflow experiment {experiment!r} in {uri}; run the study first "
                            f"(python -m src.train -m experiment={experiment}) or name another with --experiment")
    runs = _retry(lambda: client.search_runs(
        [exp.experiment_id], filter_string=f"attributes.status = 'FINISHED' and metrics.{metric} > -1e300",
        order_by=[f"metrics.{metric} DESC", "metrics.val_loss ASC"], max_results=5000), "searching runs", uri)
    best = next((r for r in runs if r.outputs and r.outputs.model_outputs), None)
    if best is None:
        raise TrackingError(f"experiment {experiment!r} has no finished run with a model and a {metric!r} metric "
                            f"({len(runs)} finished runs with the metric); runs log a model unless "
                            "tracking.model=false")
    model_id = best.outputs.model_outputs[-1].model_id
    try:
        client.create_registered_model(name, description=description, tags={"nnlab.study": experiment})
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
        if description:
            client.update_registered_model(name, description=description)
    m = best.data.metrics
    tags = {"nnlab.study": experiment, "nnlab.config": best.info.run_name, "selected_on": metric,
            **{k: f"{m[k]:.4g}" for k in ("val_acc", "test_acc", "test_acc_ci95") if k in m}}
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=best.info.run_id, tags=tags,
                                          model_id=model_id,
                                          description=f"{best.info.run_name}: best {metric} of {experiment!r}")
    client.set_registered_model_alias(name, alias, version.version)
    return version, best


SUPPORTED_URIS = ("sqlite:///path/to/mlflow.db, http(s)://host:port of an mlflow server, or a postgresql/mysql/mssql "
                  "URI whose driver is installed")
_DEEP_CHECK_MAX_BYTES = 1 << 30  # `PRAGMA quick_check` reads the whole file: skipped above 1 GB


def check_store(uri: str, timeout: float = 5.0, busy_wait: float = 60.0) -> None:
    """Refuse, in one line and before any work, a tracking URI that cannot hold this lab's runs.

    Why each check: an in-memory SQLite store "finishes" runs that vanish with the process; `ftp://`, `file:` or a
    bare path are not tracking stores; a database URI without its driver made MLflow retry an import for minutes;
    a dead server made every call retry for minutes; and a corrupt, truncated, locked, foreign, half-created or
    other-version SQLite file otherwise failed with a long traceback inside the first job (or, for a foreign
    database, silently received MLflow's 60-odd tables).
    """
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout, busy_wait)
    elif uri.startswith("sqlite:"):
        _check_sqlite(uri, timeout, deep=True)
    elif uri.split("://", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres", "mysql", "mssql") \
            and "://" in uri:
        _check_database(uri, timeout)
    else:
        raise TrackingError(f"tracking URI {uri!r} is not supported; valid: {SUPPORTED_URIS}")


check_reachable = check_store  # the name the first robustness pass used


def _check_server(uri: str, timeout: float, busy_wait: float) -> None:
    """The server answers `/health`. A refused connection or a bad address fails at once. A server that accepts
    the connection but is slow to answer is busy, not dead (measured: a PostgreSQL-backed server with 4 launchers
    logging into it on 2 cores took > 5 s to answer `/health`, and the 5th launch failed its pre-flight), so it
    is asked again for up to `busy_wait` seconds before giving up."""
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


def _check_database(uri: str, timeout: float) -> None:
    """The SQLAlchemy driver is importable and the database answers within `timeout`."""
    import sqlalchemy

    safe = sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
    try:
        dialect = sqlalchemy.engine.make_url(uri).get_dialect()
        dialect.import_dbapi()
    except Exception as exc:  # noqa: BLE001 - NoSuchModuleError, ImportError
        raise TrackingError(f"tracking URI {safe!r}: its database driver is not installed ({_first_line(exc)}); "
                            "install it (e.g. pip install psycopg2-binary) or use another store") from exc
    args = {"connect_timeout": int(max(1, timeout))} if dialect.name in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - OperationalError & co
        raise TrackingError(f"tracking URI {safe!r}: the database cannot be reached ({_first_line(exc)[:200]})"
                            ) from exc


def _check_sqlite(uri: str, timeout: float = 5.0, deep: bool = False) -> None:
    """A SQLite store: a file (or not yet existing) in an existing, writable folder, and if it exists, a complete,
    readable MLflow store of this MLflow's schema.

    Why: MLflow silently creates every missing parent folder (a typo would start a new, empty store elsewhere); a
    folder or a non-database file only failed inside the first job; a foreign SQLite database silently received
    MLflow's tables. `deep` (the pre-flight check, once per launch) also runs SQLite's `quick_check`.
    """
    hint = "fix tracking.uri / MLFLOW_TRACKING_URI"
    if _is_in_memory(uri):
        raise TrackingError(f"tracking URI {uri!r} is an in-memory store: its runs would vanish when the process "
                            "ends; give a file, e.g. sqlite:///mlflow.db")
    p = _sqlite_path(uri)
    assert p is not None
    if p.is_dir():
        raise TrackingError(f"tracking URI {uri!r} names a folder, not a database file; {hint}")
    if not p.parent.is_dir():
        raise TrackingError(f"tracking URI {uri!r}: folder {str(p.parent)!r} does not exist; create it or {hint}")
    if not os.access(p.parent, os.W_OK):
        raise TrackingError(f"tracking URI {uri!r}: folder {str(p.parent)!r} is not writable; {hint}")
    if not p.is_file() or p.stat().st_size == 0:
        return
    _check_sqlite_file(uri, p, timeout, deep)


def _check_sqlite_file(uri: str, p: Path, timeout: float, deep: bool) -> None:
    import sqlite3

    fix = "restore it from a backup, or point tracking.uri at a new file"
    with open(p, "rb") as f:
        head = f.read(100)
    if head[:16] != b"SQLite format 3\x00":
        raise TrackingError(f"tracking URI {uri!r}: {str(p)!r} is not an SQLite database; fix tracking.uri / "
                            "MLFLOW_TRACKING_URI")
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
        try:
            # The header and the size are read under a read lock: a writer in another process writes its pages
            # (the header's page count among them) under an exclusive lock, and a lock-free look at the header and
            # the size in between saw a "truncated" store (1-3 jobs of a 1,000-job 2-worker sweep, measured).
            con.execute("begin")
            try:
                con.execute("pragma schema_version").fetchone()  # the read lock, held until the transaction ends
            except sqlite3.DatabaseError as exc:  # a truncated file fails here (its schema is cut): say so
                if "locked" not in str(exc):
                    _truncated(p, fix)
                raise
            size = _truncated(p, fix)
            tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
            if deep and size <= _DEEP_CHECK_MAX_BYTES:
                verdict = con.execute("pragma quick_check(1)").fetchone()[0]
                if verdict != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict})")
            revision = (con.execute("select version_num from alembic_version").fetchone() or [None])[0] \
                if "alembic_version" in tables else None
        finally:
            con.close()  # ends the read transaction
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise TrackingError(f"MLflow store {str(p)!r} is locked by another process (waited {timeout:g} s); "
                                "let it finish or stop it, then run again") from exc
        raise TrackingError(f"MLflow store {str(p)!r} cannot be read ({_first_line(exc)}); {fix}") from exc
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"MLflow store {str(p)!r} is corrupt ({_first_line(exc)}); {fix}") from exc
    _check_schema(p, tables, revision)


def _truncated(p: Path, fix: str) -> int:
    """The file's size, refused if it is shorter than the page count its header declares."""
    with open(p, "rb") as f:
        head = f.read(100)
    page_size = int.from_bytes(head[16:18], "big") if len(head) >= 32 else 0
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big") if len(head) >= 32 else 0
    size = p.stat().st_size
    if page_size and pages and size < page_size * pages:
        raise TrackingError(f"MLflow store {str(p)!r} is truncated ({size} of {page_size * pages} bytes); {fix}")
    return size


def _check_schema(p: Path, tables: set[str], revision: str | None) -> None:
    if not tables & {"experiments", "alembic_version"}:
        listed = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise TrackingError(f"{str(p)!r} is an SQLite database but not an MLflow store (tables: {listed}); nnlab "
                            "will not add MLflow's tables to it: point tracking.uri at another file")
    half = [t for t in tables if t.startswith("_alembic_tmp")]
    if half or revision is None or "experiments" not in tables:
        raise TrackingError(f"MLflow store {str(p)!r} is half-created (an interrupted or concurrent first creation"
                            f"{': ' + half[0] if half else ''}); if it holds no runs you need, delete it and run "
                            "again, else restore it from a backup")
    from mlflow import __version__ as mlflow_version

    head = _latest_schema_revision()
    if revision != head:
        raise TrackingError(f"MLflow store {str(p)!r} has schema revision {revision}, mlflow {mlflow_version} "
                            f"expects {head}: if an older MLflow wrote it, back it up and run `mlflow db upgrade "
                            f"sqlite:///{p}`; if a newer one did, use that version")


@functools.cache
def _latest_schema_revision() -> str:
    """The schema revision this MLflow creates and expects (read from its migration scripts: ~50 ms, once)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())
