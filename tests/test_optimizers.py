"""Optimizers: hand-computed first steps, torch.optim agreement, per-replica hyper-parameters, masks, errors."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from src.nn import _flat, optimizers
from src.nn.optimizers import NAMES, get

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "torch_optim_reference.json").read_text())

# A diagonal quadratic f(w) = ½·Σ a·w² (minimum at 0), one replica: w (1, 3).
A = np.array([[1.0, 4.0, 0.25]])
W0 = np.array([[2.0, -1.0, 3.0]])


def quad_grads(params):
    return {"w": A * params["w"]}


def run(opt, steps, w0=W0, grads_fn=quad_grads, mask=None):
    params = {"w": w0.copy()}
    traj = []
    for _ in range(steps):
        opt.update(params, grads_fn(params), mask=mask)
        traj.append(params["w"].copy())
    return traj


# -- hand-computed steps ------------------------------------------------------------------------------------------


def test_sgd_closed_form():
    lr = 0.1
    w1, w2 = run(get("sgd", lr=lr), 2)
    np.testing.assert_array_equal(w1, W0 - lr * A * W0)
    np.testing.assert_array_equal(w2, w1 - lr * A * w1)
    np.testing.assert_allclose(w2, W0 * (1 - lr * A) ** 2, rtol=1e-15)


def test_momentum_first_three_steps_torch_rule():
    lr, mu = 0.05, 0.9
    w1, w2, w3 = run(get("momentum", lr=lr, momentum=mu), 3)
    g0 = A * W0
    np.testing.assert_allclose(w1, W0 - lr * g0, rtol=1e-15)  # torch: buf = g at step 1
    g1 = A * w1
    buf2 = mu * g0 + g1
    np.testing.assert_allclose(w2, w1 - lr * buf2, rtol=1e-15)
    buf3 = mu * buf2 + A * w2
    np.testing.assert_allclose(w3, w2 - lr * buf3, rtol=1e-15)


def test_dampening_is_ignored_on_the_first_step_like_torch():
    lr, mu, d = 0.05, 0.9, 0.5
    w1, w2 = run(get("sgd", lr=lr, momentum=mu, dampening=d), 2)
    g0 = A * W0
    np.testing.assert_allclose(w1, W0 - lr * g0, rtol=1e-15)
    np.testing.assert_allclose(w2, w1 - lr * (mu * g0 + (1 - d) * A * w1), rtol=1e-15)


def test_nesterov_first_two_steps():
    lr, mu = 0.05, 0.9
    w1, w2 = run(get("nesterov", lr=lr, momentum=mu), 2)
    g0 = A * W0
    np.testing.assert_allclose(w1, W0 - lr * (g0 + mu * g0), rtol=1e-15)
    g1 = A * w1
    buf = mu * g0 + g1
    np.testing.assert_allclose(w2, w1 - lr * (g1 + mu * buf), rtol=1e-15)


def test_course_momentum_is_an_ema_starting_at_zero():
    lr, beta = 0.1, 0.9
    w1, w2 = run(get("momentum", lr=lr, momentum=beta, variant="course"), 2)
    v1 = (1 - beta) * A * W0
    np.testing.assert_allclose(w1, W0 - lr * v1, rtol=1e-15)
    v2 = beta * v1 + (1 - beta) * A * w1
    np.testing.assert_allclose(w2, w1 - lr * v2, rtol=1e-15)


def test_book_momentum_equals_torch_rule_with_constant_lr_only():
    """The book's v = αv − lr·g; W += v is torch's rule with lr folded in (documented claim)."""

    def book(lr_at, steps, mu=0.9):
        w, v = W0.copy(), np.zeros_like(W0)
        for s in range(steps):
            v = mu * v - lr_at(s) * (A * w)
            w = w + v
        return w

    ours = get("momentum", lr=0.05)
    traj = run(ours, 10)
    np.testing.assert_allclose(traj[-1], book(lambda s: 0.05, 10), rtol=1e-12, atol=1e-14)
    # When lr changes mid-run the two differ: the book's velocity keeps the old learning rates inside it.
    ours = get("momentum", lr=0.05)
    params = {"w": W0.copy()}
    for s in range(10):
        ours.lr = 0.05 if s < 5 else 0.005
        ours.update(params, quad_grads(params))
    assert np.abs(params["w"] - book(lambda s: 0.05 if s < 5 else 0.005, 10)).max() > 1e-3


def test_book_nesterov_differs_from_bengio_and_torch():
    """The book applies μ² to the UPDATED velocity; Bengio et al. (and torch) to the previous one."""
    lr, mu = 0.05, 0.9

    def book(steps, use_old_v):
        w, v = W0.copy(), np.zeros_like(W0)
        for _ in range(steps):
            g = A * w
            v_old = v.copy()
            v = mu * v - lr * g
            w = w + mu * mu * (v_old if use_old_v else v) - (1 + mu) * lr * g
        return w

    ours = run(get("nesterov", lr=lr, momentum=mu), 5)[-1]
    np.testing.assert_allclose(ours, book(5, use_old_v=True), rtol=1e-12, atol=1e-14)
    assert np.abs(ours - book(5, use_old_v=False)).max() > 1e-3


def test_adagrad_first_two_steps():
    lr, eps = 0.5, 1e-10
    w1, w2 = run(get("adagrad", lr=lr), 2)
    g0 = A * W0
    np.testing.assert_allclose(w1, W0 - lr * g0 / (np.abs(g0) + eps), rtol=1e-15)  # = W0 - lr*sign(g0)
    g1 = A * w1
    np.testing.assert_allclose(w2, w1 - lr * g1 / (np.sqrt(g0**2 + g1**2) + eps), rtol=1e-15)


def test_adagrad_lr_decay_and_initial_accumulator():
    lr, k, s0, eps = 0.5, 0.1, 0.2, 1e-7
    w1, w2 = run(get("adagrad", lr=lr, lr_decay=k, initial_accumulator_value=s0, eps=eps), 2)
    g0 = A * W0
    s1 = s0 + g0**2
    np.testing.assert_allclose(w1, W0 - lr * g0 / (np.sqrt(s1) + eps), rtol=1e-15)
    g1 = A * w1
    np.testing.assert_allclose(w2, w1 - lr / (1 + k) * g1 / (np.sqrt(s1 + g1**2) + eps), rtol=1e-15)


def test_rmsprop_first_step_plain_and_centered():
    lr, alpha, eps = 0.01, 0.99, 1e-8
    g0 = A * W0
    (w1,) = run(get("rmsprop", lr=lr, alpha=alpha, eps=eps), 1)
    np.testing.assert_allclose(w1, W0 - lr * g0 / (np.sqrt(1 - alpha) * np.abs(g0) + eps), rtol=1e-14)
    (w1c,) = run(get("rmsprop", lr=lr, alpha=alpha, eps=eps, centered=True), 1)
    # sq - ga² = (1-α)g² - (1-α)²g² = α(1-α)g²
    np.testing.assert_allclose(w1c, W0 - lr * g0 / (np.sqrt(alpha * (1 - alpha)) * np.abs(g0) + eps), rtol=1e-12)


def test_rmsprop_second_step_with_momentum():
    lr, alpha, mu, eps = 0.01, 0.9, 0.5, 1e-8
    w1, w2 = run(get("rmsprop", lr=lr, alpha=alpha, momentum=mu, eps=eps), 2)
    g0 = A * W0
    sq1 = (1 - alpha) * g0**2
    buf1 = g0 / (np.sqrt(sq1) + eps)
    np.testing.assert_allclose(w1, W0 - lr * buf1, rtol=1e-15)
    g1 = A * w1
    sq2 = alpha * sq1 + (1 - alpha) * g1**2
    np.testing.assert_allclose(w2, w1 - lr * (mu * buf1 + g1 / (np.sqrt(sq2) + eps)), rtol=1e-14)


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_adam_first_step_is_lr_times_sign(scale):
    lr, eps = 0.1, 1e-8
    (w1,) = run(get("adam", lr=lr, eps=eps), 1, grads_fn=lambda p: {"w": scale * A * p["w"]})
    g0 = scale * A * W0
    np.testing.assert_allclose(w1, W0 - lr * g0 / (np.abs(g0) + eps), rtol=1e-14)
    np.testing.assert_allclose(np.abs(w1 - W0), lr, rtol=1e-3)  # whatever the scale of g (up to eps/|g|)
    assert np.all(np.abs(w1 - W0) < lr)


def test_adam_second_step_bias_correction():
    lr, b1, b2, eps = 0.1, 0.8, 0.99, 1e-8
    w1, w2 = run(get("adam", lr=lr, betas=[b1, b2], eps=eps), 2)
    g0, g1 = A * W0, A * w1
    m = (1 - b1) * (b1 * g0 + g1)  # m2 = b1*m1 + (1-b1)*g1 with m1 = (1-b1)*g0
    v = (1 - b2) * (b2 * g0**2 + g1**2)
    m_hat, v_hat = m / (1 - b1**2), v / (1 - b2**2)
    np.testing.assert_allclose(w2, w1 - lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-13)


def test_adamw_decay_is_decoupled_but_adam_decay_is_not():
    """With a zero gradient AdamW only shrinks p by (1 − lr·λ); Adam's coupled decay goes through the moments."""
    lr, wd = 0.1, 0.5
    zero = lambda p: {"w": np.zeros_like(p["w"])}  # noqa: E731
    w1, w2 = run(get("adamw", lr=lr, weight_decay=wd), 2, grads_fn=zero)
    np.testing.assert_array_equal(w1, W0 * (1 - lr * wd))
    np.testing.assert_array_equal(w2, W0 * (1 - lr * wd) * (1 - lr * wd))
    (a1,) = run(get("adam", lr=lr, weight_decay=wd), 1, grads_fn=zero)
    np.testing.assert_allclose(a1, W0 - lr * np.sign(W0), rtol=1e-7)  # g = λ·p, first Adam step = lr·sign(g)


