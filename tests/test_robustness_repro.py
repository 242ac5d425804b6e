"""Robustness, reproducibility: the same config and seed give bit-identical metrics and weights on a re-run, and
`dvc repro` after a change to one study's preset reruns only that study's stage."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_utils import env_for, make_project, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _metrics(uri: str, run_id: str) -> dict[tuple[str, int], float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    return {(k, m.step): m.value for k in run.data.metrics for m in client.get_metric_history(run_id, k)}


def test_same_config_and_seed_bit_identical(tmp_path: Path, project) -> None:  # noqa: ANN001
    repo = project("same")
    uri = env_for(repo)["MLFLOW_TRACKING_URI"]
    args = ["model.dropout=0.1", "train.batch_size=32", "train.epochs=40", "train.seeds=3", "train.patience=2",
            "train.progress=false", "train.seed=7"]
    outs, run_ids = [], []
    for i in range(2):
        out = tmp_path / f"run{i}"
        run([sys.executable, "-m", "src.train", *args, f"hydra.run.dir={out}"], repo, timeout=300)
        outs.append(out)
        run_ids.append(json.loads((out / "result.json").read_text())["run_id"])
    assert run_ids[0] != run_ids[1]
    w0, w1 = (np.load(o / "artifacts" / "weights.npz") for o in outs)
    assert sorted(w0.files) == sorted(w1.files) and w0.files
    for k in w0.files:
        assert w0[k].tobytes() == w1[k].tobytes(), k
    for name in ("history.csv", "diagnostics.csv"):
        assert (outs[0] / "artifacts" / name).read_bytes() == (outs[1] / "artifacts" / name).read_bytes(), name
    m0, m1 = (_metrics(uri, r) for r in run_ids)
    volatile = {"wall_time_s"}
    m0 = {k: v for k, v in m0.items() if k[0] not in volatile}
    m1 = {k: v for k, v in m1.items() if k[0] not in volatile}
    assert m0.keys() == m1.keys() and len(m0) > 100
    assert all(m0[k] == m1[k] or (np.isnan(m0[k]) and np.isnan(m1[k])) for k in m0), "bit-identical metrics"


@pytest.mark.slow
def test_dvc_repro_reruns_only_the_changed_study(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "p", studies=("smoke", "smoke_b"), git=False)
    preset = (repo / "conf/experiment/smoke.yaml").read_text()
    # a copy of a preset is a new study: its name, results and sweep folders derive from the file name
    (repo / "conf/experiment/smoke_b.yaml").write_text(preset.replace("epochs: 200", "epochs: 60"))
    for cmd in (["git", "init", "-q", "-b", "main"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "p"]):
        run(cmd, repo)
    stages = ["train@smoke", "train@smoke_b"]
    run([sys.executable, "-m", "dvc", "repro", *stages], repo, timeout=600)
    before = {s: (repo / f"results/{s}/runs.csv").read_text() for s in ("smoke", "smoke_b")}

    preset_b = repo / "conf/experiment/smoke_b.yaml"
    preset_b.write_text(preset_b.read_text().replace("epochs: 60", "epochs: 50"))
    status = run([sys.executable, "-m", "dvc", "status", *stages], repo).stdout
    assert "train@smoke_b" in status and "train@smoke:" not in status, status
    proc = run([sys.executable, "-m", "dvc", "repro", *stages], repo, timeout=600)
    assert "Running stage 'train@smoke_b'" in proc.stdout, proc.stdout
    assert "Running stage 'train@smoke'" not in proc.stdout and "Running stage 'generate'" not in proc.stdout
    assert (repo / "results/smoke/runs.csv").read_text() == before["smoke"], "the other study is untouched"
    rows = list(csv.DictReader((repo / "results/smoke_b/runs.csv").open()))
    assert len(rows) == 3 and {float(r["epochs_used"]) for r in rows} == {50.0}
    assert "up to date" in run([sys.executable, "-m", "dvc", "status", *stages], repo).stdout.lower()
