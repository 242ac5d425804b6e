"""Layers: every backward pass against finite differences, plus the properties each layer promises."""

import warnings

import numpy as np
import pytest

from src.nn.gradcheck import check_layer
from src.nn.layers import (
    ACTIVATIONS,
    activation_backward,
    activation_forward,
    batchnorm_backward,
    batchnorm_forward,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    sigmoid,
)

TOL = 1e-7
R, M, DIN, DOUT = 3, 6, 4, 5


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("shared_x", [False, True])
def test_dense_gradients(shared_x):
    g = rng(1)
    x = g.standard_normal((M, DIN) if shared_x else (R, M, DIN))
    W = g.standard_normal((R, DIN, DOUT))
    b = g.standard_normal((R, DOUT))
    dout = g.standard_normal((R, M, DOUT))
    errs = check_layer(dense_forward, dense_backward, {"x": x, "W": W, "b": b}, dout)
    assert set(errs) == {"x", "W", "b"}
    assert max(errs.values()) < TOL, errs
    out, cache = dense_forward(x, W, b)
    dx, dW, db = dense_backward(dout, cache)
    assert out.shape == (R, M, DOUT) and dW.shape == W.shape and db.shape == b.shape and dx.shape == x.shape
    assert dense_backward(dout, cache, need_dx=False)[0] is None