def test_adamw_with_gradient():
    lr, wd, eps = 0.1, 0.2, 1e-8
    (w1,) = run(get("adamw", lr=lr, weight_decay=wd, eps=eps), 1)
    g0 = A * W0  # gradient at the pre-decay point
    np.testing.assert_allclose(w1, W0 * (1 - lr * wd) - lr * g0 / (np.abs(g0) + eps), rtol=1e-14)


def test_amsgrad_uses_the_running_max_of_v():
    """A big gradient then small ones: AMSGrad keeps dividing by the big second moment, Adam forgets it."""
    grads = iter([10.0, 0.1, 0.1, 0.1])
    g_fn = lambda p: {"w": np.full_like(p["w"], next(grads))}  # noqa: E731
    w0 = np.zeros((1, 1))
    steps = run(get("adam", lr=0.1, amsgrad=True), 4, w0=w0, grads_fn=g_fn)
    grads = iter([10.0, 0.1, 0.1, 0.1])
    plain = run(get("adam", lr=0.1), 4, w0=w0, grads_fn=g_fn)
    assert abs(steps[-1][0, 0] - steps[-2][0, 0]) < abs(plain[-1][0, 0] - plain[-2][0, 0])


# -- torch.optim agreement ----------------------------------------------------------------------------------------


