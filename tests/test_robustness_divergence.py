"""Robustness, divergence: a non-finite loss or gradient freezes that replica only; the run and the sweep go on.

In-process: faults injected into the real MLP's `loss_and_grads` (a NaN loss in replica 1, a NaN gradient with a
finite loss in replica 2, an inf loss in every replica); the untouched replicas must be bit-identical to a clean
run. End to end: a sweep with a job whose replicas all diverge finishes, and that job is a FINISHED MLflow run
tagged `diverged` with `diverged_fraction` = 1.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_utils import env_for, run

from src import data
from src.lab import records
from src.lab.loop import LoopConfig, fit
from src.nn import MLP, optimizers, schedules

R, EPOCHS = 4, 30


@pytest.fixture(scope="module")
def moons() -> data.Dataset:
    return data.make("moons", seed=0)


def _fit(ds: data.Dataset, faults: dict[tuple[int, int], str], log_every: int = 1):
    """Train R replicas; `faults[(step, replica)]` = "loss_nan" | "grad_nan" | "loss_inf" poisons that step."""
    net = MLP(sizes=[2, 10, 5, 1], activation="tanh", init="xavier_normal", replicas=R, seed=3)
    real = net.loss_and_grads
    step = [0]

    def poisoned(X, y, **kw):
        out = real(X, y, **kw)
        if kw.get("taps"):
            return out
        step[0] += 1
        loss, grads = out
        for (s, r), kind in faults.items():
            if s == step[0]:
                if kind == "loss_nan":
                    loss = loss.copy()
                    loss[r] = np.nan
                elif kind == "loss_inf":
                    loss = loss.copy()
                    loss[r] = np.inf
                else:
                    for g in grads.values():
                        g[r] = np.nan
        return loss, grads

    net.loss_and_grads = poisoned  # type: ignore[method-assign]
    opt = optimizers.get("adam", lr=0.01)
    result = fit(net, opt, schedules.get("constant"), ds, LoopConfig(epochs=EPOCHS, log_every=log_every))
    return result, net


def test_faulty_replicas_frozen_others_bit_identical(moons: data.Dataset) -> None:
    clean, clean_net = _fit(moons, {})
    bad, bad_net = _fit(moons, {(5, 1): "loss_nan", (9, 2): "grad_nan"})
    assert bad.diverged.tolist() == [False, True, True, False]
    assert bad.diverged_epoch.tolist() == [-1, 5, 9, -1]
    # A NaN loss freezes the replica before its update; a NaN gradient (finite loss) is applied once, then frozen.
    assert bad.epochs_used.tolist() == [EPOCHS, 4, 9, EPOCHS]
    assert not bad.interrupted and len(bad.epochs) == EPOCHS + 1, "the run went to the end"
    for k, v in clean_net.params.items():  # healthy replicas never see the others' NaNs
        for r in (0, 3):
            assert np.array_equal(v[r], bad_net.params[k][r]), (k, r)
    for k in ("train_loss", "val_loss", "val_acc"):
        assert np.array_equal(clean.history[k][:, [0, 3]], bad.history[k][:, [0, 3]])
        assert np.isnan(bad.history[k][5:, 1]).all() and np.isnan(bad.history[k][9:, 2]).all()
    assert all(np.isfinite(v[1]).all() for v in bad_net.params.values())
    m = records.final_metrics(bad)
    assert m["diverged_fraction"] == 0.5
    assert np.isfinite(m["test_acc"]) and np.isnan(m["replica/r1/test_loss"])
    assert records.status_of(bad) == "finished"


def test_nan_gradient_between_log_points_is_caught(moons: data.Dataset) -> None:
    res, net = _fit(moons, {(7, 0): "grad_nan"}, log_every=10)
    assert res.diverged.tolist() == [True, False, False, False]
    assert res.diverged_epoch[0] == 8, "the NaN weights give a NaN loss at the very next step"
    assert not res.diverged[1:].any() and all(np.isfinite(v[1:]).all() for v in net.params.values())


def test_all_replicas_diverged_is_a_result(moons: data.Dataset) -> None:
    res, _ = _fit(moons, {(3, r): "loss_inf" for r in range(R)})
    assert res.diverged.all() and res.epochs_used.tolist() == [2] * R
    assert records.status_of(res) == "diverged"
    m = records.final_metrics(res)
    assert m["diverged_fraction"] == 1.0 and m["epochs_used"] == 2.0
    assert records.curve_series(res, 500)["val_loss"][0] == [0, 1, 2, 3], "the history up to the divergence"


@pytest.mark.e2e
@pytest.mark.slow
def test_sweep_with_a_diverging_job_finishes(tmp_path: Path, project) -> None:  # noqa: ANN001
    repo = project("div")
    run([sys.executable, "-m", "src.train", "-m", "hydra/sweeper=basic", "train.lr=0.05,1e50,0.1", "optimizer=sgd",
         "model.activation=identity", "train.epochs=30", "train.seeds=3", "train.progress=false",
         "tracking.artifacts=false", "study=div",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"results_dir={tmp_path / 'results'}"], repo, timeout=300)
    rows = {r["name"].split(",")[0]: r for r in csv.DictReader((tmp_path / "results" / "runs.csv").open())}
    assert {n: r["status"] for n, r in rows.items()} == {"train.lr=0.05": "finished", "train.lr=1e+50": "diverged",
                                                           "train.lr=0.1": "finished"}
    assert float(rows["train.lr=1e+50"]["diverged_fraction"]) == 1.0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env_for(repo)["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("div")
    runs = {r.info.run_name.split(",")[0]: r for r in client.search_runs([exp.experiment_id])}
    div = runs["train.lr=1e+50"]
    assert div.info.status == "FINISHED" and div.data.tags["nnlab.status"] == "diverged"
    assert div.data.metrics["diverged_fraction"] == 1.0
    assert len(client.get_metric_history(div.info.run_id, "train_loss")) >= 1
    assert all(r.info.status == "FINISHED" for r in runs.values()), "parent and every child finished"
