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


def numerical_gradient_per_replica(f: Callable[[], Any], x: np.ndarray, eps: float = 1e-7,
                                   copies: int = 1) -> np.ndarray:
    """Centred-difference gradient of independent losses ``f() -> (K·R,)`` with respect to ``x (K·R, ...)``, where
    loss i depends on ``x[i]`` alone: a parameter of a net with R replicas, held `copies` = K times over (copy k in
    rows k·R … k·R+R−1, equal to the others). Returns the (R, ...) gradient.

    Why: every pair of evaluations perturbs K different entries, entry e+k in copy k, in every replica at once, so
    it yields K·R derivatives ``(f(x+ε)[i] − f(x−ε)[i]) / 2ε`` where :func:`numerical_gradient` yields one: the
    loop runs over chunks of entries, not entries (a check of an 8-layer net made 30,000 evaluations). The
    numbers are those of one entry at a time, since loss i is computed the same way whatever the other rows
    hold. `x` is perturbed in place and restored exactly.
    """
    K = int(copies)
    if K < 1 or x.shape[0] % K:
        raise ValueError(f"copies={copies} must be >= 1 and divide the replica axis ({x.shape[0]} rows)")
    R, shape = x.shape[0] // K, x.shape[1:]
    n = int(np.prod(shape))
    grad = np.zeros((R, n), dtype=np.float64)
    rows = np.arange(K * R).reshape(K, R)  # row of copy k, replica r
    for start in range(0, n, K):
        entries = np.arange(start, min(start + K, n))  # entry e+k goes to copy k
        k = entries.size
        at = (rows[:k], *(i[:, None] for i in np.unravel_index(entries, shape)))  # (k, R) index arrays
        old = x[at].copy()
        x[at] = old + eps
        fp = np.asarray(f(), dtype=np.float64).reshape(K, R)[:k]
        x[at] = old - eps
        fm = np.asarray(f(), dtype=np.float64).reshape(K, R)[:k]
        x[at] = old
        grad[:, entries] = ((fp - fm) / (2.0 * eps)).T
    return grad.reshape((R, *shape))


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

    The checked function is each replica's training loss (``net.train_loss``: the forward pass of
    ``loss_and_grads`` without its backward; the two return the same floats, tests/test_mlp.py). Replicas are
    independent, so one evaluation perturbs an entry in every replica, and in a net holding K copies of them, K
    entries at once (:func:`numerical_gradient_per_replica`). Dropout masks are drawn ONCE from
    ``default_rng(seed)`` and held fixed, batch norm runs in train mode (batch statistics), and the L2 term is
    included. The net's parameters and running statistics are exactly as before when the check returns.
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

        f, wide, K = _widened_loss(net, X, y, masks)
        out = {}
        for k in net.params:
            num = numerical_gradient_per_replica(f, wide.params[k], eps, copies=K)
            out[k] = _error(grads[k], num, f0, eps)
        return out
    finally:
        for k, v in saved_state.items():
            net.state[k][...] = v


# Elements per activation array of the widened net (512 KB in float64): enough copies to amortise each
# evaluation's ~30 NumPy calls, few enough to stay in cache (the 8-layer check of S7 on the 2-core box: 3.2 s with
# one copy, 1.6-1.9 s with arrays of 2**15-2**17 elements, 3.9 s with 2**18).
WIDE_ELEMENTS = 2**16
MAX_COPIES = 256


def _widened_loss(net: MLP, X: np.ndarray, y: np.ndarray, masks: list[np.ndarray] | None
                  ) -> tuple[Callable[[], np.ndarray], MLP, int]:
    """(f, the net f evaluates, K): f() is the training loss per replica of a net holding K copies of `net`'s
    replicas, for :func:`numerical_gradient_per_replica`.

    The copy is built from `net`'s class, hyper-parameters and tiled parameters, and used only if its losses equal
    `net`'s to the last bit; otherwise (a subclass with other constructor arguments, say) f evaluates `net` itself,
    K = 1: slower, the same numbers.
    """
    def loss_of(n: MLP, K: int) -> Callable[[], np.ndarray]:
        Xk = X if X.ndim == 2 else np.concatenate([X] * K)
        yk = y if np.ndim(y) == 1 else np.concatenate([y] * K)
        mk = None if masks is None else [np.concatenate([mask] * K) for mask in masks]
        return lambda: n.train_loss(Xk, yk, dropout_mask=mk)

    R = net.replicas
    K = int(min(MAX_COPIES, max(1, WIDE_ELEMENTS // (R * X.shape[-2] * max(net.sizes)))))
    if K > 1:
        try:
            wide = type(net)(net.sizes, activation=net.activation, seeds=list(net.seeds) * K,
                             batchnorm=net.batchnorm, dropout=net.dropout,
                             l2=net.l2 if np.ndim(net.l2) == 0 else np.tile(net.l2, K), bn_momentum=net.bn_momentum,
                             bn_eps=net.bn_eps, leaky_slope=net.leaky_slope, dtype=net.dtype,
                             params={k: np.concatenate([v] * K) for k, v in net.params.items()})
            f = loss_of(wide, K)
            if np.array_equal(f().reshape(K, R), np.broadcast_to(loss_of(net, 1)(), (K, R))):
                return f, wide, K
        except (TypeError, ValueError):
            pass
    return loss_of(net, 1), net, 1


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
