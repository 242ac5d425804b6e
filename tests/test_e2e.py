"""End to end, with the real tools: DVC in a real git repo, Hydra multiruns, an MLflow SQLite store."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from e2e_utils import env_for, make_project, py, run

pytestmark = [pytest.mark.e2e]  # in the quick tier: the one `dvc repro` of the README's test command


def _client(repo: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=env_for(repo)["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy on which `dvc repro` ran once (the smoke study: 3 jobs)."""
    repo = make_project(tmp_path_factory.mktemp("proj"))
    run([sys.executable, "-m", "dvc", "repro"], repo, timeout=900)
    return repo


def test_repro_writes_data_results_report(repo: Path) -> None:
    for name in ("moons", "circles", "flower", "digits", "circles_course"):
        assert (repo / "data" / f"{name}.npz").exists()
        assert json.loads((repo / "data" / f"{name}.json").read_text())["name"] == name
    rows = list(csv.DictReader((repo / "results/smoke/runs.csv").read_text().splitlines()))
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"finished"}
    assert sorted(r["name"] for r in rows) == ["init=he", "init=xavier", "init=zeros"]
    accs = {r["name"]: float(r["test_acc"]) for r in rows}
    # zero init never breaks symmetry: it cannot beat He on moons
    assert accs["init=he"] > accs["init=zeros"]
    metrics = json.loads((repo / "results/smoke/metrics.json").read_text())
    assert metrics["configs"] == 3 and metrics["failed"] == 0 and metrics["best"] in accs
    curves = list(csv.DictReader((repo / "results/smoke/curves.csv").read_text().splitlines()))
    assert {r["config"] for r in curves} == set(accs)
    html = (repo / "reports/index.html").read_text()
    assert "smoke" in html and "data:image/png;base64," in html


def test_mlflow_parent_with_three_children(repo: Path) -> None:
    client = _client(repo)
    exp = client.get_experiment_by_name("smoke")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    pid = parents[0].info.run_id
    assert all(c.data.tags["mlflow.parentRunId"] == pid for c in children)
    assert parents[0].info.status == "FINISHED"
    for c in children:
        assert c.info.status == "FINISHED"
        assert c.data.tags["nnlab.status"] == "finished"
        assert len(c.data.tags["nnlab.dataset_hash"]) >= 16
        assert c.data.params["train.seeds"] == "2"
        assert 0.0 <= c.data.metrics["test_acc"] <= 1.0
        assert "test_acc_ci95" in c.data.metrics and "replica/r1/test_acc" in c.data.metrics
        hist = client.get_metric_history(c.info.run_id, "val_loss")
        assert len(hist) >= 10, "curves are logged per step"
        arts = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"decision_boundary.png", "activation_histograms.png", "history.csv", "weights.npz",
                "config.yaml"} <= arts
        # curves and layer diagnostics are charted by the MLflow UI from the series; no PNG by default
        assert not {"curves.png", "layer_diagnostics.png"} & arts
        assert client.get_metric_history(c.info.run_id, "layer1/act_std"), "diagnostics are logged as series"
    parent_arts = {a.path for a in client.list_artifacts(pid)}
    assert {"leaderboard.md", "leaderboard.png", "runs.csv"} <= parent_arts


def test_second_repro_is_noop(repo: Path) -> None:
    proc = run([sys.executable, "-m", "dvc", "repro"], repo, timeout=300)
    assert "Running stage" not in proc.stdout, proc.stdout
    status = run([sys.executable, "-m", "dvc", "status"], repo)
    assert "up to date" in status.stdout.lower(), status.stdout


def test_dvc_metrics_and_plots(repo: Path) -> None:
    proc = run([sys.executable, "-m", "dvc", "metrics", "show"], repo)
    assert "test_acc" in proc.stdout and "val_acc" in proc.stdout
    proc = run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], repo)
    assert (repo / "dvc_plots" / "index.html").exists()


def test_missing_data_says_run_generate(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "p", git=False)
    proc = py(["-m", "src.train"], repo, check=False, timeout=120)
    assert proc.returncode == 2
    assert "dvc repro generate" in proc.stderr and "Traceback" not in proc.stderr
