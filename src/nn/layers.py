"""Layers as forward/backward pairs (CS231n style): ``forward(...) -> (out, cache)``, ``backward(dout, cache)``.

Why pairs with an explicit cache: backpropagation is the chain rule applied layer by layer, and each layer's local
derivative needs values from its own forward pass. Keeping the two halves side by side makes every derivative
checkable in isolation (see `gradcheck.check_layer`) before it is trusted inside a network.

Shapes. Samples are rows. Every parameter has a leading replica axis R (independent networks trained at once):
x is ``(R, m, d)`` or ``(m, d)`` (one input shared by all replicas, broadcast by ``np.matmul``), W ``(R, din, dout)``,
b / gamma / beta ``(R, d)``. Replicas never mix: every reduction is over the sample axis (-2) only.

Memory. Every function takes ``ws=``, a :class:`~src.nn.workspace.Workspace` that keeps the arrays its results are
written into (``out=``), so that a training loop reuses the same memory at every step instead of allocating (and,
with glibc, mmap-ing and page-faulting) ~1 MB temporaries: ``ws.keep(name, f(..., out=ws.get(name)))``. The default
``FRESH`` keeps nothing: called without a workspace, a layer is plain NumPy. With a workspace, what a function
returns (its output, its cache, its gradients) is overwritten by the next call that uses the same workspace.
"""

from __future__ import annotations

import functools

import numpy as np

from .workspace import FRESH, Workspace

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")


# --- dense ------------------------------------------------------------------------------------------------------


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, *, ws: Workspace = FRESH
                  ) -> tuple[np.ndarray, tuple]:
    """Affine map ``out = x @ W + b`` per replica: (R, m, din) or (m, din) with (R, din, dout) -> (R, m, dout)."""
    out = ws.keep("z", np.matmul(x, W, out=ws.get("z")))
    return add_bias(out, b), (x, W)


