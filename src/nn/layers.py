"""Layers as forward/backward pairs (CS231n style): ``forward(...) -> (out, cache)``, ``backward(dout, cache)``.

Why pairs with an explicit cache: backpropagation is the chain rule applied layer by layer, and each layer's local
derivative needs values from its own forward pass. Keeping the two halves side by side makes every derivative
checkable in isolation (see `gradcheck.check_layer`) before it is trusted inside a network.

Shapes. Samples are rows. Every parameter has a leading replica axis R (independent networks trained at once):
x is ``(R, m, d)`` or ``(m, d)`` (one input shared by all replicas, broadcast by ``np.matmul``), W ``(R, din, dout)``,
b / gamma / beta ``(R, d)``. Replicas never mix: every reduction is over the sample axis (-2) only.
"""

from __future__ import annotations

import functools

import numpy as np

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")


# --- dense ------------------------------------------------------------------------------------------------------


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Affine map ``out = x @ W + b`` per replica: (R, m, din) or (m, din) with (R, din, dout) -> (R, m, dout)."""
    out = np.matmul(x, W)
    out += b[..., None, :]
    return out, (x, W)


@functools.lru_cache(maxsize=32)
def _ones(m: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of m ones, made once per (m, dtype) instead of on every backward pass."""
    out = np.ones(m, dtype=dtype)
    out.flags.writeable = False
    return out


