"""What a sweep leaves in MLflow, checked in a real SQLite store after a real Hydra sweep (conftest `tracked_sweep`):
the experiment's kind and description, MLflow's source tags, readable run names, the dataset input, the parent's
params, each run's model (pyfunc: loads, predicts the net's probabilities, serves through `mlflow models predict`),
the registry command, the console lines, ad-hoc grids and the measured studies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_utils import env_for, py

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(t: Any, experiment: str = "s3_optim") -> tuple[Any, list[Any], Any]:
    client = _client(t.uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.run_name)
    return exp, children, parents[0] if parents else None


def test_experiment_is_model_training_described_by_the_claim(tracked_sweep: Any) -> None:
    from src.studies import description

    exp, _, _ = _runs(tracked_sweep)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == description("s3_optim")
    assert "Adam reaches a higher test accuracy" in exp.tags["mlflow.note.content"]


def test_runs_carry_source_tags_and_readable_names(tracked_sweep: Any) -> None:
    _, children, parent = _runs(tracked_sweep)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tracked_sweep.repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert len(children) == 2 and parent is not None
    for r in [*children, parent]:
        tags = r.data.tags
        assert tags["mlflow.source.git.commit"] == head
        assert tags["mlflow.source.name"] == "src/train.py" and tags["mlflow.source.type"] == "LOCAL"
    names = [r.info.run_name for r in children]
    assert all("train.lr=0.05412" in n for n in names), names  # 4 significant digits in the name...
    assert all(r.data.params["train.lr"] == "0.05411695265464637" for r in children)  # ...every digit in params
    assert {n.split(",")[0] for n in names} == {"optimizer=adam", "optimizer=sgd"}


def test_every_run_logs_its_dataset(tracked_sweep: Any) -> None:
    _, children, _ = _runs(tracked_sweep)
    for r in children:
        (inp,) = r.inputs.dataset_inputs
        ds, sha = inp.dataset, r.data.tags["nnlab.dataset_hash"]
        assert (ds.name, ds.digest) == ("moons", sha[:12])
        assert json.loads(ds.source)["uri"] == str((tracked_sweep.repo / "data" / "moons.npz").resolve())
        profile = json.loads(ds.profile)
        assert profile["sha256"] == sha and profile["features"] == 2 and profile["classes"] == 2
        assert sum(profile["rows"].values()) == 400 and profile["rows"]["train"] == 240
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training"}


def test_parent_run_logs_the_shared_params(tracked_sweep: Any) -> None:
    _, children, parent = _runs(tracked_sweep)
    p = parent.data.params
    assert p["sweep.optimizer"] == "sgd,adam"
    assert (p["train.epochs"], p["train.seeds"], p["data.name"], p["model.hidden"]) == ("20", "2", "moons", "[5, 2]")
    assert not any(k.startswith("optimizer.") for k in p), "a swept group's base values would mislead"
    assert {c.data.params["optimizer.name"] for c in children} == {"sgd", "adam"}


def _trained_net(t: Any, run: Any, compose: Any) -> Any:
    """The run's config trained again in this process (deterministic: same seeds, same numbers)."""
    from src.lab.build import build
    from src.lab.job import train

    optimizer = run.data.params["optimizer.name"]
    cfg = compose(["experiment=s3_optim", f"optimizer={optimizer}", "train.epochs=20", "train.seeds=2",
                   "train.lr=0.05411695265464637", f"data.dir={t.repo / 'data'}"])
    built = build(cfg)
    train(built)
    return built.net, built.dataset