def add_bias(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``z += b`` on every row, in place: z (..., m, d), b (..., d); returns z.

    Why not just ``z += b[..., None, :]``: NumPy's innermost loop then runs along one row of d values, i.e.
    R·m loops of 10 for the course's width 10. Viewing k consecutive rows as one row of k·d values and adding b
    tiled k times is the same sums (each element gets its own bias once) with loops k times longer: 2-4x faster
    on (32, 300, 10) (benchmarks/bench.py "public_api"). Small arrays keep the plain add (the tiling costs more
    than it saves there)."""
    if z.size >= _GROUPED_BIAS_MIN and z.flags.c_contiguous:  # the size first: a one-replica step calls this 3x
        m, d = z.shape[-2:]
        k = _rows_per_group(m, d)
        if k > 1:
            lead = z.shape[:-2]
            grouped = z.reshape(*lead, m // k, k * d)  # a view: z is C-contiguous
            grouped += np.broadcast_to(b[..., None, :], (*lead, k, d)).reshape(*lead, 1, k * d)  # b, k times a row
            return z
    z += b[..., None, :]
    return z


_GROUPED_BIAS_MIN = 4096  # elements; below it the plain broadcast add is cheaper


@functools.lru_cache(maxsize=256)
def _rows_per_group(m: int, d: int) -> int:
    """The largest k that divides m with k·d ≤ 128 (1 if none): rows added as one in :func:`add_bias`."""
    return max(k for k in range(1, max(1, 128 // d) + 1) if m % k == 0)


@functools.lru_cache(maxsize=32)
def _ones(m: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of m ones, made once per (m, dtype) instead of on every backward pass."""
    out = np.ones(m, dtype=dtype)
    out.flags.writeable = False
    return out


def dense_backward(dout: np.ndarray, cache: tuple, *, need_dx: bool = True, ws: Workspace = FRESH
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the affine map: ``dx = dout W^T``, ``dW = x^T dout``, ``db = sum_m dout``.

    dW is always (R, din, dout), also when x was shared (m, din): then the same x multiplies each replica's
    dout. dx has x's shape: for a shared x it is summed over replicas (x feeds every replica). ``need_dx=False``
    skips the product for the first layer, whose input gradient nobody needs (dx is then None).
    """
    x, W = cache
    xT = x.swapaxes(-1, -2)  # a shared (din, m) broadcasts against (R, m, dout)
    dW = ws.keep("dW", np.matmul(xT, dout, out=ws.get("dW")))
    # db = Σ_m dout, written as 1ᵀ·dout: NumPy's sum over the strided sample axis is 4-7x slower than the
    # same sum done by BLAS as a product with a vector of ones (measured in benchmarks/bench.py).
    db = ws.keep("db", np.matmul(_ones(dout.shape[-2], dout.dtype), dout, out=ws.get("db")))
    dx = None
    if need_dx:
        dx = ws.keep("dx", np.matmul(dout, _transposed(W, dout.shape[-1], ws), out=ws.get("dx")))
        if x.ndim < dx.ndim:
            dx = dx.sum(axis=tuple(range(dx.ndim - x.ndim)))
    return dx, dW, db


_WT_COPY_BELOW = 16  # dout widths below which dx goes through a contiguous copy of Wᵀ (see _transposed)


def _transposed(W: np.ndarray, k: int, ws: Workspace) -> np.ndarray:
    """Wᵀ for dx = dout·Wᵀ, whose sums run over k = dout's width: a kept contiguous copy when k < 16, else a view.

    Why: for narrow layers OpenBLAS's kernel for a contiguous operand is 1.2-1.5x faster than its kernel for a
    transposed one (R=32 course net, dout (32, 300, 5): 78 vs 55 µs; benchmarks/bench.py "inplace"), and the copy
    costs little (W is din·dout per replica). Below 16 terms the two kernels gave the same floats bit for bit on
    every shape tried here (OpenBLAS's SkylakeX kernels, float64 and float32), so results did not move; wider sums
    come out in another order (in float32 a fragile run, s6_bn's smallest init scales, then ends elsewhere) and
    gained 0.9-1.2x: there the view is kept (NumPy hands BLAS the transpose flag).
    """
    WT = W.swapaxes(-1, -2)
    if k >= _WT_COPY_BELOW:
        return WT
    kept = ws.get("WT")
    if kept is None:
        return ws.keep("WT", WT.copy())  # .copy(): always a new C-ordered array, never W itself
    np.copyto(kept, WT)
    return kept


# --- activations ------------------------------------------------------------------------------------------------


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def exp_neg_abs(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``exp(−|z|)`` (into `out` if given): in (0, 1], never overflows. Shared by the sigmoid and the cross-entropy's
    ``log(1 + exp(−|z|))``, so a loss on logits pays for one exponential."""
    out = np.abs(z, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def sigmoid_from_exp(z: np.ndarray, e: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) (into `out` if given) from ``e = exp(−|z|)``, overwriting e with 1 + e.

    ``σ(z) = 1/(1 + e)`` for z ≥ 0 and ``e/(1 + e)`` for z < 0: both forms only ever exponentiate a non-positive
    number, so σ never overflows (|z| = 1e3 is fine) and keeps full relative precision in both tails. The
    numerator is 1 where z ≥ 0 and e where z < 0, i.e. ``max(e, [z ≥ 0])`` since 0 ≤ e ≤ 1: a select without
    a branch per element.
    """
    num = np.maximum(np.greater_equal(z, 0, out=out), e, out=out)
    e += 1.0
    return np.divide(num, e, out=num)


def sigmoid(z: np.ndarray, *, ws: Workspace = FRESH, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable logistic function (see :func:`sigmoid_from_exp`), into `out` if given (z itself is
    fine: z is read before out is written, element by element)."""
    e = ws.keep("sigmoid.e", exp_neg_abs(z, ws.get("sigmoid.e")))
    if out is not None:
        return sigmoid_from_exp(z, e, out)
    return ws.keep("sigmoid", sigmoid_from_exp(z, e, ws.get("sigmoid")))


def zeros_like_kept(z: np.ndarray, ws: Workspace = FRESH) -> np.ndarray:
    """An array of zeros shaped like z, kept in `ws` (and never written): the other operand of ReLU's max.

    Why an array and not the scalar 0: NumPy 2 runs ``maximum(z, 0.0)`` without SIMD, about 2x slower per
    element than ``maximum(z, zeros)`` (measured on NumPy 2.4: 43 vs 20 µs for (32, 300, 10)); the result is
    the same, element for element (NaN stays NaN)."""
    zeros = ws.get("zeros")
    return zeros if zeros is not None else ws.keep("zeros", np.zeros(z.shape, z.dtype))


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so that exp never overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def activation_forward(name: str, z: np.ndarray, slope: float = 0.01, *, ws: Workspace = FRESH,
                       inplace: bool = False) -> tuple[np.ndarray, tuple]:
    """Element-wise nonlinearity `name` (see ACTIVATIONS); `slope` is leaky_relu's negative-side slope.

    The cache keeps what the derivative needs: the output for sigmoid/tanh (σ' = σ(1-σ), tanh' = 1 - tanh²),
    the sign mask for the ReLU family.

    ``inplace=True`` writes the output into z itself (for a caller that no longer needs z, as the training step):
    the same floats, one array fewer streamed through the cache. Why it matters: with R replicas an activation is
    R·m·width values (R=32, m=300, width 10: 768 KB), and an element-wise pass over three such arrays (z, a
    second operand, a result) no longer fits a core's 2 MB L2 cache where a pass over two does: measured 70 µs
    against 27 µs for ReLU's max on this box (benchmarks/bench.py "inplace").
    """
    if name == "relu":
        pos = ws.keep("pos", np.greater(z, 0, out=ws.get("pos")))
        return _relu(z, ws, inplace), (pos,)
    if name == "sigmoid":
        a = sigmoid(z, ws=ws, out=z if inplace else None)
        return a, (a,)
    if name == "tanh":
        a = np.tanh(z, out=z) if inplace else ws.keep("a", np.tanh(z, out=ws.get("a")))
        return a, (a,)
    if name == "leaky_relu":
        pos = ws.keep("pos", np.greater(z, 0, out=ws.get("pos")))
        if inplace:  # scale the non-positive entries where they are; the others are already z
            return np.multiply(z, slope, out=z, where=~pos), (pos, slope)
        a = ws.keep("a", np.multiply(z, slope, out=ws.get("a")))
        np.copyto(a, z, where=pos)  # z where z > 0, slope·z elsewhere
        return a, (pos, slope)
    _check_activation(name)  # here rather than first: the training step calls this on every layer
    return z, ()


def _relu(z: np.ndarray, ws: Workspace, inplace: bool) -> np.ndarray:
    """max(z, 0): in place against the scalar 0 (two arrays streamed), else into a kept array against kept zeros
    (NumPy's SIMD loop; see :func:`zeros_like_kept`)."""
    if inplace:
        return np.maximum(z, 0.0, out=z)
    return ws.keep("a", np.maximum(z, zeros_like_kept(z, ws), out=ws.get("a")))


def activation(name: str, z: np.ndarray, slope: float = 0.01, *, ws: Workspace = FRESH,
               inplace: bool = False) -> np.ndarray:
    """The nonlinearity's output alone, for passes that keep no cache (evaluation): ReLU skips its sign mask."""
    if name == "relu":
        return _relu(z, ws, inplace)
    return activation_forward(name, z, slope, ws=ws, inplace=inplace)[0]


def activation_backward(name: str, da: np.ndarray, cache: tuple, *, ws: Workspace = FRESH,
                        inplace: bool = False) -> np.ndarray:
    """dL/dz from dL/da for activation `name` (the local derivative times the incoming gradient).

    ``inplace=True`` lets the ReLU family write dz into da (for a caller that no longer needs da; see
    :func:`activation_forward` for why). sigmoid and tanh need a temporary for their derivative either way."""
    if name == "relu":
        (pos,) = cache
        if inplace:
            return np.multiply(da, pos, out=da)
        return ws.keep("dz", np.multiply(da, pos, out=ws.get("dz")))
    if name == "sigmoid":
        (a,) = cache
        dz = ws.keep("dz", np.subtract(1.0, a, out=ws.get("dz")))
        dz *= a  # σ' = σ(1 − σ)
        return np.multiply(da, dz, out=dz)
    if name == "tanh":
        (a,) = cache
        dz = ws.keep("dz", np.multiply(a, a, out=ws.get("dz")))
        np.subtract(1.0, dz, out=dz)  # tanh' = 1 − tanh²
        return np.multiply(da, dz, out=dz)
    if name == "leaky_relu":
        pos, slope = cache
        if inplace:
            return np.multiply(da, slope, out=da, where=~pos)
        dz = ws.keep("dz", np.multiply(da, slope, out=ws.get("dz")))
        np.copyto(dz, da, where=pos)
        return dz
    _check_activation(name)
    return da


# --- batch norm -------------------------------------------------------------------------------------------------


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, state: dict[str, np.ndarray],
                      train: bool, momentum: float = 0.9, eps: float = 1e-5, *, ws: Workspace = FRESH
                      ) -> tuple[np.ndarray, tuple]:
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
        xhat = ws.keep("xhat", np.subtract(x, mu, out=ws.get("xhat")))  # centred x; scaled into x̂ below
        xc = xhat
        sq = ws.keep("bn.tmp", np.multiply(xc, xc, out=ws.get("bn.tmp")))
        var = np.mean(sq, axis=-2, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + eps)
        xc *= inv_std
        rm, rv = state["running_mean"], state["running_var"]
        rm *= momentum
        rm += (1.0 - momentum) * mu[..., 0, :]
        rv *= momentum
        rv += (1.0 - momentum) * var[..., 0, :]
    else:
        inv_std = 1.0 / np.sqrt(state["running_var"][..., None, :] + eps)
        xhat = ws.keep("xhat", np.subtract(x, state["running_mean"][..., None, :], out=ws.get("xhat")))
        xhat *= inv_std
    out = ws.keep("bn", np.multiply(xhat, g, out=ws.get("bn")))
    out += bt
    return out, (train, xhat, inv_std, gamma)


def batchnorm_backward(dout: np.ndarray, cache: tuple, *, ws: Workspace = FRESH
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of batch norm. Train mode uses the compact form of the chain rule through mean and variance:
    ``dx = inv_std/m · (m·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))`` with ``dxhat = dout·gamma``; eval mode is an
    affine map with fixed statistics."""
    train, xhat, inv_std, gamma = cache
    tmp = ws.keep("bn.tmp", np.multiply(dout, xhat, out=ws.get("bn.tmp")))
    dgamma = ws.keep("dgamma", np.sum(tmp, axis=-2, out=ws.get("dgamma")))
    dbeta = ws.keep("dbeta", np.sum(dout, axis=-2, out=ws.get("dbeta")))
    dx = ws.keep("dbn", np.multiply(dout, gamma[..., None, :], out=ws.get("dbn")))  # dxhat
    if not train:
        dx *= inv_std
        return dx, dgamma, dbeta
    m = dout.shape[-2]
    dx -= dx.mean(axis=-2, keepdims=True)
    dx -= np.multiply(xhat, dgamma[..., None, :] * gamma[..., None, :] / m, out=tmp)
    dx *= inv_std
    return dx, dgamma, dbeta


# --- dropout ----------------------------------------------------------------------------------------------------


def dropout_forward(x: np.ndarray, p: float, train: bool, rngs: list[np.random.Generator] | None = None,
                    mask: np.ndarray | None = None, *, ws: Workspace = FRESH) -> tuple[np.ndarray, tuple]:
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
        mask = ws.get("mask")
        if mask is None:
            mask = ws.keep("mask", np.empty(x.shape, np.bool_))
        if x.ndim >= 3:
            if len(rngs) != x.shape[0]:
                raise ValueError(f"dropout: {len(rngs)} rngs for {x.shape[0]} replicas")
            for r, rng in enumerate(rngs):
                np.less(rng.random(x.shape[1:]), keep, out=mask[r])
        else:
            np.less(rngs[0].random(x.shape), keep, out=mask)
    else:
        mask = np.asarray(mask)
        if mask.shape != x.shape:
            raise ValueError(f"dropout mask shape {mask.shape} != input shape {x.shape}")
    out = ws.keep("drop", np.multiply(x, mask, out=ws.get("drop")))
    out /= keep  # as the course: A * D / keep_prob
    return out, (mask, keep)


def dropout_backward(dout: np.ndarray, cache: tuple, *, ws: Workspace = FRESH) -> np.ndarray:
    """The same mask and scale applied to the incoming gradient (dropped units get no gradient)."""
    mask, keep = cache
    if mask is None:
        return dout
    dx = ws.keep("ddrop", np.multiply(dout, mask, out=ws.get("ddrop")))
    dx /= keep
    return dx
