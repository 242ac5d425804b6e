"""`src/lab/fork_launcher.py` below the sweep (the sweeps themselves: tests/test_launchers.py, the faults:
tests/test_robustness_interrupt.py): a forked job opens its own database connections, and where fork is not
available the launcher is Hydra's joblib one."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from src.lab import fork_launcher


def _child(uri: str, conn) -> None:  # noqa: ANN001
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    fork_launcher.fresh_database_connections()
    engine = SqlAlchemyStore._engine_map[uri]
    inherited = engine.pool.checkedin()  # the launcher's idle connection, if it was not dropped
    store = SqlAlchemyStore(uri, "/tmp/unused-artifacts")
    conn.send((inherited, [e.name for e in store.search_experiments()]))


@pytest.mark.skipif(not fork_launcher.forking(), reason="jobs are forked only on Linux")
def test_a_forked_job_opens_its_own_database_connection(tmp_path: Path, mlflow_template: Path) -> None:
    """The launcher's pooled SQLite connection stays the launcher's: the child starts with none (SQLite's locks
    belong to the process that took them) and opens its own; the launcher's still works after the child's exit."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = tmp_path / "m.db"
    shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
    store.create_experiment("launcher")
    assert SqlAlchemyStore._engine_map[uri].pool.checkedin() >= 1  # an idle connection the child would inherit
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(uri, send))
    proc.start()
    inherited, names = receive.recv()
    proc.join()
    assert proc.exitcode == 0 and inherited == 0 and "launcher" in names
    store.create_experiment("after the child")
    assert {e.name for e in store.search_experiments()} >= {"launcher", "after the child"}


def test_without_fork_it_is_the_joblib_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    # the class it inherits from (Hydra's plugin scan may have imported the joblib launcher's module again since)
    monkeypatch.setattr(fork_launcher.JoblibLauncher, "launch",
                        lambda self, jobs, initial_job_idx: calls.append(jobs) or ["ok"])
    monkeypatch.setattr(fork_launcher, "forking", lambda: False)
    launcher = fork_launcher.ForkLauncher(n_jobs=2)
    assert launcher.launch([["a=1"], ["a=2"]], initial_job_idx=0) == ["ok"] and calls == [[["a=1"], ["a=2"]]]


def test_a_signal_death_is_named_as_loky_names_it() -> None:
    assert fork_launcher._exit_code(-9) == "SIGKILL(-9)"
    assert fork_launcher._exit_code(3) == "exit code 3"


def test_before_forking_the_task_preloads_and_the_heap_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task module's `preload(config)` runs once in the launcher, then `gc.freeze()` keeps the launcher's objects
    out of the jobs' collections (which would copy their pages into every job)."""
    import gc
    import sys
    import types

    seen = []
    module = types.ModuleType("nnlab_fake_task")
    module.preload = seen.append  # type: ignore[attr-defined]

    def task(cfg: object) -> None: ...

    task.__module__ = module.__name__
    monkeypatch.setitem(sys.modules, module.__name__, module)
    launcher = fork_launcher.ForkLauncher(n_jobs=2)
    launcher.task_function, launcher.config = task, {"a": 1}  # type: ignore[assignment]
    before = gc.get_freeze_count()
    try:
        launcher._prepare_to_fork()
        assert seen == [{"a": 1}] and gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("figures, imported", [(["boundary"], True), ([], False)])
def test_train_preloads_matplotlib_only_for_jobs_that_draw(figures: list[str], imported: bool) -> None:
    """`src.train.preload`: pyplot (~0.3 s per job otherwise) only when the sweep's jobs will draw figures."""
    import subprocess
    import sys

    code = ("import sys; from omegaconf import OmegaConf; from src.train import preload; "
            f"preload(OmegaConf.create({{'tracking': {{'enabled': True, 'artifacts': True, 'figures': {figures}}}}})); "
            "print('matplotlib.pyplot' in sys.modules, 'src.lab.job' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == [str(imported), "True"], out.stderr[-2000:]