def _replay(case, problem, steps, lr_change_at, lr_factor, replicas=1):
    params = {k: np.repeat(np.array(v["init"], dtype=np.float64)[None], replicas, axis=0) for k, v in problem.items()}
    a = {k: np.array(v["a"])[None] for k, v in problem.items()}
    c = {k: np.array(v["c"])[None] for k, v in problem.items()}
    opt = get(case["name"], **case["kwargs"])
    out = {k: [] for k in params}
    for step in range(steps):
        if step == lr_change_at:
            opt.lr = opt.lr * lr_factor
        opt.update(params, {k: a[k] * params[k] - c[k] for k in params})
        for k, p in params.items():
            out[k].append(p.copy())
    return {k: np.stack(v, axis=1) for k, v in out.items()}  # (R, steps, ...)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=[c["id"] for c in REFERENCE["cases"]])
def test_matches_torch_reference(case):
    ours = _replay(case, REFERENCE["problem"], REFERENCE["steps"], REFERENCE["lr_change_at"], REFERENCE["lr_factor"],
                   replicas=2)
    for key, traj in case["trajectory"].items():
        expected = np.array(traj)
        assert expected.shape[0] == REFERENCE["steps"]
        for r in range(2):  # every replica follows torch's single model
            np.testing.assert_allclose(ours[key][r], expected, rtol=1e-10, atol=1e-10)


