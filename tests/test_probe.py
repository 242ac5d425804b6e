"""S2 (src/studies/s2_activations.py): the laws of activation statistics in deep nets, from its own numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.studies import s2_activations as probe

ROOT = Path(__file__).resolve().parents[1]


def _layer(res: dict, key: str) -> np.ndarray:
    """Mean over replicas of `key`, one value per layer (layer 1 first)."""
    return np.array([float(np.mean(res["stats"][l][key])) for l in sorted(res["stats"])])


@pytest.fixture(scope="module")
def tanh_small() -> dict:
    return probe.measure("tanh", 10, 500, "normal", {"std": 0.01}, replicas=2, samples=200, grads=False)


def test_tanh_std001_collapses_by_layer_10(tanh_small: dict) -> None:
    std = _layer(tanh_small, "act_std")
    assert std[-1] < 1e-4  # the articles: ~3e-7
    factor = probe.per_layer_factor(list(std))
    assert 4.0 < factor < 5.0  # sqrt(500) * 0.01 = 0.224 -> x4.47 per layer
    assert np.all(np.diff(std) < 0)


def test_tanh_std1_saturates_most_units() -> None:
    res = probe.measure("tanh", 10, 500, "normal", {"std": 1.0}, replicas=2, samples=200, grads=False)
    sat = _layer(res, "saturated")
    assert sat.mean() > 0.7  # the articles: ~90% at |a| > 0.99


def test_tanh_xavier_layer1_std_is_063_and_decays_slowly() -> None:
    res = probe.measure("tanh", 10, 500, "xavier_normal", {}, replicas=2, samples=300, grads=False)
    std = _layer(res, "act_std")
    assert std[0] == pytest.approx(0.63, abs=0.05)
    assert 0.15 < std[-1] < std[0]


def test_he_keeps_relu_std_within_factor_2_over_10_layers() -> None:
    res = probe.measure("relu", 10, 100, "he_normal", {}, replicas=3, samples=300, grads=False)
    std = _layer(res, "act_std")
    assert 0.5 < std.max() / std.min() < 2.0
    small = probe.measure("relu", 5, 100, "normal", {"std": 0.01}, replicas=2, samples=200, grads=False)
    assert _layer(small, "act_std")[-1] < 1e-4  # std 0.01 collapses ReLU activations to 0


def test_deep_sigmoid_gradients_vanish_relu_he_do_not() -> None:
    sig = probe.measure("sigmoid", 10, 100, "xavier_normal", {}, replicas=2, samples=200)
    relu = probe.measure("relu", 10, 100, "he_normal", {}, replicas=2, samples=200)
    g_sig, g_relu = _layer(sig, "grad_norm"), _layer(relu, "grad_norm")
    # sigmoid: every layer closer to the input gets a smaller gradient, by at most sigma' <= 0.25 (+ slack)
    assert np.all(np.diff(g_sig) > 0)
    assert probe.per_layer_factor(list(_layer(sig, "dz_norm"))) < 0.3
    assert g_sig[0] / g_sig[-1] < 1e-4
    # ReLU + He: the backward signal keeps its scale
    assert 0.5 < probe.per_layer_factor(list(_layer(relu, "dz_norm"))) < 2.0
    assert g_relu[0] / g_relu[-1] > 0.05


def test_the_histogram_samples_are_replica_0_alone() -> None:
    # each is its own copy: a view would keep every replica's activations alive (the stage's peak memory doubled)
    nets = {"tanh_small": ("tanh", 3, 20)}
    _, acts = probe.activation_study(replicas=3, samples=40, nets=nets)
    res = probe.measure("tanh", 3, 20, *probe.INITS["xavier"], replicas=3, samples=40)
    for layer, a in enumerate(acts["tanh_small"]["xavier"]):
        assert a.base is None and a.shape == (40 * 20,)
        assert np.array_equal(a, res["taps"][layer]["a"][0].ravel())


def test_run_writes_the_study_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "NETS", {"sigmoid_5x100": ("sigmoid", 3, 20), "relu_5x100": ("relu", 3, 20),
                                        "tanh_10x500": ("tanh", 4, 30)})
    metrics = probe.run(tmp_path, replicas=2, samples=50)
    for name in ("layer_stats.csv", "grad_norms.csv", "metrics.json", "grad_norms.png",
                 "histograms_sigmoid_5x100.png", "histograms_relu_5x100.png", "histograms_tanh_10x500.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == pytest.approx(metrics)
    headline = json.loads((tmp_path / "metrics.json").read_text())  # what `dvc metrics show` prints
    assert set(headline) == set(probe.HEADLINE) and isinstance(headline["tanh_std001_last_std"], str)
    assert {"tanh_std001_last_std", "tanh_xavier_layer1_std", "deep_sigmoid_xavier_grad_factor_per_layer"} <= set(
        on_disk)
    header = (tmp_path / "layer_stats.csv").read_text().splitlines()[0].split(",")
    assert {"net", "init", "layer", "act_mean", "act_std", "saturated", "dead", "act_std_ci95"} <= set(header)


def test_help_is_fast() -> None:
    out = subprocess.run([sys.executable, "-m", "src.studies", "s2_activations", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--out" in out.stdout


@pytest.mark.parametrize("act,init", [("tanh", "xavier_normal"), ("relu", "he_normal"), ("sigmoid", "normal")])
def test_activation_stats_from_the_gradient_pass_are_the_probes(act, init):
    """With grads, the activation statistics come from `loss_and_grads`' own forward pass (no second forward):
    for these plain nets it is the eval-mode pass `probe` makes, so every statistic is the same float."""
    with_grads = probe.measure(act, 4, 50, init, {}, replicas=3, samples=120, grads=True)
    probe_only = probe.measure(act, 4, 50, init, {}, replicas=3, samples=120, grads=False)
    for layer, stats in probe_only["stats"].items():
        for key, value in stats.items():
            assert np.array_equal(with_grads["stats"][layer][key], value), (layer, key)
        assert set(with_grads["stats"][layer]) == set(stats) | {"grad_norm", "dz_norm"}
    for a, b in zip(with_grads["taps"], probe_only["taps"], strict=True):
        assert np.array_equal(a["a"], b["a"]) and np.array_equal(a["z"], b["z"])