def test_tuned_runs_carry_their_lr_and_sensitivity_curve(tracked_sweep: Any) -> None:
    """s3_optim is tuned (tune.enabled in its preset): each optimizer's run holds its chosen lr, the numbers at it,
    and the sensitivity curve as metric series over the lr grid (validation accuracy and log10 lr, same steps)."""
    client = _client(tracked_sweep.uri)
    _, children, _ = _runs(tracked_sweep)
    assert len(children) == 2
    for run in children:
        m = run.data.metrics
        lrs = sorted(float(k.rsplit("lr_", 1)[1]) for k in m if k.startswith("sensitivity/val_acc/lr_"))
        assert len(lrs) >= 7 and lrs[-1] / lrs[0] >= 1e3  # SPEC: >= 7 values over >= 3 decades
        assert m["tuned_lr"] in lrs and 0.0 <= m["tuned_test_acc"] <= 1.0
        acc = client.get_metric_history(run.info.run_id, "sensitivity/val_acc")
        x = client.get_metric_history(run.info.run_id, "sensitivity/log10_lr")
        assert [p.step for p in acc] == [p.step for p in x] == list(range(len(lrs)))
        assert [round(10 ** p.value, 9) for p in sorted(x, key=lambda p: p.step)] == [round(v, 9) for v in lrs]
        best = max(acc, key=lambda p: p.value).value
        assert m[f"sensitivity/val_acc/lr_{m['tuned_lr']:g}"] == best  # chosen on validation accuracy


def test_model_predicts_the_nets_probabilities(tracked_sweep: Any, compose: Any) -> None:
    import mlflow

    _, children, _ = _runs(tracked_sweep)
    run = next(r for r in children if r.data.params["optimizer.name"] == "adam")
    net, ds = _trained_net(tracked_sweep, run, compose)
    mlflow.set_tracking_uri(tracked_sweep.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    X = ds.X_test
    expected = net.predict_proba(X)  # (R, m)
    np.testing.assert_allclose(model.predict(X), expected.mean(axis=0), rtol=0, atol=1e-10)
    for r in range(net.replicas):
        np.testing.assert_allclose(model.predict(X, params={"replica": r}), expected[r], rtol=0, atol=1e-10)
    sig = model.metadata.signature
    (spec,) = sig.inputs.inputs
    assert (spec.type, spec.shape) == (np.dtype("float64"), (-1, 2))
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model"))
    reqs = (local / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in reqs) == ["mlflow", "numpy"]
    assert json.loads((local / "input_example.json").read_text()) == ds.X_val[:5].tolist()
    assert (local / "code" / "nnlab_nn" / "mlp.py").read_text() == (tracked_sweep.repo / "src/nn/mlp.py").read_text()
    assert run.outputs.model_outputs, "the model is the run's output (the UI's Models column)"


def test_mlflow_models_predict_serves_the_model(tracked_sweep: Any, tmp_path: Path) -> None:
    import mlflow

    _, children, _ = _runs(tracked_sweep)
    run = children[0]
    X = np.random.default_rng(0).normal(size=(6, 2))
    (tmp_path / "in.json").write_text(json.dumps({"inputs": X.tolist()}))
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "predict", "-m", f"runs:/{run.info.run_id}/model",
                           "-i", str(tmp_path / "in.json"), "-t", "json", "-o", str(tmp_path / "out.json"),
                           "--env-manager", "local"], env=env_for(tracked_sweep.repo), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.asarray(json.loads((tmp_path / "out.json").read_text())["predictions"])
    mlflow.set_tracking_uri(tracked_sweep.uri)
    direct = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(X)
    np.testing.assert_allclose(served, direct, rtol=0, atol=1e-12)
    assert served.shape == (6,) and ((served >= 0) & (served <= 1)).all()


def test_register_puts_the_best_run_on_validation_in_the_registry(tracked_sweep: Any) -> None:
    import mlflow

    _, children, _ = _runs(tracked_sweep)
    best = max(children, key=lambda r: (r.data.metrics["val_acc"], -r.data.metrics["val_loss"]))
    proc = py(["-m", "src.register", "s3_optim"], tracked_sweep.repo, timeout=300)
    assert f"run {best.info.run_id}" in proc.stdout
    client = _client(tracked_sweep.uri)
    version = client.get_model_version_by_alias("nnlab-s3_optim", "best")
    assert version.run_id == best.info.run_id
    assert version.tags["selected_on"] == "val_acc"
    assert "Adam reaches a higher test accuracy" in client.get_registered_model("nnlab-s3_optim").description
    mlflow.set_tracking_uri(tracked_sweep.uri)
    X = np.random.default_rng(1).normal(size=(5, 2))
    np.testing.assert_array_equal(mlflow.pyfunc.load_model("models:/nnlab-s3_optim@best").predict(X),
                                  mlflow.pyfunc.load_model(f"runs:/{best.info.run_id}/model").predict(X))
    bad = py(["-m", "src.register", "no_such_study"], tracked_sweep.repo, check=False)
    assert bad.returncode == 2 and "no MLflow experiment 'no_such_study'" in bad.stderr