def test_reference_covers_every_optimizer_and_variant():
    cases = REFERENCE["cases"]
    assert {c["name"] for c in cases} == set(NAMES)
    flags = {(c["name"], k) for c in cases for k, v in c["kwargs"].items() if v is True}
    assert {("rmsprop", "centered"), ("adam", "amsgrad"), ("adamw", "amsgrad")} <= flags
    assert any("dampening" in c["kwargs"] for c in cases)
    assert any(c["kwargs"].get("weight_decay") for c in cases if c["name"] in ("sgd", "adagrad", "rmsprop", "adam"))
    by_id = {c["id"]: np.array(c["trajectory"]["W"]) for c in cases}
    assert np.abs(by_id["adam"] - by_id["adam_amsgrad"]).max() > 1e-6  # the variants really change the path
    assert np.abs(by_id["rmsprop"] - by_id["rmsprop_centered"]).max() > 1e-6


def _generator():
    spec = importlib.util.spec_from_file_location("make_torch_reference", FIXTURES / "make_torch_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_torch_agreement():
    pytest.importorskip("torch")
    gen = _generator()
    for case in gen.CASES:
        expected = gen.run_torch(case)
        ours = _replay(case, gen.PROBLEM, gen.STEPS, gen.LR_CHANGE_AT, gen.LR_FACTOR)
        for key, traj in expected.items():
            np.testing.assert_allclose(ours[key][0], np.array(traj), rtol=1e-10, atol=1e-10, err_msg=case["id"])


# -- replicas, masks, in-place semantics ---------------------------------------------------------------------------

ALL = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.8, "dampening": 0.2, "weight_decay": 0.01}),
    ("momentum", {"variant": "course"}),
    ("nesterov", {"weight_decay": 0.01}),
    ("adagrad", {"lr_decay": 0.1}),
    ("rmsprop", {"centered": True, "momentum": 0.3}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
]


def _net_params(R, rng):
    return {"W1": rng.normal(size=(R, 3, 4)), "b1": rng.normal(size=(R, 4)), "gamma": rng.normal(size=(R, 4))}


def _net_grads(params):
    # Some nonlinear, parameter-dependent gradient (replica-wise, like a real network's)
    return {k: np.tanh(v) + 0.1 * v**3 for k, v in params.items()}


def _assert_same_as_separate_runs(opt, params, opts, singles, steps: int) -> None:
    """Step one R-replica optimizer and R one-replica optimizers side by side; replica r must equal run r."""
    for _ in range(steps):
        opt.update(params, _net_grads(params))
        for o, p in zip(opts, singles, strict=True):
            o.update(p, _net_grads(p))
    for r, single in enumerate(singles):
        for k in params:
            np.testing.assert_allclose(params[k][r], single[k][0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "kwargs"), ALL)
def test_per_replica_lr_equals_separate_runs(name, kwargs):
    lrs = np.array([0.01, 0.05, 0.2])
    params = _net_params(3, np.random.default_rng(0))
    singles = [{k: v[r:r + 1].copy() for k, v in params.items()} for r in range(3)]
    opt = get(name, lr=lrs, **kwargs)
    opts = [get(name, lr=float(lr), **kwargs) for lr in lrs]
    _assert_same_as_separate_runs(opt, params, opts, singles, steps=6)


