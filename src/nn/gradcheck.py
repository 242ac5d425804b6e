"""Gradient checking: compare backprop's gradients with centred finite differences (course "Gradient Checking").

Why: a wrong backward pass rarely crashes; the net just trains worse, and the failure looks like a "hard problem".
``(f(x+ε) − f(x−ε)) / 2ε`` has error O(ε²), so with ε = 1e-7 in float64 the relative error
``‖g − n‖₂ / (‖g‖₂ + ‖n‖₂)`` of a correct gradient is ~1e-9…1e-11; above 1e-7 something is wrong (SPEC S7).

Kinks (ReLU at 0) and random dropout masks break the comparison, so checks use smooth or leaky activations with
inputs away from 0, and FIXED dropout masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .mlp import MLP

_TINY = 1e-300


def numerical_gradient(f: Callable[[], Any], x: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Centred-difference gradient of ``f()`` (a scalar, or an array whose SUM is meant) with respect to `x`.

    `x` is perturbed IN PLACE one entry at a time (f reads it through whatever holds it, e.g. a net's params) and
    restored exactly afterwards. For an array-valued f the difference is taken term by term before summing,
    ``Σ(f(x+ε) − f(x−ε))``: terms that x does not affect (the other replicas' losses) cancel exactly instead of
    adding their rounding noise, which is what makes ε = 1e-7 usable on an R-replica net.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx].copy()
        x[idx] = old + eps
        fp = np.asarray(f(), dtype=np.float64)
        x[idx] = old - eps
        fm = np.asarray(f(), dtype=np.float64)
        x[idx] = old
        grad[idx] = np.sum(fp - fm) / (2.0 * eps)
    return grad


def relative_error(a: np.ndarray, n: np.ndarray) -> float:
    """``‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, tiny)``: the course's measure; < 1e-7 means the analytic gradient is right."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), _TINY))


def _error(a: np.ndarray, n: np.ndarray, f0: float, eps: float) -> float:
    """Relative error, except for a gradient that is zero to the resolution of the finite difference.

    A centred difference cannot resolve derivatives smaller than its own rounding noise, about
    ``ulp(f)/ε`` ≈ 2e-16·|f|/ε per entry (2e-9 for |f| ~ 1, ε = 1e-7). A gradient that is zero by construction
    (the bias of a layer followed by batch norm: the mean subtraction cancels it) then compares pure noise with
    pure noise and the ratio is meaningless; when both norms are below 100× that noise floor the check
    reports 0.0 (nothing measurable disagrees).
    """
    floor = 100.0 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / eps * np.sqrt(max(np.size(a), 1))
    if np.linalg.norm(a) < floor and np.linalg.norm(n) < floor:
        return 0.0
    return relative_error(a, n)


def check_mlp(net: MLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-7, seed: int = 0) -> dict[str, float]:
    """Per-parameter relative error of ``net.loss_and_grads`` against finite differences.

    The checked scalar is the sum of the replicas' training losses (replicas are independent, so its gradient is
    each replica's gradient). Dropout masks are drawn ONCE from ``default_rng(seed)`` and held fixed, batch norm
    runs in train mode (batch statistics), and the L2 term is included. The net's parameters and running
    statistics are exactly as before when the check returns.
    """
    X = np.asarray(X)
    saved_state = {k: v.copy() for k, v in net.state.items()}
    try:
        masks = None
        if net.dropout > 0.0:
            rng = np.random.default_rng(seed)
            m = X.shape[-2]
            masks = [rng.random((net.replicas, m, w)) >= net.dropout for w in net.sizes[1:-1]]
        loss, grads = net.loss_and_grads(X, y, dropout_mask=masks)
        grads = {k: g.copy() for k, g in grads.items()}  # the net's buffers: every f() below overwrites them
        f0 = float(np.max(np.abs(loss)))

        def f() -> np.ndarray:  # per-replica losses; numerical_gradient differentiates their sum
            return net.loss_and_grads(X, y, dropout_mask=masks)[0]

        out = {}
        for k, p in net.params.items():
            num = numerical_gradient(f, p, eps)
            out[k] = _error(grads[k], num, f0, eps)
        return out
    finally:
        for k, v in saved_state.items():
            net.state[k][...] = v


def check_layer(forward: Callable[..., tuple[np.ndarray, Any]], backward: Callable[[np.ndarray, Any], Any],
                inputs: dict[str, np.ndarray], dout: np.ndarray, eps: float = 1e-7) -> dict[str, float]:
    """Relative error of a layer's backward pass for every entry of `inputs`.

    ``forward(**inputs) -> (out, cache)``; ``backward(dout, cache)`` returns the gradients in the order of the
    `inputs` dict (a tuple, or a single array for one input). The checked scalar is ``Σ out · dout``, whose
    gradient with respect to each input is exactly what backward computes from `dout`. Float inputs are
    perturbed in place and restored.
    """
    out, cache = forward(**inputs)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple | list):
        grads = (grads,)
    if len(grads) != len(inputs):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(inputs)} inputs")
    f0 = float(np.sum(out * dout))

    def f() -> float:
        o, _ = forward(**inputs)
        return float(np.sum(o * dout))

    errs = {}
    for (name, x), g in zip(inputs.items(), grads, strict=True):
        num = numerical_gradient(f, x, eps)
        errs[name] = _error(np.asarray(g), num, f0, eps)
    return errs
