"""Weight initializers, by name.

Why a whole module for "a few random numbers": the scale of the initial weights decides whether a deep net trains
at all. Too small and the signal (and its gradient) shrinks geometrically with depth; too large and sigmoids/tanh
saturate or ReLU activations explode; all equal (zeros) and the units of a layer never become different (symmetry
is never broken). The variance-preserving rules below (Glorot/Xavier, He/Kaiming, LeCun) choose the std from the
fan-in/fan-out so that the variance of the activations (forward) or gradients (backward) stays constant per layer.

An initializer is a function ``(shape, rng) -> ndarray`` with ``shape = (fan_in, fan_out)`` and ``rng`` a
``numpy.random.Generator``; it fills ONE replica's weight matrix (the MLP calls it once per replica and layer,
each replica with its own Generator, so replicas are independent and the same whatever R).

``course_params`` is the exception: it reproduces the Coursera "Initialization" notebook bit for bit with the
legacy global-state ``RandomState`` and the course's ``(fan_out, fan_in)`` layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Initializer = Callable[[tuple[int, int], np.random.Generator], np.ndarray]

NAMES: tuple[str, ...] = (
    "zeros",
    "constant",
    "normal",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
)

# Accepted keyword arguments and their defaults, per initializer.
_DEFAULTS: dict[str, dict[str, float]] = {
    "zeros": {},
    "constant": {"value": 0.0},
    "normal": {"std": 1.0, "mean": 0.0},
    "uniform": {"a": 0.05},
    "xavier_normal": {"gain": 1.0},
    "xavier_uniform": {"gain": 1.0},
    "he_normal": {"gain": 1.0},
    "he_uniform": {"gain": 1.0},
    "lecun_normal": {"gain": 1.0},
    "orthogonal": {"gain": 1.0},
}

# The inits whose draws are `randn * std` (+ mean): the only ones the course layout can reproduce.
COURSE_INITS: tuple[str, ...] = ("zeros", "normal", "xavier_normal", "he_normal", "lecun_normal")


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown initializer {name!r}; valid: {', '.join(NAMES)}")


def _resolve(name: str, kwargs: dict[str, Any]) -> dict[str, float]:
    """Validate `kwargs` for initializer `name` and fill in the defaults (one-line ValueError on a bad value)."""
    _check_name(name)
    allowed = _DEFAULTS[name]
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"initializer {name!r} got unknown argument(s) {', '.join(bad)}; valid: {valid}")
    out = dict(allowed)
    for k, v in kwargs.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"initializer {name!r}: {k}={v!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"initializer {name!r}: {k}={v!r} must be finite")
        if k in ("std", "gain") and f < 0:
            raise ValueError(f"initializer {name!r}: {k}={v!r} must be >= 0")
        if k == "a" and f < 0:
            raise ValueError(f"initializer {name!r}: a={v!r} must be >= 0 (the draw is U(-a, a))")
        out[k] = f
    return out


def std_of(name: str, fan_in: int, fan_out: int, **kwargs: Any) -> float:
    """The theoretical standard deviation of one weight drawn by initializer `name` for a (fan_in, fan_out) layer.

    Used by `course_params` (the course multiplies ``randn`` by exactly this number), by the tests (empirical std of
    a large draw) and by reports (expected vs measured activation scale). For ``constant`` and ``zeros`` it is 0;
    for ``orthogonal`` it is ``gain / sqrt(max(fan_in, fan_out))`` (an orthonormal set of min(fan_in, fan_out)
    vectors has total squared norm min(fan_in, fan_out) spread over fan_in*fan_out entries).
    """
    kw = _resolve(name, kwargs)
    fan_in, fan_out = int(fan_in), int(fan_out)
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in and fan_out must be >= 1, got ({fan_in}, {fan_out})")
    if name in ("zeros", "constant"):
        return 0.0
    if name == "normal":
        return kw["std"]
    if name == "uniform":
        return kw["a"] / math.sqrt(3.0)
    g = kw["gain"]
    if name in ("xavier_normal", "xavier_uniform"):
        return g * math.sqrt(2.0 / (fan_in + fan_out))
    if name in ("he_normal", "he_uniform"):
        return g * math.sqrt(2.0 / fan_in)
    if name == "lecun_normal":
        return g * math.sqrt(1.0 / fan_in)
    assert name == "orthogonal"
    return g / math.sqrt(max(fan_in, fan_out))


# --- the initializers themselves -------------------------------------------------------------------------------


def zeros(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """W = 0. Draws nothing. Fails on purpose: every unit of a layer computes the same function and receives the
    same gradient, so the symmetry between units is never broken (course "Initialization")."""
    return np.zeros(shape)


def _constant(value: float) -> Initializer:
    def constant(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W = value everywhere. Same symmetry problem as zeros (every unit identical); useful as a control."""
        return np.full(shape, value, dtype=np.float64)

    return constant