@pytest.mark.parametrize(("name", "hyper"), [
    ("sgd", {"momentum": np.array([0.0, 0.5, 0.9]), "dampening": np.array([0.0, 0.1, 0.5])}),
    ("rmsprop", {"alpha": np.array([0.9, 0.99, 0.5]), "eps": np.array([1e-8, 1e-3, 1e-6])}),
    ("adam", {"betas": (np.array([0.9, 0.5, 0.0]), np.array([0.999, 0.9, 0.5])), "weight_decay": np.array([0, .1, 1])}),
    ("adamw", {"weight_decay": np.array([0.0, 0.01, 0.5])}),
    ("adagrad", {"initial_accumulator_value": np.array([0.0, 0.1, 1.0]), "lr_decay": np.array([0.0, 0.1, 1.0])}),
])
def test_other_per_replica_hyperparameters_equal_separate_runs(name, hyper):
    params = _net_params(3, np.random.default_rng(1))
    singles = [{k: v[r:r + 1].copy() for k, v in params.items()} for r in range(3)]

    def pick(v, r):
        if isinstance(v, tuple):
            return tuple(pick(x, r) for x in v)
        return float(v[r]) if isinstance(v, np.ndarray) else v

    opt = get(name, lr=0.05, **hyper)
    opts = [get(name, lr=0.05, **{k: pick(v, r) for k, v in hyper.items()}) for r in range(3)]
    _assert_same_as_separate_runs(opt, params, opts, singles, steps=5)


@pytest.mark.parametrize(("name", "kwargs"), ALL)
def test_mask_freezes_params_and_state(name, kwargs):
    """Masked replicas keep params, moments and t; the others go on as if alone; unmasked later, they resume."""
    rng = np.random.default_rng(2)
    params = _net_params(3, rng)
    start = {k: v.copy() for k, v in params.items()}
    opt = get(name, lr=0.05, **kwargs)
    mask = np.array([True, False, True])
    for _ in range(3):
        opt.update(params, _net_grads(params), mask=mask)
    np.testing.assert_array_equal(opt.t, [3, 0, 3])
    for k in params:
        np.testing.assert_array_equal(params[k][1], start[k][1])
        for a in opt.state[k].values():
            expected = getattr(opt, "initial_accumulator_value", 0.0)
            np.testing.assert_array_equal(a[1], np.full_like(a[1], expected))
    # Now replica 1 starts; its first step must be a FIRST step (torch: buf = g; Adam t = 1).
    for _ in range(2):
        opt.update(params, _net_grads(params))
    np.testing.assert_array_equal(opt.t, [5, 2, 5])
    for r, n_steps in [(0, 5), (1, 2), (2, 5)]:
        single = {k: v[r:r + 1].copy() for k, v in start.items()}
        o = get(name, lr=0.05, **kwargs)
        for _ in range(n_steps):
            o.update(single, _net_grads(single))
        for k in params:
            np.testing.assert_allclose(params[k][r], single[k][0], rtol=1e-12, atol=1e-12)


def test_mask_with_nan_grads_leaves_frozen_replica_untouched():
    params = _net_params(2, np.random.default_rng(3))
    before = {k: v.copy() for k, v in params.items()}
    grads = _net_grads(params)
    for g in grads.values():
        g[1] = np.nan  # a diverged replica
    opt = get("adam", lr=0.1)
    opt.update(params, grads, mask=np.array([True, False]))
    for k in params:
        np.testing.assert_array_equal(params[k][1], before[k][1])
        assert np.all(np.isfinite(opt.state[k]["exp_avg"]))
        assert not np.array_equal(params[k][0], before[k][0])


def test_all_false_mask_is_a_no_op_and_bad_masks_are_refused():
    params = _net_params(2, np.random.default_rng(4))
    before = {k: v.copy() for k, v in params.items()}
    opt = get("momentum", lr=0.1)
    opt.update(params, _net_grads(params), mask=np.array([False, False]))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.t is None or not opt.t.any()
    for bad in (np.array([1, 0]), np.array([True]), [0, 1]):
        with pytest.raises(ValueError, match="mask"):
            opt.update(params, _net_grads(params), mask=bad)


