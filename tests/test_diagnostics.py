"""Diagnostics on hand-made taps (exact answers) and on real nets (the S2 phenomena in miniature)."""

import numpy as np
import pytest

from src.nn import MLP
from src.nn.diagnostics import histograms, layer_stats


def _out_tap(R=2, m=4):
    return {"a": np.full((R, m, 1), 0.5)}


def test_relu_dead_fraction_on_a_hand_made_tap():
    a = np.abs(np.random.default_rng(0).standard_normal((2, 4, 5))) + 0.1
    a[0, :, [1, 3]] = 0.0  # replica 0: units 1 and 3 never fire -> dead 2/5
    a[1, :3, 2] = 0.0  # replica 1: unit 2 fires on one sample -> not dead
    stats = layer_stats([{"a": a}, _out_tap()], "relu")
    np.testing.assert_allclose(stats["layer1/dead"], [0.4, 0.0])
    np.testing.assert_allclose(stats["layer1/saturated"], [0.0, 0.0])  # relu does not saturate
    np.testing.assert_allclose(stats["layer1/act_mean"], a.reshape(2, -1).mean(axis=1))
    np.testing.assert_allclose(stats["layer1/act_std"], a.reshape(2, -1).std(axis=1))
    assert all(v.shape == (2,) for v in stats.values())


def test_tanh_and_sigmoid_saturation_on_hand_made_taps():
    a = np.array([[[0.995, -0.999, 0.5, 0.0], [0.2, -0.1, 0.98, -1.0]]])  # 3 of 8 entries have |a| > 0.99
    stats = layer_stats([{"a": a}, _out_tap(R=1, m=2)], "tanh")
    np.testing.assert_allclose(stats["layer1/saturated"], [3 / 8])
    np.testing.assert_allclose(stats["layer1/dead"], [0.0])  # dead is a ReLU notion
    s = np.array([[[0.001, 0.5, 0.999, 0.98]]])  # 2 of 4 outside [0.01, 0.99]
    stats = layer_stats([{"a": s}, _out_tap(R=1, m=1)], "sigmoid")
    np.testing.assert_allclose(stats["layer1/saturated"], [0.5])


def test_output_layer_saturation_and_grad_norm():
    out_bin = {"a": np.array([[[0.999], [0.5], [0.001], [0.3]]]), "dW": np.full((1, 3, 1), 2.0)}
    hidden = {"a": np.ones((1, 4, 3)), "dW": np.array([[[3.0, 4.0]]])}
    stats = layer_stats([hidden, out_bin], "relu")
    np.testing.assert_allclose(stats["layer2/saturated"], [0.5])
    np.testing.assert_allclose(stats["layer1/grad_norm"], [5.0])
    np.testing.assert_allclose(stats["layer2/grad_norm"], [np.sqrt(12.0)])
    soft = {"a": np.array([[[0.995, 0.005, 0.0], [0.4, 0.3, 0.3]]])}
    stats = layer_stats([{"a": np.ones((1, 2, 3))}, soft], "relu")
    np.testing.assert_allclose(stats["layer2/saturated"], [0.5])  # one of two samples is (over)confident
    assert "layer1/grad_norm" not in stats  # probe taps carry no gradients


def test_histograms_counts_and_edges():
    g = np.random.default_rng(1)
    a = g.standard_normal((3, 50, 4))
    a[0, 0, 0] = np.nan
    (counts, edges), (c2, e2) = histograms([{"a": a}, {"a": a[..., :1]}], bins=12)
    assert counts.shape == (3, 12) and edges.shape == (13,)
    np.testing.assert_array_equal(counts.sum(axis=1), [199, 200, 200])  # NaN not counted
    assert edges[0] == np.nanmin(a) and edges[-1] == np.nanmax(a)
    (counts, edges), = histograms([{"a": a}], bins=4, range=(-1.0, 1.0))
    np.testing.assert_allclose(edges, [-1.0, -0.5, 0.0, 0.5, 1.0])
    inside = (np.abs(a) <= 1.0).reshape(3, -1).sum(axis=1)
    np.testing.assert_array_equal(counts.sum(axis=1), inside)
    (const, cedges), = histograms([{"a": np.zeros((1, 5, 2))}], bins=5)
    assert const.sum() == 10 and cedges[0] < 0 < cedges[-1]


@pytest.fixture(scope="module")
def x_random():
    return np.random.default_rng(2).standard_normal((500, 100))


def test_s2_relu_small_init_collapses_and_he_is_stable(x_random):
    sizes = [100] * 6 + [1]
    small = layer_stats(MLP(sizes, "relu", init="normal", init_kwargs={"std": 0.01}).probe(x_random), "relu")
    he = layer_stats(MLP(sizes, "relu", init="he_normal").probe(x_random), "relu")
    # each layer multiplies the scale by about 0.01 * sqrt(100 / 2) = 0.07: 1.7e-6 after five layers
    stds = [small[f"layer{l}/act_std"][0] for l in range(1, 6)]
    assert all(0.03 < b / a < 0.15 for a, b in zip(stds, stds[1:], strict=False))
    assert stds[-1] < 1e-5
    ratio = he["layer5/act_std"][0] / he["layer1/act_std"][0]
    assert 0.3 < ratio < 3.0


def test_s2_tanh_large_init_saturates_and_sigmoid_small_init_sits_at_half(x_random):
    sizes = [100] * 6 + [1]
    big = layer_stats(MLP(sizes, "tanh", init="normal", init_kwargs={"std": 1.0}).probe(x_random), "tanh")
    assert big["layer3/saturated"][0] > 0.7  # z has std ~8, so most |z| > 2.65 where |tanh| > 0.99
    sig = layer_stats(MLP(sizes, "sigmoid", init="normal", init_kwargs={"std": 0.01}).probe(x_random), "sigmoid")
    assert abs(sig["layer5/act_mean"][0] - 0.5) < 0.01 and sig["layer5/act_std"][0] < 0.02  # all near 0.5


def test_stats_from_training_taps_include_gradient_norms():
    g = np.random.default_rng(3)
    X, y = g.standard_normal((30, 4)), g.integers(0, 2, 30)
    net = MLP([4, 8, 8, 1], "sigmoid", init="normal", replicas=2, seed=0)
    _, grads, taps = net.loss_and_grads(X, y, taps=True)
    stats = layer_stats(taps, "sigmoid")
    for l in (1, 2, 3):
        np.testing.assert_allclose(stats[f"layer{l}/grad_norm"], np.sqrt((grads[f"W{l}"] ** 2).sum(axis=(1, 2))))
    assert len(histograms(taps)) == 3