def test_dense_replicas_do_not_mix():
    g = rng(2)
    x, W, b = g.standard_normal((R, M, DIN)), g.standard_normal((R, DIN, DOUT)), g.standard_normal((R, DOUT))
    out, _ = dense_forward(x, W, b)
    for r in range(R):
        np.testing.assert_allclose(out[r], x[r] @ W[r] + b[r], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradients(name):
    g = rng(3)
    z = g.standard_normal((R, M, DOUT))
    z += np.sign(z) * 0.1  # keep every input away from the ReLU kink at 0
    dout = g.standard_normal(z.shape)
    errs = check_layer(lambda z: activation_forward(name, z, slope=0.05),
                       lambda d, c: activation_backward(name, d, c), {"z": z}, dout)
    assert errs["z"] < TOL, errs


def test_activation_values():
    z = np.array([[-2.0, -0.5, 0.5, 3.0]])
    assert np.array_equal(activation_forward("relu", z)[0], [[0.0, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(activation_forward("leaky_relu", z, slope=0.1)[0], [[-0.2, -0.05, 0.5, 3.0]])
    np.testing.assert_allclose(activation_forward("tanh", z)[0], np.tanh(z))
    np.testing.assert_allclose(activation_forward("sigmoid", z)[0], 1 / (1 + np.exp(-z)), rtol=1e-15)
    assert activation_forward("identity", z)[0] is z
    with pytest.raises(ValueError, match="valid: sigmoid, tanh, relu, leaky_relu, identity"):
        activation_forward("swish", z)


def test_sigmoid_is_stable_and_precise_in_the_tails():
    z = np.array([-1e3, -50.0, 0.0, 50.0, 1e3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is exact enough
            a = sigmoid(z)
    assert np.all(np.isfinite(a))
    assert a[0] == 0.0 and a[-1] == 1.0 and a[2] == 0.5
    assert a[1] == pytest.approx(np.exp(-50.0), rel=1e-14)  # full relative precision in the lower tail


def _bn_pair(state, train, momentum=0.9):
    """Forward with a fresh copy of the running stats each call (finite differences call it many times)."""
    def fwd(x, gamma, beta):
        st = {k: v.copy() for k, v in state.items()}
        return batchnorm_forward(x, gamma, beta, st, train, momentum=momentum)
    return fwd


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradients(train):
    g = rng(4)
    x = 2.0 * g.standard_normal((R, M, DOUT)) + 1.0
    gamma = 1.0 + 0.3 * g.standard_normal((R, DOUT))
    beta = g.standard_normal((R, DOUT))
    state = {"running_mean": g.standard_normal((R, DOUT)), "running_var": 1.0 + g.random((R, DOUT))}
    dout = g.standard_normal(x.shape)
    errs = check_layer(_bn_pair(state, train), batchnorm_backward, {"x": x, "gamma": gamma, "beta": beta}, dout)
    assert max(errs.values()) < TOL, errs


def test_batchnorm_train_normalises_each_replica_and_updates_running_stats():
    g = rng(5)
    x = 3.0 * g.standard_normal((R, M, DOUT)) + np.arange(R)[:, None, None]
    gamma, beta = np.ones((R, DOUT)), np.zeros((R, DOUT))
    state = {"running_mean": np.zeros((R, DOUT)), "running_var": np.ones((R, DOUT))}
    rm_id = id(state["running_mean"])
    out, _ = batchnorm_forward(x, gamma, beta, state, train=True, momentum=0.9, eps=1e-5)
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=1), x.var(axis=1) / (x.var(axis=1) + 1e-5), rtol=1e-12)
    mu, var = x.mean(axis=1), x.var(axis=1)
    np.testing.assert_allclose(state["running_mean"], 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], 0.9 + 0.1 * var, rtol=1e-12)
    assert id(state["running_mean"]) == rm_id  # updated in place (the net's state dict sees it)
    x2 = g.standard_normal((R, M, DOUT))
    batchnorm_forward(x2, gamma, beta, state, train=True, momentum=0.9)
    np.testing.assert_allclose(state["running_mean"], 0.9 * 0.1 * mu + 0.1 * x2.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], 0.9 * (0.9 + 0.1 * var) + 0.1 * x2.var(axis=1), rtol=1e-12)


def test_batchnorm_eval_uses_running_stats_and_changes_nothing():
    g = rng(6)
    x = g.standard_normal((R, M, DOUT))
    gamma, beta = g.standard_normal((R, DOUT)), g.standard_normal((R, DOUT))
    rm, rv = g.standard_normal((R, DOUT)), 0.5 + g.random((R, DOUT))
    state = {"running_mean": rm.copy(), "running_var": rv.copy()}
    out, _ = batchnorm_forward(x, gamma, beta, state, train=False, eps=1e-5)
    expected = gamma[:, None, :] * (x - rm[:, None, :]) / np.sqrt(rv[:, None, :] + 1e-5) + beta[:, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(state["running_mean"], rm) and np.array_equal(state["running_var"], rv)
    # one sample at a time gives the same outputs in eval mode (no batch dependence)
    single, _ = batchnorm_forward(x[:, :1], gamma, beta, state, train=False)
    np.testing.assert_allclose(single, out[:, :1], rtol=1e-13)


def test_dropout_gradient_with_fixed_mask():
    g = rng(7)
    x = g.standard_normal((R, M, DOUT))
    mask = g.random(x.shape) >= 0.4
    dout = g.standard_normal(x.shape)
    errs = check_layer(lambda x: dropout_forward(x, 0.4, True, mask=mask), dropout_backward, {"x": x}, dout)
    assert errs["x"] < TOL
    out, _ = dropout_forward(x, 0.4, True, mask=mask)
    np.testing.assert_allclose(out, x * mask / 0.6, rtol=1e-15)


def test_dropout_statistics_eval_identity_and_per_replica_streams():
    x = np.ones((4, 2000, 50))
    p = 0.3
    rngs = [np.random.default_rng([s, 1]) for s in range(4)]
    out, cache = dropout_forward(x, p, True, rngs=rngs)
    kept = out != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.005)
    np.testing.assert_allclose(out[kept], 1 / (1 - p))  # inverted: survivors are scaled up
    assert out.mean() == pytest.approx(1.0, abs=0.01)  # expectation preserved
    dx = dropout_backward(np.ones_like(x), cache)
    assert np.array_equal(dx != 0, kept)
    # replica 2's mask is what a lone generator with replica 2's seed draws
    lone, _ = dropout_forward(x[2:3], p, True, rngs=[np.random.default_rng([2, 1])])
    assert np.array_equal(lone[0], out[2])
    # eval mode and p=0 are the identity
    assert dropout_forward(x, p, False)[0] is x
    assert dropout_forward(x, 0.0, True, rngs=rngs)[0] is x


def test_dropout_errors():
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="drop probability"):
        dropout_forward(x, 1.0, True, rngs=[rng(), rng()])
    with pytest.raises(ValueError, match="rngs"):
        dropout_forward(x, 0.5, True)
    with pytest.raises(ValueError, match="2 replicas"):
        dropout_forward(x, 0.5, True, rngs=[rng()])
    with pytest.raises(ValueError, match="shape"):
        dropout_forward(x, 0.5, True, mask=np.ones((2, 3)))


def test_sigmoid_select_without_branch_equals_the_two_branch_form():
    """σ = max(e, [z ≥ 0]) / (1 + e) must be bit-for-bit the textbook where(z ≥ 0, 1/(1+e), e/(1+e))."""
    z = np.concatenate([np.random.default_rng(0).standard_normal(1000) * 20,
                        [0.0, -0.0, 1e-300, -1e-300, 745.0, -745.0, 1e3, -1e3, np.inf, -np.inf, np.nan]])
    for dt in (np.float64, np.float32):
        zz = z.astype(dt)
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(-np.abs(zz))
            want = np.where(zz >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            got = sigmoid(zz)
        assert got.dtype == dt
        np.testing.assert_array_equal(got, want)


def _layer_step(x, params, dout, ws):
    """dense -> batch norm -> each activation -> dropout, forward and backward, all into `ws` scopes."""
    W, b, gamma, beta = params
    out = {}
    z, dc = dense_forward(x, W, b, ws=ws[0])
    h, bc = batchnorm_forward(z, gamma, beta, {"running_mean": np.zeros((R, DOUT)),
                                               "running_var": np.ones((R, DOUT))}, True, ws=ws[1])
    d = dout
    for i, name in enumerate(ACTIVATIONS):
        a, ac = activation_forward(name, h, slope=0.1, ws=ws[2 + i])
        out[f"a_{name}"] = a
        out[f"dz_{name}"] = activation_backward(name, d, ac, ws=ws[2 + i])
    a, dr = dropout_forward(out["a_tanh"], 0.3, True, mask=np.arange(R * M * DOUT).reshape(R, M, DOUT) % 3 > 0,
                            ws=ws[-1])
    out["drop"], out["ddrop"] = a, dropout_backward(d, dr, ws=ws[-1])
    out["dbn"], out["dgamma"], out["dbeta"] = batchnorm_backward(out["dz_tanh"], bc, ws=ws[1])
    out["dx"], out["dW"], out["db"] = dense_backward(out["dbn"], dc, ws=ws[0])
    out["z"], out["h"] = z, h
    return out


def test_workspace_reuses_arrays_and_gives_the_fresh_numbers():
    from src.nn.workspace import FRESH, Workspace

    g = rng(11)
    params = (g.standard_normal((R, DIN, DOUT)), g.standard_normal((R, DOUT)),
              1.0 + 0.1 * g.standard_normal((R, DOUT)), g.standard_normal((R, DOUT)))
    ws = [Workspace() for _ in range(3 + len(ACTIVATIONS))]
    first = _layer_step(g.standard_normal((R, M, DIN)), params, g.standard_normal((R, M, DOUT)), ws)
    x2, d2 = g.standard_normal((R, M, DIN)), g.standard_normal((R, M, DOUT))
    second = _layer_step(x2, params, d2, ws)
    fresh = _layer_step(x2, params, d2, [FRESH] * len(ws))
    for k, v in second.items():
        np.testing.assert_array_equal(v, fresh[k], err_msg=k)
        if k not in ("a_identity", "dz_identity"):  # identity returns its input
            assert v is first[k], k  # the same memory, written again
            assert v is not fresh[k]


@pytest.mark.parametrize("shape", [(32, 300, 10), (32, 300, 5), (8, 397, 10), (2, 7, 3), (300, 10), (4, 256, 1),
                                   (3, 2, 64, 130)])
def test_add_bias_is_the_broadcast_add_bit_for_bit(shape):
    """The grouped-rows add (k rows as one row of k·d values, the bias tiled k times) gives exactly the floats of
    ``z + b[..., None, :]``, whatever m's divisors (397 is prime), for small arrays (the plain path) and with
    extra leading axes; it writes into z itself."""
    from src.nn.layers import _rows_per_group, add_bias

    g = rng(7)
    z = g.standard_normal(shape) * 1e3
    b = g.standard_normal(shape[:-2] + shape[-1:])
    want = z + b[..., None, :]
    got = add_bias(z, b)
    assert got is z and np.array_equal(got, want)
    m, d = shape[-2:]
    k = _rows_per_group(m, d)
    assert m % k == 0 and (k == 1 or k * d <= 128)


def test_add_bias_on_a_strided_array_writes_through():
    """A non-contiguous z (a slice of a larger array) cannot be regrouped as a view: the plain add, in place."""
    from src.nn.layers import add_bias

    g = rng(8)
    big = g.standard_normal((32, 300, 20))
    z, b = big[..., :10], g.standard_normal((32, 10))
    want = z + b[:, None, :]
    add_bias(z, b)
    assert np.array_equal(big[..., :10], want)


def test_relu_against_kept_zeros_is_max_with_zero_and_never_writes_them():
    """ReLU as ``maximum(z, zeros)`` (SIMD in NumPy 2, the scalar form is not) is ``maximum(z, 0.0)`` element for
    element: NaN stays NaN, ±inf and -0.0 as before; the kept zeros stay zero through forward and backward."""
    from src.nn.workspace import Workspace

    z = np.array([[[np.nan, -np.inf, np.inf, -0.0, 0.0, -1e-300, 1e-300, -3.0, 2.5]]])
    ws = Workspace()
    for _ in range(2):  # the second call writes into the kept arrays
        a, cache = activation_forward("relu", z, ws=ws)
        activation_backward("relu", np.ones_like(z), cache, ws=ws)
        with np.errstate(invalid="ignore"):
            want = np.maximum(z, 0.0)
        assert np.array_equal(a, want, equal_nan=True)
        assert np.array_equal(np.signbit(a), np.signbit(want))
        assert not ws["zeros"].any()


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_inplace_activation_is_the_same_floats_written_into_its_input(name):
    """``inplace=True`` (the training step's: z and da are then nobody else's) gives the out-of-place result bit for
    bit, forward, backward and the cache-free `activation`, over signed zeros, tails and NaN; the output lands in z
    itself (and, for the ReLU family, dz in da), while the out-of-place calls leave their inputs alone."""
    from src.nn.layers import activation
    from src.nn.workspace import Workspace

    g = rng(21)
    z = g.standard_normal((R, M, DOUT)) * 30
    z[0, 0, :] = [0.0, -0.0, np.nan, 1e3, -1e3]
    da = g.standard_normal(z.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        z0, da0 = z.copy(), da.copy()
        want_a, want_cache = activation_forward(name, z, slope=0.1)
        want_dz = activation_backward(name, da, want_cache)
        want_eval = activation(name, z, slope=0.1)
        assert np.array_equal(z, z0, equal_nan=True) and np.array_equal(da, da0, equal_nan=True)
        for ws in (Workspace(), Workspace()):  # a second call writes into what the first kept
            zz, dd = z.copy(), da.copy()
            a, cache = activation_forward(name, zz, slope=0.1, ws=ws, inplace=True)
            assert np.shares_memory(a, zz)
            np.testing.assert_array_equal(a, want_a)
            assert np.array_equal(np.signbit(a), np.signbit(want_a))
            dz = activation_backward(name, dd, cache, ws=ws, inplace=True)
            np.testing.assert_array_equal(dz, want_dz)
            assert np.shares_memory(dz, dd) == (name in ("relu", "leaky_relu", "identity"))
            ze = z.copy()
            np.testing.assert_array_equal(activation(name, ze, slope=0.1, ws=ws, inplace=True), want_eval)
            assert np.shares_memory(activation(name, ze, slope=0.1, ws=ws, inplace=True), ze)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3, 6, 4, 5), (32, 300, 10, 5), (32, 300, 5, 10), (4, 50, 7, 15), (1, 9, 7, 1),
                                   (2, 40, 100, 100), (3, 20, 8, 16)])
