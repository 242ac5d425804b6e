"""Shared test setup: `import src` from a plain checkout, and the fixtures many test files need.

- ``data_dir``: every dataset the tests train on, generated once per session into a temporary folder (the
  developer's ``data/`` is never touched);
- ``compose``: the config ``python -m src.train <overrides>`` would run (Hydra's compose API, via the pre-flight's
  own `compose`, so ``study``/``results_dir`` are derived from the preset as in a real run);
- ``mlflow_template``: an empty MLflow SQLite store made once per session (creating one runs MLflow's ~60
  migrations, seconds); copy it where a test needs a store;
- ``project``: a throw-away copy of the project (tests/e2e_utils.make_project) with datasets copied in, for the
  end-to-end tests that run real Hydra/MLflow/DVC processes.

One MLflow model-template cache (src/lab/model_writer.py) per test session, shared by the xdist workers and the
processes the tests start, removed at the end: never the developer's own cache folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SESSION_CACHE = "NNLAB_TEST_SESSION_CACHE"  # set by the controller; xdist workers inherit it
_CACHE_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(SESSION_CACHE):  # an xdist worker: the controller made the session's cache
        os.environ["NNLAB_CACHE_DIR"] = os.environ[SESSION_CACHE]
        return
    folder = tempfile.mkdtemp(prefix="nnlab-test-cache-")
    os.environ["NNLAB_CACHE_DIR"] = os.environ[SESSION_CACHE] = folder
    config.stash[_CACHE_KEY] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_CACHE_KEY, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)

DATASETS = ("moons", "circles", "xor", "circles_course", "moons_course", "moons_noisy", "digits")


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Every test ends with the Ctrl-C/SIGTERM handlers it started with. Why: an in-process test of the
    interrupt machinery can leave `src.lab.signals.ignore` installed (a handler acts once), and a later test in
    the same process (pytest-xdist deals tests to workers in a different order each run) then never sees its
    KeyboardInterrupt."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The datasets the tests use (npz + json card + png), made once per session with the default seed."""
    from src import data

    d = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        data.save(data.make(name, seed=0), d)
    return d


@pytest.fixture(scope="session")
def compose() -> Callable[[list[str]], Any]:
    """`compose(overrides)` -> the DictConfig of `python -m src.train <overrides>` (with Hydra's node)."""
    from src.lab.preflight import compose as compose_config

    return compose_config


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Callable[..., Path]:
    """`project(name, datasets=("moons",), **make_project_kwargs)` -> a fresh project copy with those datasets
    in its data/ (copied from the session's files, not regenerated)."""
    from e2e_utils import make_project

    def make(name: str, datasets: tuple[str, ...] = ("moons",), **kwargs: Any) -> Path:
        kwargs.setdefault("git", False)
        repo = make_project(tmp_path_factory.mktemp(name) / "p", **kwargs)
        (repo / "data").mkdir(exist_ok=True)
        for ds in datasets:
            for ext in ("npz", "json", "png"):
                shutil.copy(data_dir / f"{ds}.{ext}", repo / "data" / f"{ds}.{ext}")
        return repo

    return make


@pytest.fixture(scope="session")
def tracked_sweep(project: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real, tiny sweep of a registered study (s3_optim: sgd and adam, 2 seeds, 20 epochs) in a git-versioned
    project copy, logged to its own SQLite store: what the MLflow tests (tests/test_mlflow_*.py) look at.
    A non-swept override with 17 digits (train.lr) checks how run names round numbers."""
    from types import SimpleNamespace

    from e2e_utils import env_for, py

    repo = project("tracked", git=True)
    sweep = tmp_path_factory.mktemp("tracked_sweep")
    proc = py(["-m", "src.train", "-m", "experiment=s3_optim", "hydra.sweeper.params.optimizer='sgd,adam'",
               "train.epochs=20", "train.seeds=2", "train.lr=0.05411695265464637", f"hydra.sweep.dir={sweep}"],
              repo, timeout=600)
    return SimpleNamespace(repo=repo, uri=env_for(repo)["MLFLOW_TRACKING_URI"], sweep=sweep, stdout=proc.stdout,
                           stderr=proc.stderr)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, complete MLflow SQLite store (copy it: never write to this one)."""
    from src.lab.tracking import ensure_store

    db = tmp_path_factory.mktemp("mlflow_template") / "template.db"
    ensure_store(f"sqlite:///{db}")
    return db