def test_console_lines_end_with_run_ids_and_name_the_experiment(tracked_sweep: Any) -> None:
    _, children, parent = _runs(tracked_sweep)
    lines = tracked_sweep.stdout.splitlines()
    jobs = [ln for ln in lines if re.search(r"^(\[\d/\d\] )?optimizer=\w+,.*: (finished|diverged) ", ln)]
    assert len(jobs) == 2
    assert {ln.rsplit(" run ", 1)[1] for ln in jobs} == {r.info.run_id for r in children}
    assert "0.05412" in jobs[0] and "054116" not in tracked_sweep.stdout, "numbers in lines: 4 significant digits"
    end = "\n".join(lines[-3:])
    assert f"MLflow: 2 runs in experiment 's3_optim' (id {children[0].info.experiment_id}), parent run " \
           f"{parent.info.run_id}" in end
    # the store is <project>/mlflow.db, mlflow ui's own default when started in the project: the plain command
    assert "to look: mlflow ui, then open http://127.0.0.1:5000/#/experiments/" in end
    assert end.endswith("/runs?workflowType=machine_learning")
    assert "RuntimeWarning" not in tracked_sweep.stderr


def test_adhoc_grid_gets_an_experiment_of_its_own(tracked_sweep: Any, tmp_path: Path) -> None:
    repo = tracked_sweep.repo
    py(["-m", "src.train", "-m", "optimizer=sgd,adam", "train.epochs=5", "train.seeds=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}"], repo, timeout=600)
    client = _client(tracked_sweep.uri)
    adhoc = client.get_experiment_by_name("adhoc")
    assert adhoc is not None and len(client.search_runs([adhoc.experiment_id])) == 3  # parent + 2
    assert client.get_experiment_by_name("default") is None
    assert not (repo / "results").exists(), "a hand-run sweep leaves results/ (the pipeline's) alone"
    assert {p.name for p in (tmp_path / "sweep").iterdir()} >= {"runs.csv", "metrics.json", "curves.csv",
                                                                "leaderboard.md"}


def test_measured_study_logs_a_run(tracked_sweep: Any, tmp_path: Path) -> None:
    proc = py(["-m", "src.studies", "toys", "--out", str(tmp_path / "toys")], tracked_sweep.repo, timeout=600)
    client = _client(tracked_sweep.uri)
    exp = client.get_experiment_by_name("toys")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in proc.stdout
    assert run.data.metrics["s4_noclip_overflow_step"] == 5.0  # the seed's x⁴ toy: overflow at step 5
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "clipping by value" in exp.tags["mlflow.note.content"]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"clip.png", "trajectories.png", "metrics.json", "summary.json"} <= files


def test_diverging_replicas_print_one_line_each_config(tracked_sweep: Any, tmp_path: Path) -> None:
    # s4_clip as the pipeline runs it, shortened: before the fix, 10 pairs of "RuntimeWarning: overflow" lines
    # (the packed configs share histogram bins with the diverged ones), measured at 20 epochs and 5 seeds.
    proc = py(["-m", "src.train", "-m", "experiment=s4_clip", "train.epochs=20", f"hydra.sweep.dir={tmp_path / 's'}"],
              tracked_sweep.repo, timeout=600)
    assert "RuntimeWarning" not in proc.stderr and "overflow" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if "clip=none" in ln and "test_acc" in ln]
    assert ": diverged " in line and "diverged 5/5" in line and re.search(r" run [0-9a-f]{32}$", line)