def test_dense_backward_dx_is_the_product_with_w_transposed(shape, dtype):
    """dx = dout·Wᵀ: for dout narrower than 16 through a kept contiguous copy of Wᵀ (the product to rounding: on
    the box where it was measured, the same floats as the transposed view, but that is the BLAS kernel's business),
    else through the view itself (the same floats by construction); a later call with new weights uses the new
    ones, and the kept copy never aliases W."""
    from src.nn.layers import _WT_COPY_BELOW
    from src.nn.workspace import Workspace

    R_, m, din, dout_ = shape
    g = rng(22)
    x, dout = g.standard_normal((R_, m, din)).astype(dtype), g.standard_normal((R_, m, dout_)).astype(dtype)
    ws = Workspace()
    for _ in range(2):
        W = g.standard_normal((R_, din, dout_)).astype(dtype)
        dx, _, _ = dense_backward(dout, (x, W), ws=ws)
        want = np.matmul(dout, W.swapaxes(-1, -2))
        if dout_ < _WT_COPY_BELOW:
            np.testing.assert_allclose(dx, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
        else:
            np.testing.assert_array_equal(dx, want)
    assert ("WT" in ws) == (dout_ < _WT_COPY_BELOW)
    if "WT" in ws:
        assert not np.shares_memory(ws["WT"], W)
