"""Initializers: the statistics each one promises, the error messages, and the course-exact draw."""

import numpy as np
import pytest

from src.nn import initializers
from src.nn.initializers import NAMES, course_params, get, std_of

RANDOM = [n for n in NAMES if n not in ("zeros", "constant")]


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("shape", [(500, 500), (300, 700), (700, 300)])
def test_empirical_std_matches_theory(name, shape):
    W = get(name)(shape, np.random.default_rng(0))
    assert W.shape == shape
    assert W.dtype == np.float64
    expected = std_of(name, *shape)
    assert abs(W.std() - expected) < 0.03 * expected
    assert abs(W.mean()) < 0.03 * expected


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("normal", {"std": 10.0}, 10.0),
    ("normal", {"std": 0.1}, 0.1),
    ("normal", {"std": 1 / 3}, 1 / 3),
    ("uniform", {"a": 0.3}, 0.3 / np.sqrt(3)),
    ("he_normal", {"gain": 2.0}, 2.0 * np.sqrt(2 / 400)),
    ("xavier_uniform", {"gain": 0.5}, 0.5 * np.sqrt(2 / 900)),
    ("lecun_normal", {}, np.sqrt(1 / 400)),
])
def test_kwargs_change_the_scale(name, kwargs, expected):
    assert std_of(name, 400, 500, **kwargs) == pytest.approx(expected)
    W = get(name, **kwargs)((400, 500), np.random.default_rng(1))
    assert abs(W.std() - expected) < 0.03 * expected


def test_formulas_use_the_right_fans():
    assert std_of("he_normal", 50, 7) == pytest.approx(np.sqrt(2 / 50))
    assert std_of("he_uniform", 50, 7) == pytest.approx(np.sqrt(2 / 50))
    assert std_of("xavier_normal", 50, 7) == pytest.approx(np.sqrt(2 / 57))
    assert std_of("lecun_normal", 50, 7) == pytest.approx(np.sqrt(1 / 50))
    assert std_of("orthogonal", 50, 7) == pytest.approx(1 / np.sqrt(50))
    assert std_of("zeros", 3, 4) == 0.0 and std_of("constant", 3, 4, value=2.0) == 0.0


def test_normal_mean_and_constant_and_zeros():
    W = get("normal", std=0.5, mean=3.0)((500, 500), np.random.default_rng(2))
    assert abs(W.mean() - 3.0) < 0.01 and abs(W.std() - 0.5) < 0.015
    assert np.array_equal(get("constant", value=0.25)((3, 4), np.random.default_rng(0)), np.full((3, 4), 0.25))
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert np.array_equal(get("zeros")((3, 4), rng), np.zeros((3, 4)))
    assert rng.bit_generator.state == state  # zeros draws nothing


@pytest.mark.parametrize(("name", "bound"), [
    ("uniform", 0.05),
    ("xavier_uniform", np.sqrt(6 / (300 + 200))),
    ("he_uniform", np.sqrt(6 / 300)),
])
def test_uniform_bounds_respected(name, bound):
    W = get(name)((300, 200), np.random.default_rng(3))
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.99 * bound  # the whole interval is used
    assert np.mean(W > 0) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (50, 50)])
def test_orthogonal_is_orthonormal(shape):
    W = get("orthogonal")(shape, np.random.default_rng(4))
    k = min(shape)
    gram = W.T @ W if shape[0] >= shape[1] else W @ W.T
    np.testing.assert_allclose(gram, np.eye(k), atol=1e-12)
    W2 = get("orthogonal", gain=3.0)(shape, np.random.default_rng(4))
    np.testing.assert_allclose(W2, 3.0 * W, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.svd(W2, compute_uv=False), 3.0, rtol=1e-10)


def test_same_generator_state_same_draw():
    for name in NAMES:
        a = get(name)((20, 30), np.random.default_rng(9))
        b = get(name)((20, 30), np.random.default_rng(9))
        assert np.array_equal(a, b)


def test_unknown_name_error_is_one_line_and_lists_choices():
    with pytest.raises(ValueError) as info:
        get("bogus")
    msg = str(info.value)
    assert "\n" not in msg
    assert "'bogus'" in msg
    for name in NAMES:
        assert name in msg
    with pytest.raises(ValueError, match="bogus"):
        std_of("bogus", 2, 3)


def test_unknown_and_bad_kwargs():
    with pytest.raises(ValueError) as info:
        get("he_normal", std=2.0)
    msg = str(info.value)
    assert "std" in msg and "gain" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="std"):
        get("normal", std=-1.0)
    with pytest.raises(ValueError, match="not a number"):
        get("normal", std="big")
    with pytest.raises(ValueError, match="finite"):
        get("uniform", a=float("inf"))


@pytest.mark.parametrize(("name", "kwargs", "scale"), [
    ("he_normal", {}, lambda fi: np.sqrt(2.0 / fi)),
    ("normal", {"std": 10.0}, lambda fi: 10.0),
    ("normal", {"std": 1.0}, lambda fi: 1.0),
    ("lecun_normal", {}, lambda fi: np.sqrt(1.0 / fi)),
])
def test_course_params_reproduce_the_legacy_draw(name, kwargs, scale):
    sizes = [2, 10, 5, 1]
    before = np.random.get_state()[1].copy()
    got = course_params(sizes, name, seed=3, **kwargs)
    assert np.array_equal(np.random.get_state()[1], before)  # the global stream is not touched
    np.random.seed(3)  # exactly what the course notebook does
    for l in range(1, len(sizes)):
        W = np.random.randn(sizes[l], sizes[l - 1]) * scale(sizes[l - 1])
        assert np.array_equal(got[f"W{l}"], W.T)
        assert got[f"W{l}"].shape == (sizes[l - 1], sizes[l])
        assert np.array_equal(got[f"b{l}"], np.zeros(sizes[l]))
    assert sorted(got) == ["W1", "W2", "W3", "b1", "b2", "b3"]


def test_course_params_zeros_and_unsupported():
    got = course_params([2, 10, 5, 1], "zeros")
    assert all(not v.any() for v in got.values())
    with pytest.raises(ValueError, match="uniform"):
        course_params([2, 3, 1], "uniform")
    with pytest.raises(ValueError, match="bogus"):
        course_params([2, 3, 1], "bogus")


def test_module_exports():
    assert initializers.NAMES == ("zeros", "constant", "normal", "uniform", "xavier_normal", "xavier_uniform",
                                  "he_normal", "he_uniform", "lecun_normal", "orthogonal")
