"""The synthetic point clouds: the course's planar petals and the TensorFlow Playground's spiral, XOR and gauss.

Each takes ``(n, noise, rng)`` and returns ``(X, y)``; the draw order is the original's, so a seed gives the
original's points (for the course's petals, with its legacy ``randn`` stream through :class:`Randn`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def flower(n: int, noise: float, rng: Any) -> tuple[np.ndarray, np.ndarray]:
    """The course's planar petals (load_planar_dataset), for any n and noise; ``rng`` draws standard normals.

    Two classes of n/2 points; for class j: t = linspace(j*3.12, (j+1)*3.12, N) + noise*randn,
    r = a*sin(4t) + noise*randn with a = 4; X = [r sin t, r cos t]. Draw order matches the course (t, then r).
    """
    a = 4
    sizes = (n // 2, n - n // 2)
    X = np.zeros((n, 2))
    y = np.zeros(n, dtype=np.int64)
    start = 0
    for j, N in enumerate(sizes):
        ix = slice(start, start + N)
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.standard_normal(N) * noise
        r = a * np.sin(4 * t) + rng.standard_normal(N) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
        start += N
    return X, y


def spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifySpiralData``: two interleaved arms, uniform noise in [-noise, noise] per axis.

    For i < N (N points per arm): r = i/N*5, t = 1.75*i/N*2*pi + delta (delta 0 for label 1, pi for label 0).
    """
    parts_X, parts_y = [], []
    for delta, label, N in ((0.0, 1, n - n // 2), (math.pi, 0, n // 2)):
        i = np.arange(N)
        r = i / N * 5
        t = 1.75 * i / N * 2 * math.pi + delta
        u = rng.uniform(-1, 1, size=(N, 2)) * noise  # per point: x noise then y noise, as in the loop
        parts_X.append(np.c_[r * np.sin(t) + u[:, 0], r * np.cos(t) + u[:, 1]])
        parts_y.append(np.full(N, label, dtype=np.int64))
    return np.concatenate(parts_X), np.concatenate(parts_y)


def xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifyXORData``: uniform in [-5, 5]^2 pushed 0.3 away from the axes; the label is
    sign(x*y) measured on a noisy copy (noise scales a uniform [-5, 5] offset), so noise flips labels near
    the axes."""
    d = rng.uniform(-5, 5, size=(n, 4))  # per point: x, y, noiseX, noiseY (the Playground's draw order)
    pad = 0.3
    x = d[:, 0] + np.where(d[:, 0] > 0, pad, -pad)
    y = d[:, 1] + np.where(d[:, 1] > 0, pad, -pad)
    nx, ny = d[:, 2] * noise, d[:, 3] * noise
    label = ((x + nx) * (y + ny) >= 0).astype(np.int64)
    return np.c_[x, y], label


def gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifyTwoGaussData``: label 1 around (2, 2), label 0 around (-2, -2); the variance
    maps noise [0, 0.5] linearly to [0.5, 4]. (The Playground samples with the polar method; NumPy's normal
    has the same law, not the same stream.)"""
    variance = 0.5 + noise * (4 - 0.5) / 0.5
    sd = math.sqrt(variance)
    parts_X, parts_y = [], []
    for c, label, N in ((2.0, 1, n - n // 2), (-2.0, 0, n // 2)):
        parts_X.append(rng.normal(c, sd, size=(N, 2)))
        parts_y.append(np.full(N, label, dtype=np.int64))
    return np.concatenate(parts_X), np.concatenate(parts_y)



class Randn:
    """Adapter so ``flower`` draws with the legacy ``randn`` exactly as the course does
    (``RandomState.standard_normal`` and ``randn`` give the same stream; this keeps the course's spelling)."""

    def __init__(self, rs: np.random.RandomState) -> None:
        self._rs = rs

    def standard_normal(self, n: int) -> np.ndarray:
        return self._rs.randn(n)