@pytest.mark.parametrize("name", NAMES)
def test_updates_in_place_and_never_touch_grads(name):
    params = _net_params(2, np.random.default_rng(5))
    held = dict(params)  # what the MLP holds: references to the same arrays
    view = params["W1"][0]  # a view must see the update too
    before = view.copy()
    grads = _net_grads(params)
    grads_before = {k: v.copy() for k, v in grads.items()}
    opt = get(name, lr=0.1, weight_decay=0.1)
    opt.update(params, grads, mask=None)
    opt.update(params, grads, mask=np.array([True, False]))
    for k in params:
        assert params[k] is held[k]
        np.testing.assert_array_equal(grads[k], grads_before[k])
    assert not np.array_equal(view, before)


@pytest.mark.parametrize("name", NAMES)
def test_float32_params_stay_float32(name):
    params = {k: v.astype(np.float32) for k, v in _net_params(2, np.random.default_rng(6)).items()}
    opt = get(name, lr=np.array([0.01, 0.1]))
    for _ in range(3):
        opt.update(params, {k: v.astype(np.float32) for k, v in _net_grads(params).items()})
    for k, v in params.items():
        assert v.dtype == np.float32
        assert all(a.dtype == np.float32 for a in opt.state[k].values())
        assert np.all(np.isfinite(v))


def test_state_dict_round_trip():
    params = _net_params(2, np.random.default_rng(7))
    opt = get("adam", lr=np.array([0.01, 0.02]), amsgrad=True)
    for _ in range(3):
        opt.update(params, _net_grads(params))
    saved_params = {k: v.copy() for k, v in params.items()}
    sd = opt.state_dict()
    for _ in range(2):
        opt.update(params, _net_grads(params))
    after = {k: v.copy() for k, v in params.items()}
    opt.load_state_dict(sd)
    np.testing.assert_array_equal(opt.t, [3, 3])
    for k in params:
        params[k][...] = saved_params[k]
    for _ in range(2):
        opt.update(params, _net_grads(params))
    for k in params:
        np.testing.assert_array_equal(params[k], after[k])
    opt.reset()
    assert opt.t is None and opt.state == {}


