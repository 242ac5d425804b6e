"""Helpers for end-to-end tests: a throw-away copy of the project in a real git + DVC repo.

Why a copy: `dvc repro`, Hydra multiruns and the MLflow store all write next to the project; tests must
never touch the developer's own `mlflow.db`, `data/` or `results/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def env_for(repo: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "HYDRA_", "NNLAB_")) or k == "NNLAB_CACHE_DIR"}  # conftest: the session's
    env.update({
        "PYTHONPATH": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "GIT_AUTHOR_NAME": "nnlab-test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "nnlab-test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    })
    env.update(extra)
    return env


def kill_group(p: subprocess.Popen[str]) -> None:
    """SIGKILL the process group of `p` (started with start_new_session=True): the process and everything it
    started (joblib workers, a server's workers), even after `p` itself exited. Why: orphaned training processes
    of failed tests have filled this machine before."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=10)


def run(cmd: list[str], repo: Path, timeout: float = 600, check: bool = True, **extra: str
        ) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group; whatever happens (timeout, a failed test), the group is killed."""
    p = subprocess.Popen(cmd, cwd=repo, env=env_for(repo, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        kill_group(p)
    proc = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def py(args: list[str], repo: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, *args], repo, **kw)  # type: ignore[arg-type]


PIPELINE_STAGES = ("generate", "train", "report")  # the others are measured studies, tested on their own


def make_project(dest: Path, studies: tuple[str, ...] = ("smoke",), git: bool = True,
                 keep_stages: tuple[str, ...] = ()) -> Path:
    """Copy src/, conf/, hydra_plugins/, dvc.yaml into `dest`, keep only `studies` (and `keep_stages` of the measured
    studies' stages) in the pipeline, git+dvc init."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("src", "conf", "hydra_plugins"):  # hydra_plugins: the vectorized sweeper (hydra/sweeper=vectorized)
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in (".dvcignore", ".gitignore"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    spec["stages"]["train"]["foreach"] = list(studies)
    for name in [s for s in spec["stages"] if s not in PIPELINE_STAGES and s not in keep_stages]:
        spec["stages"].pop(name)
    report = spec["stages"].get("report")
    if report:
        report["deps"] = [d for d in report["deps"] if not str(d).startswith("results/")]
        report["deps"] += [f"results/{s}/runs.csv" for s in studies]
    (dest / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if git:
        run(["git", "init", "-q", "-b", "main"], dest)
        run([sys.executable, "-m", "dvc", "init", "-q"], dest)
        run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], dest)
        run(["git", "add", "-A"], dest)
        run(["git", "commit", "-qm", "test project"], dest)
    return dest
