"""DVC the way its users work, on a real git + DVC copy of the project with one tiny grid study (`smoke`):
`dvc repro` then a commit leaves `git status` clean; hand-run and ad-hoc sweeps leave the pipeline up to date;
`dvc params diff` shows an edited preset value; `dvc metrics diff` compares commits; `dvc exp run -S` and
`--queue` + `--run-all` run a changed setting as DVC experiments whose MLflow runs land in the project's own store;
`dvc plots show` has one plot per study with a line per named config; tiny metrics are not printed as 0.0."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_utils import py, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def dvc(repo: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], repo, timeout=900, **kw)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo).stdout


@pytest.fixture(scope="module")
def repo(project: Any) -> Path:
    """The project with the smoke study only, made tiny, its data a plain dependency; `dvc repro` + commit done."""
    repo = project("dvcflow", git=True)
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    spec["stages"].pop("generate")  # the datasets are copied in (the session's), not regenerated...
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    dvc(repo, "add", "data")  # ...and tracked, so that DVC copies them into a queued experiment's temp repo
    preset = repo / "conf/experiment/smoke.yaml"
    preset.write_text(preset.read_text().replace("epochs: 200", "epochs: 30"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny smoke")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "dvc repro")
    return repo


def test_repro_then_commit_leaves_git_clean_and_hand_runs_leave_the_pipeline_alone(repo: Path) -> None:
    assert git(repo, "status", "--porcelain") == ""
    assert json.loads((repo / "results/smoke/metrics.json").read_text())["configs"] == 3
    tracked = git(repo, "ls-files", "results").split()
    assert "results/smoke/metrics.json" in tracked and "results/smoke/runs.csv" not in tracked  # DVC caches it
    py(["-m", "src.train", "-m", "experiment=smoke", "train.epochs=5"], repo, timeout=600)  # the README tour
    py(["-m", "src.train", "-m", "optimizer=sgd,adam", "train.epochs=5", "train.seeds=1"], repo, timeout=600)
    assert "up to date" in dvc(repo, "status").stdout
    assert git(repo, "status", "--porcelain") == ""  # multirun/, mlflow.db, mlruns/ are ignored
    assert sorted(p.name for p in (repo / "results").iterdir()) == ["smoke"]


def test_params_diff_shows_an_edited_preset_value_and_metrics_diff_compares_commits(repo: Path) -> None:
    preset = repo / "conf/experiment/smoke.yaml"
    original = preset.read_text()
    preset.write_text(original.replace("lr: 0.05", "lr: 0.2"))
    diff = dvc(repo, "params", "diff").stdout
    assert "conf/experiment/smoke.yaml" in diff and "train.lr" in diff and "0.05" in diff and "0.2" in diff
    dvc(repo, "repro")
    git(repo, "commit", "-qam", "lr 0.2")
    mdiff = dvc(repo, "metrics", "diff", "HEAD~1", "--json").stdout
    changed = json.loads(mdiff)["results/smoke/metrics.json"]
    assert changed["val_acc"]["old"] != changed["val_acc"]["new"]
    git(repo, "revert", "--no-edit", "HEAD")
    dvc(repo, "checkout")
    assert git(repo, "status", "--porcelain") == ""


def test_exp_run_set_param_queue_and_run_all(repo: Path) -> None:
    from mlflow.tracking import MlflowClient

    dvc(repo, "exp", "run", "-n", "lr-0.1", "-S", "conf/experiment/smoke.yaml:train.lr=0.1")
    dvc(repo, "exp", "run", "--queue", "-n", "lr-0.3", "-S", "conf/experiment/smoke.yaml:train.lr=0.3")
    # No MLFLOW_TRACKING_URI: a queued experiment runs in a temporary copy of the repo, and its runs must still
    # reach the project's own mlflow.db (src/lab/tracking.project_root), not a store deleted with the copy.
    dvc(repo, "exp", "run", "--run-all", "-j", "1", MLFLOW_TRACKING_URI="")
    rows = {r["Experiment"]: r for r in csv.DictReader(dvc(repo, "exp", "show", "--csv").stdout.splitlines())}
    assert rows["lr-0.1"]["conf/experiment/smoke.yaml:train.lr"] == "0.1"
    assert rows["lr-0.3"]["conf/experiment/smoke.yaml:train.lr"] == "0.3"
    assert rows["lr-0.3"]["State"] in ("Success", "")
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    tagged = client.search_runs([exp.experiment_id], filter_string="tags.`nnlab.dvc_experiment` = 'lr-0.3'")
    assert len(tagged) == 4 and {r.data.params["train.lr"] for r in tagged} == {"0.3"}  # the parent and 3 jobs
    dvc(repo, "exp", "remove", "--all")


def test_plots_one_per_study_lines_named_by_config(repo: Path) -> None:
    out = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert not out.get("errors")
    content = out["data"]["results/smoke/curves.csv"][0]["content"]
    assert list(out["data"]) == ["results/smoke/curves.csv"]
    assert content["encoding"]["color"]["field"] == "config"
    assert {row["config"] for row in content["data"]["values"]} == {"init=zeros", "init=xavier", "init=he"}
    assert "smoke" in content["title"]


def test_metrics_show_keeps_tiny_values(tmp_path: Path, repo: Path) -> None:
    from src.lab.results import dvc_metrics

    values = dvc_metrics({"max_rel_error": 6.375808456448281e-08, "acc": 0.97533333, "zero": 0.0, "n": 12})
    assert values == {"max_rel_error": "6.38e-08", "acc": 0.9753, "zero": 0.0, "n": 12}
    (repo / "tiny.json").write_text(json.dumps(values))
    shown = dvc(repo, "metrics", "show", "tiny.json").stdout
    assert "6.38e-08" in shown and "0.9753" in shown
    (repo / "tiny.json").unlink()
