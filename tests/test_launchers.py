"""Scale-out by config only: each README "Scale out" example runs here on a scratch copy of the project.

- local cores: `hydra/launcher=joblib` (a core dependency) and `hydra/launcher=cores` (jobs forked from the
  launcher, what the presets use);
- SLURM: `hydra/launcher=submitit_slurm` is tested through `submitit_local` (same plugin, local processes;
  `pip install -e '.[slurm]'`), skipped when the plugin is not installed;
- Ray: `hydra/launcher=ray` against a local Ray instance (`pip install -e '.[ray]'` in its own venv: it pins
  cloudpickle<3), skipped when not installed;
- a DVC remote: push to a local-directory remote, delete the cache and the data, pull them back.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from e2e_utils import env_for, make_project, py, run  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SMALL = ["-m", "experiment=smoke", "train.epochs=20", "tracking.artifacts=false"]
BASIC = "hydra/sweeper=basic"  # one job per config, so the launcher really launches three


@pytest.fixture(scope="module")
def repo(project) -> Path:  # noqa: ANN001
    return project("launch")


def _check_sweep(repo: Path, study: str, n: int = 3) -> None:
    rows = list(csv.DictReader((repo / f"results/{study}/runs.csv").read_text().splitlines()))
    assert len(rows) == n, rows
    assert {r["status"] for r in rows} == {"finished"}, rows  # a failed row carries its error
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env_for(repo)["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == n
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)


def test_joblib_local_cores(repo: Path) -> None:
    args = [*SMALL, "study=joblib", "results_dir=results/joblib", "hydra.sweep.dir=multirun/joblib",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", BASIC]
    py(["-m", "src.train", *args], repo, timeout=600)
    _check_sweep(repo, "joblib")


def test_joblib_with_vectorized_sweeper(repo: Path) -> None:
    """Packing happens before launching: 6 configs (2 optimizers x 3 inits) become 2 jobs on 2 workers."""
    args = [*SMALL, "study=vjob", "results_dir=results/vjob", "hydra.sweep.dir=multirun/vjob", "optimizer=sgd,adam",
            "hydra/sweeper=vectorized", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = py(["-m", "src.train", *args], repo, timeout=600)
    assert "6 configs packed into 2 jobs" in proc.stdout
    _check_sweep(repo, "vjob", n=6)


def test_cores_forks_each_job_and_gives_one_process_results(repo: Path) -> None:
    """`hydra/launcher=cores`: each job in a process of its own, forked from the launcher (two at a time on two
    workers), and the same numbers as the basic launcher's one process (6 configs packed into 2 jobs either way);
    the sweep's progress bar, in the launcher, counts the forked jobs as it counts in-process ones."""
    common = [*SMALL, "optimizer=sgd,adam", "hydra/sweeper=vectorized", "hydra.sweeper.min_jobs=2",
              "train.progress=true"]
    bars = {}
    for study, launcher in (("forked", ["hydra/launcher=cores", "hydra.launcher.n_jobs=2"]),
                            ("inproc", ["hydra/launcher=basic"])):
        proc = py(["-m", "src.train", *common, f"study={study}", f"results_dir=results/{study}",
                   f"hydra.sweep.dir=multirun/{study}", *launcher], repo, timeout=600)
        assert "6 configs packed into 2 jobs" in proc.stdout
        _check_sweep(repo, study, n=6)
        bars[study] = [ln.split("|")[2].split("[")[0].strip() for ln in proc.stderr.replace("\r", "\n").splitlines()
                       if ln.startswith(f"sweep {study}:") and ln.count("|") >= 2]
    assert bars["forked"] and bars["forked"][-1] == bars["inproc"][-1], bars
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env_for(repo)["MLFLOW_TRACKING_URI"])
    pids = {}
    for study in ("forked", "inproc"):
        runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
        launcher_pid = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags).data.tags["nnlab.pid"]
        pids[study] = (launcher_pid, {r.data.tags["nnlab.pid"] for r in runs if "mlflow.parentRunId" in r.data.tags})
    assert len(pids["forked"][1]) == 2 and pids["forked"][0] not in pids["forked"][1]
    assert pids["inproc"][1] == {pids["inproc"][0]}
    for name in ("replicas.csv", "leaderboard.md"):
        forked, inproc = (repo / f"results/{s}/{name}" for s in ("forked", "inproc"))
        assert forked.read_text() == inproc.read_text().replace("inproc", "forked"), name


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher not installed (pip install -e '.[slurm]')")
def test_submitit_local_stands_in_for_slurm(repo: Path) -> None:
    args = [*SMALL, "study=submitit", "results_dir=results/submitit", "hydra.sweep.dir=multirun/submitit",
            "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1", BASIC]
    py(["-m", "src.train", *args], repo, timeout=900)
    _check_sweep(repo, "submitit")


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None
                    or importlib.util.find_spec("ray") is None,
                    reason="hydra-ray-launcher/ray not installed: it pins cloudpickle<3, so it lives in its own "
                           "venv (pip install -e '.[ray]')")
def test_ray_local_instance(repo: Path) -> None:
    args = [*SMALL, "study=ray", "results_dir=results/ray", "hydra.sweep.dir=multirun/ray", "hydra/launcher=ray",
            "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false", BASIC]
    py(["-m", "src.train", *args], repo, timeout=900)
    _check_sweep(repo, "ray")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_dvc_local_remote_push_pull(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "p", git=True)
    remote = tmp_path / "remote"
    dvc = [sys.executable, "-m", "dvc"]
    run([*dvc, "repro", "generate"], repo, timeout=600)
    before = _digest(repo / "data")
    run([*dvc, "remote", "add", "-d", "local", str(remote)], repo)
    run([*dvc, "push", "generate"], repo, timeout=300)
    assert any(remote.rglob("*")), "the remote received the cache"
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    run([*dvc, "pull", "generate"], repo, timeout=300)
    assert _digest(repo / "data") == before
    status = run([*dvc, "status", "generate"], repo)
    assert "changed" not in status.stdout, status.stdout