def dense_backward(dout: np.ndarray, cache: tuple, *, need_dx: bool = True
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the affine map: ``dx = dout W^T``, ``dW = x^T dout``, ``db = sum_m dout``.

    dW is always (R, din, dout), also when x was shared (m, din): then the same x multiplies each replica's
    dout. dx has x's shape: for a shared x it is summed over replicas (x feeds every replica). ``need_dx=False``
    skips the product for the first layer, whose input gradient nobody needs (dx is then None).
    """
    x, W = cache
    dW = np.matmul(x.swapaxes(-1, -2), dout)  # a shared (din, m) broadcasts against (R, m, dout)
    # db = Σ_m dout, written as 1ᵀ·dout: NumPy's sum over the strided sample axis is 4-7x slower than the
    # same sum done by BLAS as a product with a vector of ones (measured in benchmarks/bench.py).
    db = np.matmul(_ones(dout.shape[-2], dout.dtype), dout)
    dx = None
    if need_dx:
        # W^T made contiguous first: a transposed (strided) view makes np.matmul leave BLAS for its slow loop.
        dx = np.matmul(dout, np.ascontiguousarray(W.swapaxes(-1, -2)))
        if x.ndim < dx.ndim:
            dx = dx.sum(axis=tuple(range(dx.ndim - x.ndim)))
    return dx, dW, db


# --- activations ------------------------------------------------------------------------------------------------


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function: uses exp(-|z|) <= 1, so it never overflows (|z| = 1e3 is fine)
    and keeps full relative precision in both tails."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so that exp never overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def activation_forward(name: str, z: np.ndarray, slope: float = 0.01) -> tuple[np.ndarray, tuple]:
    """Element-wise nonlinearity `name` (see ACTIVATIONS); `slope` is leaky_relu's negative-side slope.

    The cache keeps what the derivative needs: the output for sigmoid/tanh (σ' = σ(1-σ), tanh' = 1 - tanh²),
    the sign mask for the ReLU family.
    """
    _check_activation(name)
    if name == "sigmoid":
        a = sigmoid(z)
        return a, (a,)
    if name == "tanh":
        a = np.tanh(z)
        return a, (a,)
    if name == "relu":
        pos = z > 0
        return np.maximum(z, 0.0, dtype=z.dtype), (pos,)
    if name == "leaky_relu":
        pos = z > 0
        return np.where(pos, z, z * slope), (pos, slope)
    return z, ()


def activation_backward(name: str, da: np.ndarray, cache: tuple) -> np.ndarray:
    """dL/dz from dL/da for activation `name` (the local derivative times the incoming gradient)."""
    _check_activation(name)
    if name == "sigmoid":
        (a,) = cache
        return da * (a * (1.0 - a))
    if name == "tanh":
        (a,) = cache
        return da * (1.0 - a * a)
    if name == "relu":
        (pos,) = cache
        return da * pos
    if name == "leaky_relu":
        pos, slope = cache
        return np.where(pos, da, da * slope)
    return da


# --- batch norm -------------------------------------------------------------------------------------------------


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, state: dict[str, np.ndarray],
                      train: bool, momentum: float = 0.9, eps: float = 1e-5) -> tuple[np.ndarray, tuple]:
    """Batch normalisation (Ioffe & Szegedy 2015): normalise each feature over the mini-batch, then scale and shift.

    Why: it keeps every layer's pre-activations at zero mean / unit variance whatever the weight scale, which is
    why a BN net trains across init scales where a plain one fails (SPEC S6, book ch. 6).

    x (R, m, d); gamma, beta, running stats (R, d); statistics are over the sample axis per replica. In train mode
    the batch statistics are used and ``state`` is updated IN PLACE with
    ``running = momentum * running + (1 - momentum) * batch`` (CS231n / the book, momentum 0.9; the running
    variance uses the biased batch variance, like them and unlike torch's unbiased one). In eval mode the running
    statistics are used and nothing is updated.
    """
    g = gamma[..., None, :]
    bt = beta[..., None, :]
    if train:
        mu = x.mean(axis=-2, keepdims=True)
        xc = x - mu
        var = np.mean(xc * xc, axis=-2, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat = xc * inv_std
        rm, rv = state["running_mean"], state["running_var"]
        rm *= momentum
        rm += (1.0 - momentum) * mu[..., 0, :]
        rv *= momentum
        rv += (1.0 - momentum) * var[..., 0, :]
        out = xhat * g
        out += bt
        return out, (True, xhat, inv_std, gamma)
    inv_std = 1.0 / np.sqrt(state["running_var"][..., None, :] + eps)
    xhat = (x - state["running_mean"][..., None, :]) * inv_std
    out = xhat * g
    out += bt
    return out, (False, xhat, inv_std, gamma)


def batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of batch norm. Train mode uses the compact form of the chain rule through mean and variance:
    ``dx = inv_std/m · (m·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))`` with ``dxhat = dout·gamma``; eval mode is an
    affine map with fixed statistics."""
    train, xhat, inv_std, gamma = cache
    dgamma = np.sum(dout * xhat, axis=-2)
    dbeta = dout.sum(axis=-2)
    dxhat = dout * gamma[..., None, :]
    if not train:
        return dxhat * inv_std, dgamma, dbeta
    m = dout.shape[-2]
    dx = dxhat - dxhat.mean(axis=-2, keepdims=True)
    dx -= xhat * (dgamma[..., None, :] * gamma[..., None, :] / m)
    dx *= inv_std
    return dx, dgamma, dbeta


# --- dropout ----------------------------------------------------------------------------------------------------


def dropout_forward(x: np.ndarray, p: float, train: bool, rngs: list[np.random.Generator] | None = None,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, tuple]:
    """Inverted dropout (Srivastava et al. 2014; CS231n; the course with keep_prob = 1 - p).

    `p` is the DROP probability (torch's convention). In train mode each unit is kept with probability 1 - p and
    the kept ones are divided by 1 - p, so the expected activation is unchanged and eval mode is the identity
    (no rescaling at test time). The keep mask is drawn per replica from ``rngs[r]`` (replicas stay independent
    and replica r's masks do not depend on R); a given `mask` (boolean or 0/1, shape of x) is used instead, which
    makes the layer deterministic for gradient checking.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be a drop probability in [0, 1), got {p!r}")
    if not train or (p == 0.0 and mask is None):
        return x, (None, 1.0)
    keep = 1.0 - p
    if mask is None:
        if rngs is None:
            raise ValueError("dropout_forward in train mode needs rngs (one Generator per replica) or a mask")
        if x.ndim >= 3:
            if len(rngs) != x.shape[0]:
                raise ValueError(f"dropout: {len(rngs)} rngs for {x.shape[0]} replicas")
            mask = np.empty(x.shape, dtype=bool)
            for r, rng in enumerate(rngs):
                mask[r] = rng.random(x.shape[1:]) < keep
        else:
            mask = rngs[0].random(x.shape) < keep
    else:
        mask = np.asarray(mask)
        if mask.shape != x.shape:
            raise ValueError(f"dropout mask shape {mask.shape} != input shape {x.shape}")
    out = x * mask
    out /= keep  # as the course: A * D / keep_prob
    return out, (mask, keep)


def dropout_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """The same mask and scale applied to the incoming gradient (dropped units get no gradient)."""
    mask, keep = cache
    if mask is None:
        return dout
    dx = dout * mask
    dx /= keep
    return dx
