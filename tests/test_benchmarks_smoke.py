"""Keeps `python -m benchmarks.bench` working: a tiny in-process run, no timing assertions (the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import bench


def test_quick_core_and_replicas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--only", "core,replicas,minibatch,inplace,pack_size", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["core"]["per_iteration"]) == {"plain_numpy", "nnlab_step", "nnlab_fit", "sklearn"}
    assert res["core"]["nnlab_fit_vs_plain"] > 0 and res["core"]["sklearn_vs_nnlab_fit"] > 0
    assert [r["R"] for r in res["replicas"]["rows"]] == [1, 8]
    assert set(res["minibatch"]["cpu_s"]) == {"fit_take", "fit_fancy_index", "batches_only"}
    for net in res["pack_size"]["nets"].values():  # both nets, every R, a positive cost, the cheapest among them
        assert set(net["us_per_replica_step"]) == {"1", "3"} and min(net["us_per_replica_step"].values()) > 0
        assert str(net["cheapest_R"]) in net["us_per_replica_step"] and net["largest_R_vs_cheapest"] >= 1.0
    ip = res["inplace"]  # each change and its baseline timed, their ratios from those times
    assert min(ip["us_per_call"].values()) > 0
    assert ip["relu_backward_gain"] == pytest.approx(
        ip["us_per_call"]["relu_backward_kept_dz"] / ip["us_per_call"]["relu_backward_into_da"])
    assert all(set(g) == {"goal", "measured", "met"} for g in res["core"]["goals"].values())
    table = capsys.readouterr().out
    assert "| figure | measured | goal | met |" in table and "plain NumPy loop" in table
    assert "pack size, s6_bn_wide_batchnorm_float32" in table and "element-wise passes at R=4" in table


def test_quick_public_api_runs_fresh_children_with_and_without_mallopt(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--only", "public_api", "--out", str(out)]) == 0
    v = json.loads(out.read_text())["public_api"]["variants"]["full_float64"]
    assert set(v["us_per_model_iter"]) == {"now_plain", "now_mallopt"}
    assert all(x > 0 for d in v["us_per_model_iter"].values() for x in d.values())
    assert set(v["mallopt_gain"]) == {"1", "8"}


def test_a_failing_section_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A section that raises (a sweep with a failed job, say) is recorded with its error, the sections before and
    after it keep their results, and the exit code says something failed (before: minutes of results were lost)."""
    def broken() -> dict[str, Any]:
        raise RuntimeError("a sweep exited 1")

    monkeypatch.setattr(bench, "bench_memory", broken)
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--only", "memory,core", "--out", str(out)]) == 1
    res = json.loads(out.read_text())
    assert res["memory"]["error"] == "RuntimeError: a sweep exited 1"
    assert res["core"]["nnlab_fit_vs_plain"] > 0
    captured = capsys.readouterr()
    assert "plain NumPy loop" in captured.out and "failed sections: memory" in captured.err


def test_minibatch_baseline_gathers_the_loops_batches() -> None:
    """The minibatch section's baseline (fancy indexing) must draw the batches `loop._batches` draws, else its
    ratio compares different work."""
    from src import data
    from src.lab import loop

    ds, cfg = data.make("moons", n_samples=150), loop.LoopConfig(batch_size=32)
    for epoch in (1, 2):
        ours = list(loop._batches(ds, None, cfg, epoch, [np.random.default_rng(s) for s in (0, 1, 2)]))  # type: ignore[arg-type]
        base = list(bench._fancy_batches(ds, None, cfg, epoch, [np.random.default_rng(s) for s in (0, 1, 2)]))
        assert len(ours) == len(base) == -(-ds.X_train.shape[0] // 32) > 1
        for (xa, ya), (xb, yb) in zip(ours, base, strict=True):
            assert xa.shape == xb.shape == (3, xa.shape[1], 2)
            assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_plain_loop_is_the_same_maths_as_nnlab() -> None:
    """The baseline must compute what nnlab computes, else the ratio compares different work."""
    from src.nn import MLP, optimizers

    ds = bench._course_data()
    X, y = ds.X_train, ds.y_train
    plain = bench.plain_numpy_loop(X, y, 50)
    net = MLP(bench.SIZES, activation="relu", init="he_normal", replicas=1, seed=0)
    opt = optimizers.get("sgd", lr=bench.LR)
    for _ in range(50):
        loss, grads = net.loss_and_grads(X, y)
        opt.update(net.params, grads)
    np.testing.assert_allclose(float(loss[0]), plain, rtol=1e-10)


def test_quick_tuning_section_fits_both_ways() -> None:
    """The tuning benchmark's in-process part runs (tiny epochs): the tuned fit trains every lr × tuning seed."""
    fits = bench._tuning_fits("s3_optim", quick=True)
    untuned, tuned = fits["untuned"](), fits["tuned"]()
    assert untuned.replicas == 10
    (shared, _, outcome), = tuned
    assert shared.replicas == 10 and len(outcome.choice.table) == 7


def test_bookkeeping_reads_the_fit_time_a_packed_job_prints(capsys: pytest.CaptureFixture[str], compose: Any,
                                                              data_dir: Path) -> None:
    """The bookkeeping ratio's denominator comes from the packed job's own line: a change of that line's wording
    must not silently turn the ratio into nan."""
    from src.lab.packing import _fit_pack

    subs = [compose(["data=moons", "train.epochs=3", "train.seeds=2", f"train.lr={lr}", f"data.dir={data_dir}",
                     "tracking.enabled=false"]) for lr in (0.1, 0.2)]
    trained = _fit_pack(subs, [0, 1])
    assert set(trained) == {0, 1} and not any(isinstance(v, BaseException) for v in trained.values())
    printed = capsys.readouterr().out
    assert bench._fit_seconds(printed) == float(printed.rsplit(", ", 1)[1].removesuffix("s\n"))
    assert bench._fit_seconds(printed + printed) == 2 * bench._fit_seconds(printed)


def test_the_scale_preset_is_the_issues_grid(tmp_path: Path) -> None:
    """10 lrs x 10 inits x 2 optimizers x 5 clip settings = 1,000 configs of 5 seeds, each a valid config."""
    import yaml

    preset = yaml.safe_load(bench.scale_preset())
    params = preset["hydra"]["sweeper"]["params"]
    sizes = [len(str(v).split(",")) for v in params.values()]
    assert sorted(sizes) == [2, 5, 10, 10] and int(np.prod(sizes)) == 1000 and preset["train"]["seeds"] == 5
    from src.lab.preflight import CONF_DIR

    for group, key in (("init", "init"), ("optimizer", "optimizer"), ("clip", "clip")):
        for name in str(params[key]).split(","):
            assert (CONF_DIR / group / f"{name}.yaml").is_file(), (group, name)