def _normal(std: float, mean: float) -> Initializer:
    def normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ N(mean, std²). The seeds' ``randn``, ``randn*10``, ``randn/10``, ``randn/3`` are std 1, 10, 0.1, 1/3:
        a fixed scale that ignores the layer width, hence saturation (large) or vanishing signal (small)."""
        w = rng.standard_normal(shape)
        w *= std
        if mean:
            w += mean
        return w

    return normal


def _uniform(a: float) -> Initializer:
    def uniform(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ U(-a, a), std a/sqrt(3). A fixed scale, like `normal`."""
        return rng.uniform(-a, a, size=shape)

    return uniform


def _xavier_normal(gain: float) -> Initializer:
    def xavier_normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ N(0, gain² · 2/(fan_in+fan_out)). Glorot & Bengio 2010, "Understanding the difficulty of training deep
        feedforward neural networks": compromise between keeping forward variance (1/fan_in) and backward
        variance (1/fan_out) constant, derived for symmetric activations linear around 0 (tanh)."""
        fan_in, fan_out = shape
        w = rng.standard_normal(shape)
        w *= gain * math.sqrt(2.0 / (fan_in + fan_out))
        return w

    return xavier_normal


def _xavier_uniform(gain: float) -> Initializer:
    def xavier_uniform(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ U(-b, b), b = gain · sqrt(6/(fan_in+fan_out)) (same variance as xavier_normal). Glorot & Bengio 2010,
        eq. 16, the "normalized initialization"."""
        fan_in, fan_out = shape
        b = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-b, b, size=shape)

    return xavier_uniform


