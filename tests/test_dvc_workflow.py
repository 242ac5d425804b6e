"""DVC the way its users work, on a real git + DVC copy of the project with one tiny grid study (`smoke`):
`dvc repro` then a commit leaves `git status` clean; hand-run and ad-hoc sweeps leave the pipeline up to date;
`dvc params diff` shows an edited preset value; `dvc exp run --queue -S` + `--run-all` runs a changed setting as a
DVC experiment whose MLflow runs land in the project's own store; `dvc exp apply` + commit keeps it and
`dvc metrics diff` compares the two commits;
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
from e2e_utils import env_for, run

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
    # Seconds per sweep: 10 epochs, and no figures nor models (tests/test_mlflow_tracking.py checks those), which
    # are what a tiny sweep's time goes to; nothing asserted here reads them.
    preset = repo / "conf/experiment/smoke.yaml"
    text = preset.read_text().replace("epochs: 200", "epochs: 10").replace("log_every: 10", "log_every: 2")
    preset.write_text(text + "tracking:\n  artifacts: false\n  model: false\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny smoke")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "dvc repro")
    return repo


def test_repro_then_commit_leaves_git_clean_and_hand_runs_leave_the_pipeline_alone(repo: Path,
                                                                                    tmp_path: Path) -> None:
    assert git(repo, "status", "--porcelain") == ""
    assert json.loads((repo / "results/smoke/metrics.json").read_text())["configs"] == 3
    tracked = git(repo, "ls-files", "results").split()
    assert "results/smoke/metrics.json" in tracked and "results/smoke/runs.csv" not in tracked  # DVC caches it
    # The README tour's preset sweep (into the project's mlflow.db) and an ad-hoc grid, at once (one core each;
    # the ad-hoc one logs to a store of its own, so the two never wait on one SQLite file).
    hand_runs = [
        subprocess.Popen([sys.executable, "-m", "src.train", "-m", "experiment=smoke", "train.epochs=2"],
                         cwd=repo, env=env_for(repo), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, "-m", "src.train", "-m", "optimizer=sgd,adam", "train.epochs=2",
                          "train.seeds=1", "tracking.artifacts=false", "tracking.model=false"], cwd=repo,
                         env=env_for(repo, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'adhoc.db'}"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    try:
        outs = [p.communicate(timeout=600)[0] for p in hand_runs]
    finally:
        for p in hand_runs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in hand_runs] == [0, 0], outs
    assert "up to date" in dvc(repo, "status").stdout
    assert git(repo, "status", "--porcelain") == ""  # multirun/, mlflow.db, mlruns/ are ignored
    assert sorted(p.name for p in (repo / "results").iterdir()) == ["smoke"]


def test_params_diff_shows_an_edited_preset_value(repo: Path) -> None:
    preset = repo / "conf/experiment/smoke.yaml"
    original = preset.read_text()
    preset.write_text(original.replace("lr: 0.05", "lr: 0.2"))
    try:
        diff = dvc(repo, "params", "diff").stdout
    finally:
        preset.write_text(original)
    assert "conf/experiment/smoke.yaml" in diff and "train.lr" in diff and "0.05" in diff and "0.2" in diff


def test_exp_run_queue_and_run_all_then_apply_commit_and_metrics_diff(repo: Path) -> None:
    """`dvc exp run --queue -S` + `--run-all` runs a changed setting as a DVC experiment (in a temporary copy of
    the repo); `dvc exp apply` + commit keeps it, and `dvc metrics diff` compares it with the commit before."""
    from mlflow.tracking import MlflowClient

    dvc(repo, "exp", "run", "--queue", "-n", "lr-0.3", "-S", "conf/experiment/smoke.yaml:train.lr=0.3")
    # No MLFLOW_TRACKING_URI: a queued experiment runs in a temporary copy of the repo, and its runs must still
    # reach the project's own mlflow.db (src/lab/tracking.project_root), not a store deleted with the copy.
    dvc(repo, "exp", "run", "--run-all", "-j", "1", MLFLOW_TRACKING_URI="")
    rows = {r["Experiment"]: r for r in csv.DictReader(dvc(repo, "exp", "show", "--csv").stdout.splitlines())}
    assert rows["lr-0.3"]["conf/experiment/smoke.yaml:train.lr"] == "0.3"
    assert rows["lr-0.3"]["State"] in ("Success", "")
    val_acc = [v for k, v in rows["lr-0.3"].items() if k.endswith("val_acc")]  # headline metrics as columns
    assert len(val_acc) == 1 and 0 <= float(val_acc[0]) <= 1
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    tagged = client.search_runs([exp.experiment_id], filter_string="tags.`nnlab.dvc_experiment` = 'lr-0.3'")
    assert len(tagged) == 4 and {r.data.params["train.lr"] for r in tagged} == {"0.3"}  # the parent and 3 jobs

    dvc(repo, "exp", "apply", "lr-0.3")
    git(repo, "commit", "-qam", "lr 0.3")
    assert git(repo, "status", "--porcelain") == ""
    assert "0.3" in dvc(repo, "params", "diff", "HEAD~1").stdout
    old = json.loads(git(repo, "show", "HEAD~1:results/smoke/metrics.json"))
    new = json.loads((repo / "results/smoke/metrics.json").read_text())
    changed = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--json").stdout)["results/smoke/metrics.json"]
    assert changed  # lr 0.05 -> 0.3 changes the headline numbers...
    for key, values in changed.items():  # ...and the diff reads them from the two commits
        assert (values["old"], values["new"]) == (old[key], new[key]) and values["old"] != values["new"]
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
