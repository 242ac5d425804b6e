"""The gradient checker itself: right on known derivatives, loud on wrong ones, and free of side effects."""

import numpy as np
import pytest

from src.nn import MLP, gradcheck
from src.nn.gradcheck import (
    check_layer,
    check_mlp,
    numerical_gradient,
    numerical_gradient_per_replica,
    relative_error,
)
from src.nn.layers import dense_backward, dense_forward


def test_numerical_gradient_of_a_known_function_restores_x():
    x = np.random.default_rng(0).standard_normal((3, 4))
    before = x.copy()
    num = numerical_gradient(lambda: float(np.sum(x ** 3)), x)
    assert np.array_equal(x, before)  # perturbed in place, restored bit for bit
    assert relative_error(3 * x ** 2, num) < 1e-8


def test_numerical_gradient_of_an_array_valued_f_is_that_of_its_sum():
    x = np.array([1.0, 2.0, 3.0])
    num = numerical_gradient(lambda: x ** 2, x)
    np.testing.assert_allclose(num, 2 * x, rtol=1e-8)


@pytest.mark.parametrize("copies", [1, 3])
def test_numerical_gradient_per_replica_equals_one_entry_at_a_time(copies):
    # R=2 replicas of a (3, 4) parameter, held `copies` times; loss r depends on its own row only
    g = np.random.default_rng(4)
    base = g.standard_normal((2, 3, 4))
    x = np.concatenate([base] * copies)
    w = g.standard_normal((3, 4))
    f = lambda: np.sum(np.sin(x) * w, axis=(1, 2))  # noqa: E731 - per-row losses
    before = x.copy()
    num = numerical_gradient_per_replica(f, x, copies=copies)
    assert np.array_equal(x, before)  # perturbed in place, restored bit for bit
    assert num.shape == base.shape
    assert relative_error(np.cos(base) * w, num) < 1e-8
    one = base.copy()  # the textbook loop on the sum of the replicas' losses: the very same floats
    ref = numerical_gradient(lambda: np.sum(np.sin(one) * w, axis=(1, 2)), one)
    assert np.array_equal(num, ref)
    with pytest.raises(ValueError, match="copies=4"):
        numerical_gradient_per_replica(f, x, copies=4)


def test_course_one_dimensional_example():
    # course "Gradient Checking": J(theta) = theta * x with x = 2, theta = 4; dJ/dtheta = x = 2 (error ~2.9e-10)
    theta = np.array([4.0])
    num = numerical_gradient(lambda: float(theta[0] * 2.0), theta)
    assert relative_error(np.array([2.0]), num) < 1e-7


def test_relative_error_values():
    assert relative_error(np.ones(3), np.ones(3)) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0  # no nan for two zero gradients
    assert relative_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(np.sqrt(2) / 2)
    assert relative_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(1.0)


def test_check_layer_flags_a_wrong_backward():
    g = np.random.default_rng(1)
    inputs = {"x": g.standard_normal((2, 5, 3)), "W": g.standard_normal((2, 3, 4)), "b": g.standard_normal((2, 4))}
    dout = g.standard_normal((2, 5, 4))
    ok = check_layer(dense_forward, dense_backward, inputs, dout)
    assert max(ok.values()) < 1e-7

    def wrong_backward(d, cache):
        dx, dW, db = dense_backward(d, cache)
        return dx, dW, 2 * db  # a classic bug: a factor on the bias gradient

    bad = check_layer(dense_forward, wrong_backward, inputs, dout)
    assert bad["b"] > 0.1 and bad["W"] < 1e-7
    with pytest.raises(ValueError, match="gradients"):
        check_layer(dense_forward, lambda d, c: dense_backward(d, c)[:2], inputs, dout)


class _BuggyMLP(MLP):
    """Corrupts one gradient, as a wrong backward pass would."""

    def loss_and_grads(self, X, y, **kw):
        loss, grads = super().loss_and_grads(X, y, **kw)
        grads["W1"] = grads["W1"] * 1.01
        return loss, grads


def test_check_mlp_catches_a_one_percent_error():
    X = np.random.default_rng(2).standard_normal((6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    errs = check_mlp(_BuggyMLP([3, 4, 1], activation="tanh", replicas=2, seed=0), X, y)
    assert errs["W1"] > 1e-3
    assert errs["W2"] < 1e-7


class _OtherConstructor(_BuggyMLP):
    """A subclass the check cannot rebuild with more replicas (its constructor takes other arguments)."""

    def __init__(self, width, **kw):
        super().__init__([3, width, 1], **kw)


def test_check_mlp_over_many_copies_gives_the_numbers_of_one(monkeypatch):
    g = np.random.default_rng(6)
    X, y = g.standard_normal((5, 3)), g.integers(0, 3, 5)
    net = MLP([3, 4, 3], activation="tanh", batchnorm=True, dropout=0.3, l2=np.array([0.1, 0.4]), replicas=2,
              seed=1)
    wide = check_mlp(net, X, y)
    masks = [np.random.default_rng(0).random((2, 5, 4)) >= 0.3]  # as check_mlp draws them (seed 0)
    _, _, K = gradcheck._widened_loss(net, X, y, masks)
    assert K > 1  # the fast path is the one taken
    monkeypatch.setattr(gradcheck, "WIDE_ELEMENTS", 1)  # one copy: each evaluation perturbs one entry
    assert check_mlp(net, X, y) == wide
    monkeypatch.undo()
    # a net that cannot be copied is checked as itself, and a wrong gradient is still caught
    errs = check_mlp(_OtherConstructor(4, activation="tanh", replicas=2, seed=0), X, y % 2)
    assert errs["W1"] > 1e-3 and errs["W2"] < 1e-7


def test_check_mlp_has_no_side_effects():
    g = np.random.default_rng(3)
    X, y = g.standard_normal((6, 3)), g.integers(0, 3, 6)
    net = MLP([3, 4, 3], activation="tanh", batchnorm=True, dropout=0.3, l2=0.2, replicas=2, seed=0)
    before = net.copy_params()
    errs = check_mlp(net, X, y)
    assert max(errs.values()) < 1e-7
    after = net.copy_params()
    for k in before:
        assert np.array_equal(before[k], after[k]), k  # params AND running statistics untouched
    # the gradient of a bias followed by batch norm is zero by construction, and is reported as such
    _, grads = net.loss_and_grads(X, y)
    assert np.abs(grads["b1"]).max() < 1e-14
    assert errs["b1"] == 0.0