def _he_normal(gain: float) -> Initializer:
    def he_normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ N(0, gain² · 2/fan_in). He et al. 2015, "Delving Deep into Rectifiers": a ReLU zeroes half of its
        input, halving the second moment, so the variance needs a factor 2 over LeCun to stay constant with
        depth. (gain multiplies the whole std; torch's kaiming_normal_ puts the sqrt(2) in its gain instead.)"""
        fan_in = shape[0]
        w = rng.standard_normal(shape)
        w *= gain * math.sqrt(2.0 / fan_in)
        return w

    return he_normal


def _he_uniform(gain: float) -> Initializer:
    def he_uniform(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ U(-b, b), b = gain · sqrt(6/fan_in): the uniform with He's variance 2/fan_in. He et al. 2015."""
        fan_in = shape[0]
        b = gain * math.sqrt(6.0 / fan_in)
        return rng.uniform(-b, b, size=shape)

    return he_uniform


def _lecun_normal(gain: float) -> Initializer:
    def lecun_normal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W ~ N(0, gain² / fan_in). LeCun, Bottou, Orr & Müller 1998, "Efficient BackProp": keeps the variance of
        a linear unit's output equal to its inputs' variance (the seeds' "Xavier" ``randn/sqrt(n)``)."""
        fan_in = shape[0]
        w = rng.standard_normal(shape)
        w *= gain * math.sqrt(1.0 / fan_in)
        return w

    return lecun_normal


def _orthogonal(gain: float) -> Initializer:
    def orthogonal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """W = gain · Q with orthonormal columns (fan_in >= fan_out) or rows (fan_in < fan_out), Q from the QR
        decomposition of a Gaussian matrix with the sign fix that makes it Haar-distributed. Saxe, McClelland &
        Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear networks": all
        singular values are 1, so a deep linear net neither shrinks nor amplifies any direction."""
        fan_in, fan_out = shape
        big, small = max(fan_in, fan_out), min(fan_in, fan_out)
        a = rng.standard_normal((big, small))
        q, r = np.linalg.qr(a)
        d = np.sign(np.diag(r))
        d[d == 0] = 1.0
        q *= d  # make the factorisation unique (uniform over the orthogonal group)
        w = q if fan_in >= fan_out else q.T
        return np.ascontiguousarray(w * gain)

    return orthogonal


def get(name: str, **kwargs: Any) -> Initializer:
    """The initializer called `name`, configured by `kwargs`.

    kwargs: ``constant(value=0.0)``, ``normal(std=1.0, mean=0.0)``, ``uniform(a=0.05)`` (U(-a, a)), and
    ``gain=1.0`` for xavier_*/he_*/lecun_normal/orthogonal (a multiplier on the std). An unknown name or
    argument raises a one-line ValueError that lists the valid choices.
    """
    kw = _resolve(name, kwargs)
    if name == "zeros":
        return zeros
    if name == "constant":
        return _constant(kw["value"])
    if name == "normal":
        return _normal(kw["std"], kw["mean"])
    if name == "uniform":
        return _uniform(kw["a"])
    factory = {
        "xavier_normal": _xavier_normal,
        "xavier_uniform": _xavier_uniform,
        "he_normal": _he_normal,
        "he_uniform": _he_uniform,
        "lecun_normal": _lecun_normal,
        "orthogonal": _orthogonal,
    }[name]
    return factory(kw["gain"])


def course_params(sizes: list[int], name: str, seed: int = 3, **kwargs: Any) -> dict[str, np.ndarray]:
    """The parameters exactly as the Coursera "Initialization" notebook draws them (no replica axis).

    The course does ``np.random.seed(3)`` then, for l = 1..L, ``W = np.random.randn(n_l, n_{l-1}) * scale`` and
    ``b = np.zeros((n_l, 1))`` (scale 10 for "random", ``np.sqrt(2./n_{l-1})`` for He). We use a private
    ``RandomState(seed)`` (same stream as the legacy global seed, without touching global state), multiply by
    ``std_of(name, ...)`` and store W transposed, i.e. in our samples-are-rows ``(fan_in, fan_out)`` layout.
    ``zeros`` draws nothing. Only the ``randn``-based inits can be reproduced this way; others raise ValueError.
    Returns {"W1": (n0, n1), "b1": (n1,), ...}.
    """
    _check_name(name)
    if name not in COURSE_INITS:
        raise ValueError(f"course_params supports only {', '.join(COURSE_INITS)}; got {name!r}")
    kw = _resolve(name, kwargs)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {sizes}")
    rs = np.random.RandomState(seed)
    out: dict[str, np.ndarray] = {}
    for l in range(1, len(sizes)):
        fan_in, fan_out = int(sizes[l - 1]), int(sizes[l])
        if name == "zeros":
            w = np.zeros((fan_out, fan_in))
        else:
            w = rs.randn(fan_out, fan_in) * std_of(name, fan_in, fan_out, **kwargs)
            if kw.get("mean"):
                w = w + kw["mean"]
        out[f"W{l}"] = np.ascontiguousarray(w.T)
        out[f"b{l}"] = np.zeros(fan_out)
    return out
