"""Gradient clipping: norms, by value, by norm (Pascanu et al.), per-replica thresholds, non-finite values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.nn.clipping import clip_by_norm, clip_by_value, global_norm


def grads_of(R=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"W1": scale * rng.normal(size=(R, 4, 5)), "b1": scale * rng.normal(size=(R, 5)),
            "W2": scale * rng.normal(size=(R, 5, 1)), "b2": scale * rng.normal(size=(R, 1))}


def norm_by_hand(grads):
    R = next(iter(grads.values())).shape[0]
    return np.array([np.sqrt(sum(float(np.sum(g[r] ** 2)) for g in grads.values())) for r in range(R)])


# -- global_norm --------------------------------------------------------------------------------------------------


def test_global_norm_per_replica():
    grads = {"a": np.array([[3.0, 0.0], [1.0, 1.0]]), "b": np.array([[[4.0]], [[1.0]]])}
    np.testing.assert_allclose(global_norm(grads), [5.0, np.sqrt(3.0)], rtol=1e-15)
    g = grads_of()
    np.testing.assert_allclose(global_norm(g), norm_by_hand(g), rtol=1e-13)
    assert global_norm(g).shape == (3,)


def test_global_norm_of_an_mlps_gradients_sums_their_one_buffer():
    """An MLP's gradients tile one (R, P) array (src/nn/_flat.py): global_norm takes one product over it, which must
    be the norm over the separate arrays (also when the arrays are copies that tile nothing)."""
    from src.nn import MLP

    rng = np.random.default_rng(2)
    net = MLP([3, 7, 4, 2], replicas=3, seed=1, batchnorm=True)
    _, grads = net.loss_and_grads(rng.normal(size=(9, 3)), rng.integers(0, 2, 9))
    copies = {k: g.copy() for k, g in grads.items()}
    np.testing.assert_allclose(global_norm(grads), norm_by_hand(copies), rtol=1e-13)
    np.testing.assert_allclose(global_norm(grads), global_norm(copies), rtol=1e-14)


def test_global_norm_does_not_overflow_or_underflow():
    for scale in (1e200, 1e-170):
        g = grads_of(seed=1, scale=scale)
        expected = norm_by_hand(grads_of(seed=1)) * scale
        out = global_norm(g)
        assert np.all(np.isfinite(out)) and np.all(out > 0)
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_global_norm_of_float32_is_accumulated_in_float64():
    g = {k: v.astype(np.float32) * np.float32(1e20) for k, v in grads_of(seed=2).items()}  # squares overflow f32
    out = global_norm(g)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, norm_by_hand({k: v.astype(np.float64) for k, v in g.items()}), rtol=1e-6)


def test_global_norm_keeps_non_finite_visible():
    g = grads_of()
    g["b1"][0, 1] = np.nan
    g["W2"][1, 2, 0] = np.inf
    out = global_norm(g)
    assert np.isnan(out[0]) and out[1] == np.inf and np.isfinite(out[2])


# -- clip_by_value ------------------------------------------------------------------------------------------------


def test_clip_by_value_clamps_in_place_and_returns_pre_clip_norm():
    g = grads_of(scale=3.0)
    before = {k: v.copy() for k, v in g.items()}
    ids = {k: id(v) for k, v in g.items()}
    pre = clip_by_value(g, 1.0)
    np.testing.assert_allclose(pre, norm_by_hand(before), rtol=1e-13)
    for k in g:
        assert id(g[k]) == ids[k]
        np.testing.assert_array_equal(g[k], np.clip(before[k], -1.0, 1.0))


def test_clip_by_value_per_replica_with_inf_meaning_none():
    g = grads_of(scale=3.0)
    before = {k: v.copy() for k, v in g.items()}
    clip_by_value(g, np.array([0.5, np.inf, 2.0]))
    for k in g:
        np.testing.assert_array_equal(g[k][0], np.clip(before[k][0], -0.5, 0.5))
        np.testing.assert_array_equal(g[k][1], before[k][1])
        np.testing.assert_array_equal(g[k][2], np.clip(before[k][2], -2.0, 2.0))
    g2 = {k: v.copy() for k, v in before.items()}
    clip_by_value(g2, np.inf)
    for k in g2:
        np.testing.assert_array_equal(g2[k], before[k])


def test_clip_by_value_keeps_nan_and_reports_inf():
    g = grads_of(scale=3.0)
    g["W1"][0, 0, 0] = np.nan
    g["W1"][1, 0, 0] = -np.inf
    pre = clip_by_value(g, 1.0)
    assert np.isnan(g["W1"][0, 0, 0])  # NaN is not turned into a number
    assert g["W1"][1, 0, 0] == -1.0  # clamping maps -inf to -c ...
    assert np.isnan(pre[0]) and pre[1] == np.inf  # ... but the returned pre-clip norm says what happened
    assert np.isfinite(pre[2])


# -- clip_by_norm ---------------------------------------------------------------------------------------------------


def test_clip_by_norm_hits_max_norm_and_keeps_direction():
    g = grads_of(scale=5.0)
    before = {k: v.copy() for k, v in g.items()}
    pre = clip_by_norm(g, 1.0, eps=0.0)
    assert np.all(pre > 1.0)
    np.testing.assert_allclose(global_norm(g), 1.0, rtol=0, atol=1e-9)
    for k in g:
        np.testing.assert_allclose(g[k], before[k] / pre.reshape((-1,) + (1,) * (g[k].ndim - 1)), rtol=1e-14)


def test_clip_by_norm_default_eps_is_torchs():
    g = grads_of(scale=5.0)
    pre = clip_by_norm(g, 2.0)
    np.testing.assert_allclose(global_norm(g), 2.0 * pre / (pre + 1e-6), rtol=1e-13)


def test_clip_by_norm_leaves_small_gradients_bit_for_bit():
    g = grads_of(scale=0.01)
    before = {k: v.copy() for k, v in g.items()}
    pre = clip_by_norm(g, 10.0)
    assert np.all(pre < 10.0)
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_clip_by_norm_per_replica_thresholds():
    g = grads_of(scale=1.0)
    pre = global_norm(g)
    before = {k: v.copy() for k, v in g.items()}
    thresholds = np.array([pre[0] / 2, np.inf, pre[2] * 2])
    out = clip_by_norm(g, thresholds, eps=0.0)
    np.testing.assert_array_equal(out, pre)
    after = global_norm(g)
    assert after[0] == pytest.approx(pre[0] / 2, abs=1e-9)
    for k in g:
        np.testing.assert_array_equal(g[k][1:], before[k][1:])


def test_clip_by_norm_nan_propagates_and_does_not_poison_other_replicas():
    g = grads_of(scale=5.0)
    g["b2"][0, 0] = np.nan
    g["W1"][1, 2, 3] = np.inf
    clip_by_norm(g, 1.0)
    post = global_norm(g)
    assert np.isnan(g["b2"][0, 0]) and np.isnan(post[0])  # NaN replica untouched, still NaN
    assert np.isnan(post[1])  # inf · 0 = NaN: still detectable
    assert post[2] == pytest.approx(1.0, abs=1e-6)


def test_clip_by_norm_rescales_huge_finite_gradients_instead_of_zeroing_them():
    g = grads_of(scale=1e200)
    direction = grads_of()
    clip_by_norm(g, 1.0, eps=0.0)
    np.testing.assert_allclose(global_norm(g), 1.0, atol=1e-9)
    scale = norm_by_hand(direction)
    for k in g:
        np.testing.assert_allclose(g[k], direction[k] / scale.reshape((-1,) + (1,) * (g[k].ndim - 1)), rtol=1e-12)


def test_float32_grads_are_clipped_in_place():
    g = {k: v.astype(np.float32) for k, v in grads_of(scale=5.0).items()}
    clip_by_norm(g, 1.0)
    assert all(v.dtype == np.float32 for v in g.values())
    np.testing.assert_allclose(global_norm(g), 1.0, rtol=1e-5)
    clip_by_value(g, 0.1)
    assert all(np.abs(v).max() <= np.float32(0.1) for v in g.values())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), log_scale=st.floats(-150, 150), log_max=st.floats(-3, 3))
def test_clip_by_norm_property(seed, log_scale, log_max):
    """For any scale: the clipped norm is min(‖g‖, max_norm) (eps=0) and the direction is unchanged."""
    g = grads_of(R=2, seed=seed % 1000, scale=10.0**log_scale)
    before = {k: v.copy() for k, v in g.items()}
    max_norm = 10.0**log_max
    pre = clip_by_norm(g, max_norm, eps=0.0)
    post = global_norm(g)
    np.testing.assert_allclose(post, np.minimum(pre, max_norm), rtol=1e-12)
    for k in g:
        ratio = post / pre
        np.testing.assert_allclose(g[k], before[k] * ratio.reshape((-1,) + (1,) * (g[k].ndim - 1)), rtol=1e-12)


# -- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), np.array([1.0, -1.0, 1.0]), "big", None])
@pytest.mark.parametrize("fn", [clip_by_value, clip_by_norm])
def test_invalid_thresholds(fn, bad):
    with pytest.raises(ValueError) as exc:
        fn(grads_of(), bad)
    msg = str(exc.value)
    assert "valid" in msg and "\n" not in msg


@pytest.mark.parametrize("fn", [clip_by_value, clip_by_norm])
def test_threshold_array_must_have_one_value_per_replica(fn):
    with pytest.raises(ValueError, match="R=3"):
        fn(grads_of(), np.array([1.0, 2.0]))


def test_empty_or_inconsistent_grads_are_refused():
    with pytest.raises(ValueError, match="empty"):
        global_norm({})
    with pytest.raises(ValueError, match="replicas"):
        global_norm({"a": np.ones((2, 3)), "b": np.ones((3, 3))})
    with pytest.raises(ValueError, match="eps"):
        clip_by_norm(grads_of(), 1.0, eps=-1.0)


# The S4 toy (loss x⁴ from x = 10, lr 0.1) runs these functions through src/studies/toys.py: tests/test_toys.py.
