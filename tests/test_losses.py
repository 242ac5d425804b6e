"""Losses: gradients against finite differences, stability for huge logits, known values."""

import warnings

import numpy as np
import pytest

from src.nn.gradcheck import numerical_gradient, relative_error
from src.nn.losses import (
    bce_per_sample,
    bce_with_logits,
    l2_penalty,
    softmax_ce_per_sample,
    softmax_cross_entropy,
)

TOL = 1e-7


def _check_loss(fn, z, y):
    loss, dz = fn(z, y)
    num = numerical_gradient(lambda: fn(z, y)[0], z)
    assert dz.shape == z.shape
    return relative_error(dz, num)


@pytest.mark.parametrize("shape", [(3, 8), (3, 8, 1)])
@pytest.mark.parametrize("per_replica_labels", [False, True])
def test_bce_gradient(shape, per_replica_labels):
    g = np.random.default_rng(0)
    z = 2.0 * g.standard_normal(shape)
    y = g.integers(0, 2, (3, 8) if per_replica_labels else (8,))
    assert _check_loss(bce_with_logits, z, y) < TOL


@pytest.mark.parametrize("per_replica_labels", [False, True])
def test_softmax_ce_gradient(per_replica_labels):
    g = np.random.default_rng(1)
    z = 2.0 * g.standard_normal((3, 8, 4))
    y = g.integers(0, 4, (3, 8) if per_replica_labels else (8,))
    assert _check_loss(softmax_cross_entropy, z, y) < TOL


def test_bce_matches_the_naive_formula_and_log2_at_zero():
    g = np.random.default_rng(2)
    z = g.standard_normal((2, 50))
    y = g.integers(0, 2, 50)
    a = 1 / (1 + np.exp(-z))
    naive = -(y * np.log(a) + (1 - y) * np.log(1 - a)).mean(axis=1)
    np.testing.assert_allclose(bce_with_logits(z, y)[0], naive, rtol=1e-12)
    loss, dz = bce_with_logits(np.zeros((2, 4)), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(dz, np.array([[0.5, -0.5, 0.5, -0.5]] * 2) / 4)


def test_bce_is_finite_and_correct_at_huge_logits():
    z = np.array([[1e3, 1e3, -1e3, -1e3]])
    y = np.array([1, 0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is exact enough
            loss, dz = bce_with_logits(z, y)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dz))
    # per-sample losses 0, 1000, 1000, 0 -> mean 500; gradients (sigmoid - y)/m
    np.testing.assert_allclose(loss, [500.0])
    np.testing.assert_allclose(dz, [[0.0, 0.25, -0.25, 0.0]])
    # each sample alone
    np.testing.assert_allclose(bce_with_logits(np.array([[1e3]]), np.array([0]))[0], [1e3])
    np.testing.assert_allclose(bce_with_logits(np.array([[1e3]]), np.array([1]))[0], [0.0])


def test_softmax_ce_values_and_stability():
    z = np.zeros((2, 5, 4))
    np.testing.assert_allclose(softmax_cross_entropy(z, np.zeros(5, dtype=int))[0], np.log(4.0), rtol=1e-15)
    big = np.array([[[1e3, 0.0, -1e3], [0.0, 1e3, 0.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dz = softmax_cross_entropy(big, np.array([1, 1]))
    assert np.isfinite(loss).all() and np.isfinite(dz).all()
    np.testing.assert_allclose(loss, [(1e3 + 0.0) / 2])
    g = np.random.default_rng(3)
    z = g.standard_normal((3, 6, 5))
    y = g.integers(0, 5, 6)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    naive = -np.log(p[:, np.arange(6), y]).mean(axis=1)
    np.testing.assert_allclose(softmax_cross_entropy(z, y)[0], naive, rtol=1e-12)
    assert softmax_cross_entropy(z, y)[1].sum(axis=-1) == pytest.approx(0.0, abs=1e-15)


def test_label_shape_errors():
    with pytest.raises(ValueError, match="labels"):
        bce_with_logits(np.zeros((2, 4)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"\(R, m, C\)"):
        softmax_cross_entropy(np.zeros((2, 4)), np.zeros(4, dtype=int))


@pytest.mark.parametrize("lam", [0.7, np.array([0.0, 0.3, 2.0])])
def test_l2_penalty_value_and_gradient(lam):
    g = np.random.default_rng(4)
    Ws = [g.standard_normal((3, 4, 5)), g.standard_normal((3, 5, 2))]
    m = 7
    loss, grads = l2_penalty(Ws, lam, m)
    lam_arr = np.broadcast_to(np.asarray(lam, dtype=float), (3,))
    expected = lam_arr / (2 * m) * sum((W ** 2).sum(axis=(1, 2)) for W in Ws)
    np.testing.assert_allclose(loss, expected, rtol=1e-13)
    for W, gW in zip(Ws, grads, strict=True):
        num = numerical_gradient(lambda: l2_penalty(Ws, lam, m)[0], W)
        assert relative_error(gW, num) < TOL
        np.testing.assert_allclose(gW, lam_arr[:, None, None] / m * W, rtol=1e-14)
    with pytest.raises(ValueError, match="shape"):
        l2_penalty(Ws, np.ones(2), m)


def test_per_sample_losses_average_to_the_loss_bit_for_bit():
    """The per-sample forms let one forward pass score several row blocks (MLP.evaluate_parts): a block's mean
    must be exactly the loss of that block alone."""
    rng = np.random.default_rng(4)
    z1, y1 = rng.normal(size=(3, 11, 1)) * 5, rng.integers(0, 2, 11)
    z3, y3 = rng.normal(size=(3, 11, 4)) * 5, rng.integers(0, 4, (3, 11))
    for per_sample, loss, z, y in ((bce_per_sample, bce_with_logits, z1, y1),
                                   (softmax_ce_per_sample, softmax_cross_entropy, z3, y3)):
        per = per_sample(z, y)
        assert per.shape == (3, 11)
        np.testing.assert_array_equal(np.add.reduce(per[:, :7], axis=1) / 7, loss(z[:, :7], y[..., :7])[0])
        np.testing.assert_array_equal(per.mean(axis=1), loss(z, y)[0])
