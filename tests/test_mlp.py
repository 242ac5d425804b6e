"""The R-replica MLP: full-network gradient checks, replica independence, symmetry, modes and snapshots."""

import numpy as np
import pytest

from src.nn import MLP, gradcheck
from src.nn.initializers import course_params

TOL = 1e-7


def data(m=8, d=4, classes=2, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((m, d)), g.integers(0, classes, m)


# --- gradient checks of the whole network -----------------------------------------------------------------------

CASES = [
    # activation, batchnorm, dropout, l2, n_out
    ("sigmoid", False, 0.0, 0.0, 1),
    ("sigmoid", False, 0.0, 0.0, 3),
    ("tanh", False, 0.0, 0.0, 1),
    ("tanh", False, 0.0, 0.0, 3),
    ("leaky_relu", False, 0.0, 0.0, 1),
    ("leaky_relu", False, 0.0, 0.0, 3),
    ("identity", False, 0.0, 0.0, 3),
    ("tanh", True, 0.0, 0.0, 1),
    ("leaky_relu", True, 0.0, 0.0, 3),
    ("sigmoid", True, 0.0, 0.0, 1),
    ("tanh", False, 0.3, 0.0, 1),
    ("leaky_relu", False, 0.3, 0.0, 3),
    ("tanh", False, 0.0, 0.7, 1),
    ("sigmoid", False, 0.0, 0.7, 3),
    ("leaky_relu", True, 0.25, 0.5, 3),
    ("tanh", True, 0.25, 0.5, 1),
]


@pytest.mark.parametrize(("activation", "bn", "drop", "l2", "n_out"), CASES)
def test_mlp_gradcheck(activation, bn, drop, l2, n_out):
    X, y = data(classes=max(n_out, 2))
    net = MLP([4, 5, 3, n_out], activation=activation, init="normal", replicas=3, seed=1,
              batchnorm=bn, dropout=drop, l2=l2, leaky_slope=0.1)
    # A sigmoid+BN net has small gradients (sigma' <= 1/4 behind a normalised layer), so at eps=1e-7 the rounding
    # noise of the loss (~ulp/eps per entry) is a visible part of 1e-7; a 10x larger eps keeps a clear margin.
    eps = 1e-6 if (activation == "sigmoid" and bn) else 1e-7
    errs = gradcheck.check_mlp(net, X, y, eps=eps)
    assert set(errs) == set(net.params)
    assert max(errs.values()) < TOL, errs


@pytest.mark.parametrize(("activation", "bn", "drop", "l2", "n_out"), CASES)
def test_train_loss_is_the_loss_of_loss_and_grads(activation, bn, drop, l2, n_out):
    # gradcheck differentiates train_loss: it must be the very floats loss_and_grads returns, with no side effect
    X, y = data(classes=max(n_out, 2))
    net = MLP([4, 5, 3, n_out], activation=activation, replicas=3, seed=1, batchnorm=bn, dropout=drop,
              l2=np.array([0.0, l2, 2 * l2]), leaky_slope=0.1)
    masks = None if drop == 0 else [np.random.default_rng(0).random((3, len(y), w)) >= drop for w in (5, 3)]
    state = {k: v.copy() for k, v in net.state.items()}
    loss = net.train_loss(X, y, dropout_mask=masks)
    for k, v in state.items():
        assert np.array_equal(net.state[k], v), k  # running statistics untouched
    assert np.array_equal(loss, net.loss_and_grads(X, y, dropout_mask=masks)[0])


def test_mlp_gradcheck_relu_away_from_kinks():
    X, y = data(m=6)
    net = MLP([4, 6, 4, 1], activation="relu", init="he_normal", replicas=3, seed=3, l2=0.1)
    taps = net.probe(X)
    assert min(np.abs(t["z"]).min() for t in taps[:-1]) > 1e-4  # no pre-activation within eps of the kink
    errs = gradcheck.check_mlp(net, X, y)
    assert max(errs.values()) < TOL, errs


def test_mlp_gradcheck_per_replica_inputs_and_l2():
    g = np.random.default_rng(5)
    X = g.standard_normal((3, 7, 4))
    y = g.integers(0, 3, (3, 7))
    net = MLP([4, 5, 3], activation="tanh", init="xavier_normal", replicas=3, seed=2, l2=np.array([0.0, 0.5, 2.0]))
    errs = gradcheck.check_mlp(net, X, y)
    assert max(errs.values()) < TOL, errs


# --- replica independence ---------------------------------------------------------------------------------------


def _singles(seeds, **kw):
    return [MLP(seeds=[s], **kw) for s in seeds]


@pytest.mark.parametrize("kw", [
    {"activation": "relu"},
    {"activation": "tanh", "dropout": 0.3},
    {"activation": "relu", "batchnorm": True},
    {"activation": "sigmoid", "batchnorm": True, "dropout": 0.2, "l2": 0.4},
])
@pytest.mark.parametrize("n_out", [1, 3])
def test_replicas_equal_independent_single_nets(kw, n_out):
    seeds = [11, 12, 13, 14]
    X, y = data(m=9, d=3, classes=max(n_out, 2), seed=4)
    big = MLP([3, 6, 5, n_out], seeds=seeds, **kw)
    small = _singles(seeds, sizes=[3, 6, 5, n_out], **kw)
    assert MLP([3, 6, 5, n_out], replicas=4, seed=11, **kw).seeds == seeds
    for _ in range(2):  # two calls: the dropout streams and BN running stats must stay in step too
        loss, grads = big.loss_and_grads(X, y)
        for r, net in enumerate(small):
            l1, g1 = net.loss_and_grads(X, y)
            np.testing.assert_allclose(loss[r], l1[0], rtol=0, atol=1e-12)
            for k in grads:
                np.testing.assert_allclose(grads[k][r], g1[k][0], rtol=0, atol=1e-12)
    for r, net in enumerate(small):
        for k in big.params:
            assert np.array_equal(big.params[k][r], net.params[k][0])  # same initial draw, whatever R
        for k in big.state:
            np.testing.assert_allclose(big.state[k][r], net.state[k][0], rtol=0, atol=1e-12)


def test_replica_training_trajectories_match():
    """Several GD steps with dropout and BN: replica r of the big net follows the single net with seed r."""
    seeds = [3, 4, 5]
    X, y = data(m=10, d=3, classes=3, seed=6)
    kw = {"sizes": [3, 6, 5, 3], "activation": "tanh", "batchnorm": True, "dropout": 0.3, "l2": 0.1}
    big = MLP(seeds=seeds, **kw)
    small = _singles(seeds, **kw)
    for _ in range(5):
        loss, grads = big.loss_and_grads(X, y)
        for k in big.params:
            big.params[k] -= 0.1 * grads[k]
        for r, net in enumerate(small):
            l1, g1 = net.loss_and_grads(X, y)
            np.testing.assert_allclose(loss[r], l1[0], rtol=0, atol=1e-12)
            for k in net.params:
                net.params[k] -= 0.1 * g1[k]
    for r, net in enumerate(small):
        for k in big.params:
            np.testing.assert_allclose(big.params[k][r], net.params[k][0], rtol=0, atol=1e-12)
        for k in big.state:
            np.testing.assert_allclose(big.state[k][r], net.state[k][0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(big.evaluate(X, y)[0][r], net.evaluate(X, y)[0][0], rtol=0, atol=1e-12)


def test_per_replica_inits_and_inputs():
    inits = ["zeros", "he_normal", "normal", "xavier_uniform"]
    kws = [{}, {}, {"std": 10.0}, {"gain": 2.0}]
    seeds = [0, 1, 2, 3]
    g = np.random.default_rng(7)
    X = g.standard_normal((4, 5, 2))  # a different batch per replica
    y = g.integers(0, 2, (4, 5))
    big = MLP([2, 4, 1], init=inits, init_kwargs=kws, seeds=seeds)
    assert not big.params["W1"][0].any()
    loss, grads = big.loss_and_grads(X, y)
    for r in range(4):
        net = MLP([2, 4, 1], init=inits[r], init_kwargs=kws[r], seeds=[seeds[r]])
        for k in net.params:
            assert np.array_equal(big.params[k][r], net.params[k][0])
        l1, g1 = net.loss_and_grads(X[r], y[r])
        np.testing.assert_allclose(loss[r], l1[0], rtol=0, atol=1e-12)
        for k in g1:
            np.testing.assert_allclose(grads[k][r], g1[k][0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="init"):
        MLP([2, 4, 1], init=["zeros", "he_normal"], replicas=3)
    with pytest.raises(ValueError, match="bogus"):
        MLP([2, 4, 1], init="bogus")


def test_per_replica_l2_equals_single_nets():
    X, y = data(m=6, d=3)
    lams = np.array([0.0, 0.5, 3.0])
    big = MLP([3, 4, 1], seeds=[0, 1, 2], l2=lams)
    loss, grads = big.loss_and_grads(X, y)
    for r in range(3):
        net = MLP([3, 4, 1], seeds=[r], l2=float(lams[r]))
        l1, g1 = net.loss_and_grads(X, y)
        np.testing.assert_allclose(loss[r], l1[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(grads["W1"][r], g1["W1"][0], rtol=0, atol=1e-12)


# --- symmetry: zero init never breaks it ------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_zero_init_units_stay_identical(activation):
    g = np.random.default_rng(8)
    X = g.standard_normal((40, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    y[:8] = 1  # unbalanced, so the gradients are not zero by symmetry of the labels
    net = MLP([2, 10, 5, 1], activation=activation, init="zeros", replicas=2, seed=0)
    lr = 0.5
    for _ in range(100):
        _, grads = net.loss_and_grads(X, y)
        for k, W in net.params.items():
            W -= lr * grads[k]
    for l in (1, 2):
        W, b = net.params[f"W{l}"], net.params[f"b{l}"]
        # every unit (column) of a hidden layer has the same incoming weights and bias
        assert np.abs(W - W[..., :1]).max() <= 1e-12 * max(1.0, np.abs(W).max())
        assert np.abs(b - b[..., :1]).max() <= 1e-12 * max(1.0, np.abs(b).max())
    W3 = net.params["W3"]
    assert np.abs(W3 - W3[:, :1]).max() <= 1e-12 * max(1.0, np.abs(W3).max())
    if activation == "sigmoid":  # the weights did move: the symmetry is kept by the dynamics, not by inertia
        assert np.abs(net.params["W1"]).max() > 1e-5
    # so the net is no better than chance on this XOR-like set
    assert np.all(net.accuracy(X, y) < 0.7)


# --- modes, L2 bookkeeping, outputs -----------------------------------------------------------------------------


def test_loss_includes_l2_and_evaluate_does_not():
    X, y = data(m=10)
    net = MLP([4, 5, 1], replicas=2, seed=0, l2=0.6)
    plain = MLP([4, 5, 1], replicas=2, seed=0)
    sq = sum((net.params[f"W{l}"] ** 2).sum(axis=(1, 2)) for l in (1, 2))
    expected_pen = 0.6 / (2 * 10) * sq
    np.testing.assert_allclose(net.loss_and_grads(X, y)[0] - plain.loss_and_grads(X, y)[0], expected_pen,
                               rtol=1e-12)
    np.testing.assert_allclose(net.loss(X, y) - plain.loss(X, y), expected_pen, rtol=1e-12)
    np.testing.assert_allclose(net.evaluate(X, y)[0], plain.evaluate(X, y)[0], rtol=0, atol=0)
    g_net, g_plain = net.loss_and_grads(X, y)[1], plain.loss_and_grads(X, y)[1]
    np.testing.assert_allclose(g_net["W1"] - g_plain["W1"], 0.6 / 10 * net.params["W1"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(g_net["b1"], g_plain["b1"])  # biases are not penalised
    net.l2 = np.array([0.0, 0.0])
    np.testing.assert_allclose(net.loss(X, y), plain.loss(X, y))
    with pytest.raises(ValueError, match="l2"):
        net.l2 = -1.0
    with pytest.raises(ValueError, match="l2"):
        net.l2 = np.ones(3)


def test_outputs_shapes_and_consistency():
    X, y = data(m=12, classes=3)
    net = MLP([4, 6, 3], activation="tanh", replicas=2, seed=0)
    logits = net.forward(X)
    assert logits.shape == (2, 12, 3)
    p = net.predict_proba(X)
    assert p.shape == (2, 12, 3)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    pred = net.predict(X)
    assert pred.shape == (2, 12) and np.issubdtype(pred.dtype, np.integer)
    assert np.array_equal(pred, p.argmax(-1))
    acc = net.accuracy(X, y)
    np.testing.assert_allclose(acc, (pred == y).mean(axis=1))
    loss, acc2 = net.evaluate(X, y)
    assert loss.shape == (2,) and np.array_equal(acc, acc2)
    b = MLP([4, 6, 1], replicas=3, seed=0)
    Xb, yb = data(m=12)
    assert b.binary and b.predict_proba(Xb).shape == (3, 12)
    assert np.array_equal(b.predict(Xb), (b.predict_proba(Xb) > 0.5).astype(int))
    assert b.n_layers == 2 and b.sizes == [4, 6, 1] and b.replicas == 3 and b.seeds == [0, 1, 2]


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    X, y = data(m=20)
    net = MLP([4, 8, 8, 1], dropout=0.5, batchnorm=True, replicas=2, seed=0)
    state = {k: v.copy() for k, v in net.state.items()}
    a, b = net.forward(X), net.forward(X)
    assert np.array_equal(a, b)
    assert all(np.array_equal(state[k], net.state[k]) for k in state)  # eval never touches running stats
    t1, t2 = net.forward(X, train=True), net.forward(X, train=True)
    assert not np.array_equal(t1, t2)  # fresh dropout masks
    assert not np.array_equal(state["running_mean1"], net.state["running_mean1"])


def test_bn_net_eval_uses_running_stats():
    X, y = data(m=16)
    net = MLP([4, 5, 1], activation="identity", batchnorm=True, replicas=2, seed=0)
    for _ in range(3):
        net.loss_and_grads(X, y)
    rm, rv = net.state["running_mean1"], net.state["running_var1"]
    z = X @ net.params["W1"] + net.params["b1"][:, None]
    h = net.params["gamma1"][:, None] * (z - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5) + net.params["beta1"][:, None]
    expected = h @ net.params["W2"] + net.params["b2"][:, None]
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-12)
    # running mean after 3 steps with momentum 0.9 from 0, on the same batch
    np.testing.assert_allclose(rm, (1 - 0.9 ** 3) * z.mean(axis=1), rtol=1e-12)


def test_taps_match_grads_and_shapes():
    X, y = data(m=7, classes=3)
    net = MLP([4, 5, 6, 3], activation="relu", batchnorm=True, replicas=2, seed=0)
    loss, grads, taps = net.loss_and_grads(X, y, taps=True)
    assert len(taps) == 3
    for l, t in enumerate(taps, start=1):
        assert set(t) == {"z", "a", "dz", "dW"}
        assert t["z"].shape == t["a"].shape == t["dz"].shape == (2, 7, net.sizes[l])
        assert np.array_equal(t["dW"], grads[f"W{l}"])
    np.testing.assert_allclose(taps[-1]["a"].sum(-1), 1.0)  # output "a" is the softmax
    np.testing.assert_allclose(taps[-1]["dz"].sum(axis=1), grads["b3"])


def test_probe_has_no_side_effects():
    X, y = data(m=10)
    kw = {"sizes": [4, 6, 6, 1], "batchnorm": True, "dropout": 0.3, "replicas": 2, "seed": 0}
    a, b = MLP(**kw), MLP(**kw)
    taps = a.probe(X, train=True)
    assert [t["a"].shape for t in taps] == [(2, 10, 6), (2, 10, 6), (2, 10, 1)]
    assert np.all((taps[-1]["a"] > 0) & (taps[-1]["a"] < 1))
    a.probe(X)
    for k in a.state:
        assert np.array_equal(a.state[k], b.state[k])
    la, _ = a.loss_and_grads(X, y)
    lb, _ = b.loss_and_grads(X, y)
    assert np.array_equal(la, lb)  # the dropout stream was not consumed
    # an extra train-mode pass can be made invisible by restoring the public dropout streams
    saved = [r.bit_generator.state for r in a.dropout_rngs]
    a.loss_and_grads(X, y)
    for r, st in zip(a.dropout_rngs, saved, strict=True):
        r.bit_generator.state = st
    for k, v in b.state.items():
        a.state[k][...] = v
    assert np.array_equal(a.loss_and_grads(X, y)[0], b.loss_and_grads(X, y)[0])


def test_copy_and_masked_load():
    X, y = data()
    net = MLP([4, 5, 1], batchnorm=False, replicas=3, seed=0)
    snap = net.copy_params()
    for v in net.params.values():
        v += 1.0
    moved = net.copy_params()
    net.load_params(snap, mask=np.array([True, False, True]))
    for k in net.params:
        assert np.array_equal(net.params[k][[0, 2]], snap[k][[0, 2]])
        assert np.array_equal(net.params[k][1], moved[k][1])
    snap["W1"][...] = 99.0  # a snapshot is a copy, never a view
    assert not np.any(net.params["W1"] == 99.0)
    net.load_params(snap)
    assert np.all(net.params["W1"] == 99.0)
    bn = MLP([4, 5, 1], batchnorm=True, replicas=2, seed=0)
    assert {"running_mean1", "running_var1", "gamma1", "beta1"} <= set(bn.copy_params())
    with pytest.raises(KeyError):
        net.load_params({"nope": np.zeros(1)})


def test_explicit_params_course_layout():
    sizes = [2, 10, 5, 1]
    cp = course_params(sizes, "he_normal", seed=3)
    net = MLP(sizes, activation="relu", replicas=2, params=cp)
    for k, v in cp.items():
        assert np.array_equal(net.params[k][0], v) and np.array_equal(net.params[k][1], v)
        assert net.params[k].flags.writeable and not np.shares_memory(net.params[k], v)
    net.params["W1"][0, 0, 0] = 123.0
    assert cp["W1"][0, 0] != 123.0  # copied, not aliased
    # the course forward pass, column convention: Z = W A + b, relu, relu, sigmoid
    X, _ = data(m=6, d=2)
    A = X.T
    for l in range(1, 4):
        Z = cp[f"W{l}"].T @ A + cp[f"b{l}"][:, None]
        A = np.maximum(Z, 0) if l < 3 else 1 / (1 + np.exp(-Z))
    np.testing.assert_allclose(MLP(sizes, params=cp).predict_proba(X)[0], A[0], rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        MLP(sizes, params={**cp, "W1": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="missing"):
        MLP(sizes, params={"b1": cp["b1"]})


def test_float32_and_validation():
    X, y = data()
    net = MLP([4, 5, 1], dtype=np.float32, replicas=2, seed=0)
    loss, grads = net.loss_and_grads(X, y)
    assert all(v.dtype == np.float32 for v in net.params.values())
    assert all(g.dtype == np.float32 for g in grads.values())
    assert np.all(np.isfinite(loss))
    with pytest.raises(ValueError, match="activation"):
        MLP([4, 5, 1], activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        MLP([4, 5, 1], dropout=1.0)
    with pytest.raises(ValueError, match="sizes"):
        MLP([4])
    with pytest.raises(ValueError, match="X must be"):
        net.forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="replicas"):
        net.forward(np.zeros((3, 6, 4)))
    with pytest.raises(ValueError, match="dropout_mask"):
        net.loss_and_grads(X, y, dropout_mask=[np.ones((2, 8, 5))])


def test_gradient_descent_learns():
    g = np.random.default_rng(9)
    X = g.standard_normal((200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR quadrants: needs the hidden layer
    net = MLP([2, 16, 16, 1], activation="tanh", init="xavier_normal", replicas=3, seed=0)
    first = net.evaluate(X, y)[0]
    for _ in range(300):
        _, grads = net.loss_and_grads(X, y)
        for k, W in net.params.items():
            W -= 0.5 * grads[k]
    loss, acc = net.evaluate(X, y)
    assert np.all(loss < 0.5 * first)
    assert np.all(acc > 0.9)


# --- reused buffers: loss_and_grads writes into the net's own arrays ---------------------------------------------


def _fresh_grads(net, X, y):
    """The same step computed into new arrays (taps=True allocates everything) from the same net state."""
    state = {k: v.copy() for k, v in net.state.items()}
    rngs = [r.bit_generator.state for r in net.dropout_rngs]
    loss, grads, _ = net.loss_and_grads(X, y, taps=True)
    for k, v in state.items():
        net.state[k][...] = v
    for r, st in zip(net.dropout_rngs, rngs, strict=True):
        r.bit_generator.state = st
    return loss, grads


@pytest.mark.parametrize("kw", [{"activation": "relu"}, {"activation": "tanh", "batchnorm": True, "dropout": 0.2},
                                {"activation": "sigmoid", "l2": 0.1}, {"activation": "leaky_relu"}])
@pytest.mark.parametrize("n_out", [1, 3])
def test_reused_buffers_give_the_fresh_numbers_for_every_batch_shape(kw, n_out):
    """Full batch, mini-batches, a partial last batch and per-replica inputs, interleaved: every call's gradients
    equal the same step computed into new arrays (a stale or mis-shaped buffer would show here)."""
    R = 3
    X, y = data(m=20, classes=max(n_out, 2), seed=1)
    net = MLP([4, 6, 5, n_out], replicas=R, seed=0, **kw)
    g = np.random.default_rng(2)
    idx = [g.permutation(20)[:8] for _ in range(R)]
    per_replica = (np.stack([X[i] for i in idx]), np.stack([y[i] for i in idx]))
    calls = [(X, y), (X[:8], y[:8]), (X[8:13], y[8:13]), per_replica, (X, y), (X[:8], y[:8]), per_replica]
    held = []
    for Xb, yb in calls:
        want_loss, want = _fresh_grads(net, Xb, yb)
        loss, grads = net.loss_and_grads(Xb, yb)
        np.testing.assert_array_equal(loss, want_loss)
        assert list(grads) == list(net.params)
        for k in grads:
            np.testing.assert_array_equal(grads[k], want[k])
        held.append(grads)
    # The contract: grads are the net's buffers, overwritten by the next call (callers copy what they keep).
    assert all(np.shares_memory(held[0]["W1"], h["W1"]) for h in held)


def test_two_nets_and_copies_never_share_buffers():
    """Grads held from one net survive calls on another net of the same shape, on a copy.copy / deepcopy of it,
    and on a packed net's sub-net (src/vectorize.py's subnet does copy.copy + new params)."""
    import copy

    X, y = data(m=12)
    a, b = MLP([4, 5, 1], replicas=2, seed=0), MLP([4, 5, 1], replicas=2, seed=7)
    _, ga = a.loss_and_grads(X, y)
    kept = {k: v.copy() for k, v in ga.items()}
    b.loss_and_grads(X[::-1], 1 - y)
    shallow, deep = copy.copy(a), copy.deepcopy(a)
    for other in (shallow, deep):
        other.loss_and_grads(X[::-1], 1 - y)
    sub = copy.copy(a)
    sub.params = {k: v[:1].copy() for k, v in a.params.items()}
    sub.replicas, sub.seeds = 1, a.seeds[:1]
    _, gs = sub.loss_and_grads(X, 1 - y)
    assert gs["W1"].shape == (1, 4, 5)
    for k, v in kept.items():
        np.testing.assert_array_equal(ga[k], v)
        assert not np.shares_memory(ga[k], gs[k])


def test_gradients_can_be_clipped_in_place_and_recomputed():
    """What the loop does: clip the returned grads in place, update, then the next call starts from scratch."""
    from src.nn import clipping, optimizers

    X, y = data(m=16)
    a, b = MLP([4, 5, 1], replicas=2, seed=0), MLP([4, 5, 1], replicas=2, seed=0)
    oa, ob = optimizers.get("momentum", lr=0.1), optimizers.get("momentum", lr=0.1)
    for _ in range(3):
        _, ga = a.loss_and_grads(X, y)
        clipping.clip_by_norm(ga, 0.05)
        oa.update(a.params, ga)
        _, gb, _ = b.loss_and_grads(X, y, taps=True)  # fresh arrays every time
        clipping.clip_by_norm(gb, 0.05)
        ob.update(b.params, gb)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.parametrize("n_out", [1, 3])
def test_evaluate_reuses_the_buffers_but_not_the_gradients(n_out):
    """evaluate() writes into the training step's buffers (same shapes): its numbers must be those of a fresh
    forward pass, and gradients held from loss_and_grads must survive it."""
    from src.nn.losses import bce_with_logits, softmax_cross_entropy

    X, y = data(m=20, classes=max(n_out, 2), seed=3)
    net = MLP([4, 6, 5, n_out], activation="tanh", batchnorm=True, replicas=2, seed=0)
    _, grads = net.loss_and_grads(X, y)
    kept = {k: v.copy() for k, v in grads.items()}
    for Xe, ye in ((X, y), (X[:7], y[:7]), (X, y)):
        loss, acc = net.evaluate(Xe, ye)
        logits = net.forward(Xe)  # new arrays
        want = (bce_with_logits if n_out == 1 else softmax_cross_entropy)(logits, ye)[0]
        np.testing.assert_array_equal(loss, want)
        np.testing.assert_array_equal(acc, net.accuracy(Xe, ye))
        assert not np.shares_memory(loss, logits) and loss is not net.evaluate(Xe, ye)[0]
    for k, v in kept.items():
        np.testing.assert_array_equal(grads[k], v)


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("chunked", [False, True])
def test_evaluate_parts_gives_each_block_its_own_evaluate(n_out, chunked):
    """One forward pass over stacked blocks (the loop's train + val) scores each block exactly as `evaluate` on that
    block alone: eval mode treats rows independently (batch norm's running statistics, no dropout)."""
    X, y = data(m=300 if chunked else 30, classes=max(n_out, 2), seed=5)
    net = MLP([4, 6, 5, n_out], activation="relu", batchnorm=True, dropout=0.2, replicas=2, seed=0)
    for _ in range(3):  # running statistics that are not the initial ones
        net.loss_and_grads(X, y)
    if chunked:
        net.EVAL_CHUNK_BYTES = 1  # rows go through in slices (the large-input path)
        assert X.shape[0] > net._eval_rows()
    sizes = (X.shape[0] - 20, 12, 8)
    parts = net.evaluate_parts(X, y, sizes)
    start = 0
    for size, (loss, acc) in zip(sizes, parts, strict=True):
        want_loss, want_acc = net.evaluate(X[start:start + size], y[start:start + size])
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(acc, want_acc)
        start += size
    np.testing.assert_array_equal(net.evaluate_parts(X, y, (X.shape[0],))[0][0], net.evaluate(X, y)[0])
    for bad in ((X.shape[0] - 1,), (X.shape[0], 1), (X.shape[0] + 1, -1)):
        with pytest.raises(ValueError, match="sizes must be row counts >= 0 summing to"):
            net.evaluate_parts(X, y, bad)