def test_lr_is_settable_per_epoch_and_zero_is_allowed_there():
    opt = get("sgd", lr=0.1)
    opt.lr = np.array([0.0, 0.05])  # e.g. cosine annealing to eta_min = 0
    params = {"w": np.ones((2, 2))}
    opt.update(params, {"w": np.ones((2, 2))})
    np.testing.assert_array_equal(params["w"], [[1.0, 1.0], [0.95, 0.95]])
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -0.1
    opt.lr = np.array([0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"R=2 replicas"):
        opt.update(params, {"w": np.ones((2, 2))})


def test_replica_count_and_shapes_are_checked():
    opt = get("adam")
    with pytest.raises(ValueError, match="same keys"):
        opt.update({"w": np.ones((2, 3))}, {"v": np.ones((2, 3))})
    with pytest.raises(ValueError, match="shape"):
        opt.update({"w": np.ones((2, 3))}, {"w": np.ones((2, 4))})
    opt.update({"w": np.ones((2, 3))}, {"w": np.ones((2, 3))})
    with pytest.raises(ValueError, match="R=2"):
        opt.update({"w": np.ones((3, 3))}, {"w": np.ones((3, 3))})


# -- the S3 toy (book ch. 6): f(x, y) = x²/20 + y² from (−7, 2), 30 steps ----------------------------------------


def test_s3_toy_sgd_zigzags_and_adaptive_methods_make_progress():
    def grads(p):
        x, y = p["w"][..., 0], p["w"][..., 1]
        return {"w": np.stack([x / 10.0, 2.0 * y], axis=-1)}

    def loss(w):
        return float(w[0, 0] ** 2 / 20 + w[0, 1] ** 2)

    w0 = np.array([[-7.0, 2.0]])
    sgd = run(get("sgd", lr=0.95), 30, w0=w0, grads_fn=grads)
    ys = np.array([w[0, 1] for w in sgd])
    np.testing.assert_allclose(ys, 2.0 * (1 - 0.95 * 2) ** np.arange(1, 31), rtol=1e-12)  # y ← −0.9·y: zigzag
    assert np.all(np.sign(ys[1:]) != np.sign(ys[:-1]))
    np.testing.assert_allclose(sgd[-1][0, 0], -7.0 * (1 - 0.95 / 10) ** 30, rtol=1e-12)
    for name, lr in [("momentum", 0.1), ("adagrad", 1.5), ("adam", 0.3)]:
        traj = run(get(name, lr=lr), 30, w0=w0, grads_fn=grads)
        assert loss(traj[-1]) < 0.1 * loss(w0), name


# -- errors: one line, naming the bad value and the valid choices --------------------------------------------------


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as exc:
        get("bogus")
    msg = str(exc.value)
    assert "'bogus'" in msg and "\n" not in msg
    for name in NAMES:
        assert name in msg


def test_unknown_kwarg_is_named():
    with pytest.raises(ValueError) as exc:
        get("adam", momentum=0.9)
    msg = str(exc.value)
    assert "'momentum'" in msg and "betas" in msg and "amsgrad" in msg and "\n" not in msg


@pytest.mark.parametrize(("name", "kwargs", "needle"), [
    ("sgd", {"lr": 0.0}, "lr"),
    ("sgd", {"lr": -1.0}, "lr"),
    ("sgd", {"lr": float("nan")}, "lr"),
    ("sgd", {"lr": float("inf")}, "lr"),
    ("sgd", {"lr": np.array([0.1, -0.1])}, "lr"),
    ("sgd", {"lr": np.ones((2, 2))}, "lr"),
    ("sgd", {"lr": "fast"}, "lr"),
    ("sgd", {"momentum": -0.1}, "momentum"),
    ("sgd", {"nesterov": True}, "Nesterov"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov"),
    ("sgd", {"nesterov": "yes"}, "nesterov"),
    ("sgd", {"variant": "book"}, "variant"),
    ("momentum", {"variant": "course", "dampening": 0.5}, "course"),
    ("adam", {"betas": (0.9, 1.0)}, "betas"),
    ("adam", {"betas": (-0.1, 0.9)}, "betas"),
    ("adam", {"betas": [0.9]}, "betas"),
    ("adam", {"betas": 0.9}, "betas"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adamw", {"weight_decay": -0.01}, "weight_decay"),
    ("rmsprop", {"alpha": 1.0}, "alpha"),
    ("rmsprop", {"momentum": -1.0}, "momentum"),
    ("rmsprop", {"centered": 1}, "centered"),
    ("adagrad", {"lr_decay": -0.1}, "lr_decay"),
    ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
])
def test_invalid_values_give_one_line_errors(name, kwargs, needle):
    with pytest.raises(ValueError) as exc:
        get(name, **kwargs)
    msg = str(exc.value)
    assert needle in msg and "valid" in msg and "\n" not in msg


def test_betas_as_list_and_defaults_follow_torch():
    opt = get("adam", betas=[0.8, 0.95])
    assert opt.betas == (0.8, 0.95)
    assert isinstance(opt, optimizers.Adam)
    assert (get("adam").lr, get("adam").betas, get("adam").eps) == (1e-3, (0.9, 0.999), 1e-8)
    assert get("adamw").weight_decay == 1e-2
    assert (get("rmsprop").lr, get("rmsprop").alpha, get("rmsprop").eps) == (0.01, 0.99, 1e-8)
    assert (get("adagrad").lr, get("adagrad").eps) == (0.01, 1e-10)
    assert get("momentum").momentum == 0.9 and get("sgd").momentum == 0.0
    assert get("nesterov").nesterov is True
    assert repr(get("adam")).startswith("Adam(lr=0.001, betas=(0.9, 0.999)")
    assert optimizers.kwargs_of("sgd") == ("lr", "momentum", "dampening", "nesterov", "weight_decay", "variant")


# -- one flat (R, P) array: what an MLP hands over ------------------------------------------------------------------


def _as_flat(arrays):
    """The same values as views into one (R, P) array, laid out as an MLP lays out its params and grads."""
    _, views = _flat.flat_like(arrays)
    for k, v in arrays.items():
        views[k][...] = v
    return views


@pytest.mark.parametrize(("name", "kwargs"), ALL)
def test_flat_arrays_step_exactly_like_separate_arrays(name, kwargs):
    """An MLP's params and grads tile one array each, so the optimizer steps them with one call per formula: the
    numbers (params, state, t) must be bit-for-bit those of stepping each array on its own, masks included, and a
    state_dict taken in the flat mode must restore it."""
    sep = _net_params(3, np.random.default_rng(8))
    flat = _as_flat(sep)
    gflat = _as_flat(_net_grads(sep))  # one gradient buffer, refilled at every step like the MLP's
    assert _flat.base_of(list(flat.values())) is not None and _flat.base_of(list(gflat.values())) is not None
    lr = np.array([0.01, 0.05, 0.1])
    o_sep, o_flat = get(name, lr=lr, **kwargs), get(name, lr=lr, **kwargs)

    def step(mask=None):
        for k, g in _net_grads(flat).items():
            gflat[k][...] = g
        o_sep.update(sep, _net_grads(sep), mask=mask)
        o_flat.update(flat, gflat, mask=mask)
        for k in sep:
            np.testing.assert_array_equal(flat[k], sep[k])
            assert o_flat.state[k].keys() == o_sep.state[k].keys()
            for n, a in o_sep.state[k].items():
                np.testing.assert_array_equal(o_flat.state[k][n], a)
        np.testing.assert_array_equal(o_flat.t, o_sep.t)

    for mask in (None, None, np.array([True, False, True]), None):
        step(mask)
    assert len(o_flat._groups(flat, gflat)) == 1  # the flat path was taken (one group for all arrays)
    sd, saved = o_flat.state_dict(), {k: v.copy() for k, v in flat.items()}
    sd_sep, saved_sep = o_sep.state_dict(), {k: v.copy() for k, v in sep.items()}
    step()
    after = {k: v.copy() for k, v in flat.items()}
    o_flat.load_state_dict(sd)
    o_sep.load_state_dict(sd_sep)
    for k in flat:
        flat[k][...] = saved[k]
        sep[k][...] = saved_sep[k]
    step()
    for k in flat:
        np.testing.assert_array_equal(flat[k], after[k])


def test_flat_detection_refuses_arrays_that_do_not_tile_one_array():
    arrays = _as_flat(_net_params(2, np.random.default_rng(9)))
    vals = list(arrays.values())
    assert _flat.base_of(vals) is not None
    assert _flat.base_of(vals[::-1]) is None  # out of order
    assert _flat.base_of(vals[:-1]) is None  # does not cover the whole array
    assert _flat.base_of([v.copy() for v in vals]) is None  # separate arrays
    one = _as_flat(_net_params(1, np.random.default_rng(9)))  # R = 1: NumPy gives the replica axis any stride
    assert _flat.base_of(list(one.values())) is not None
    # the last positive answer is remembered by identity: asking again, or about other arrays, stays right
    assert _flat.base_of(vals) is _flat.base_of(list(arrays.values())) is next(iter(arrays.values())).base
    assert _flat.base_of([vals[0], *vals[1:-1], vals[-1].copy()]) is None
    assert _flat.base_of([*vals, vals[0]]) is None  # one array twice
    # ... by weak reference: remembering it keeps no dead net's buffer alive
    import gc
    import weakref

    dead = weakref.ref(next(iter(arrays.values())).base)
    assert _flat.base_of(vals) is dead()
    del arrays, vals, one
    gc.collect()
    assert dead() is None
