"""Losses on logits, per replica: each returns ``(loss (R,), dloss/dz)`` with the loss a mean over samples.

Why on logits: fusing the output nonlinearity with the cross-entropy gives both a simpler gradient
(``p - y``) and numerical stability. The course computes ``-y log(a) - (1-y) log(1-a)`` on a sigmoid output and gets
``inf`` (log 0) as the first cost with ``randn*10`` weights (SPEC S1); the log-sum-exp forms below stay finite
for logits of any size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .layers import exp_neg_abs, sigmoid_from_exp, zeros_like_kept
from .workspace import FRESH, Workspace


def _labels(y: np.ndarray, R: int, m: int) -> np.ndarray:
    """Labels as (m,) (shared by the replicas) or (R, m), checked against the logits' R and m."""
    y = np.asarray(y)
    if y.shape == (m,):
        return y  # broadcasts against (R, m) in the arithmetic below; no (R, m) copy, no broadcast_to call
    if y.shape == (R, m):
        return y
    raise ValueError(f"labels of shape {y.shape} do not match logits with R={R}, m={m}: expected ({m},) or ({R}, {m})")


def bce_with_logits(z: np.ndarray, y: np.ndarray, *, ws: Workspace = FRESH, grad: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Binary cross-entropy of sigmoid(z) against 0/1 labels, computed from the logits z.

    ``loss = max(z, 0) − z·y + log(1 + exp(−|z|))`` is the same as ``−y log σ(z) − (1−y) log(1−σ(z))`` but never
    evaluates log 0 or exp of a large number: finite and warning-free at |z| = 1e3. z is (R, m) or (R, m, 1);
    y is (m,) or (R, m). Returns loss (R,) (mean over samples) and dz = (σ(z) − y)/m with z's shape (written
    into `ws`, see `layers`; None with ``grad=False``, for evaluation). One ``exp(−|z|)`` serves both the loss and
    σ(z).
    """
    zz, yy, per, e = _bce(z, y, ws)
    m = zz.shape[1]
    loss = np.add.reduce(per, axis=1) / m  # what .mean(axis=1) computes, without its Python wrappers (per step)
    if not grad:
        return loss, None
    dz = ws.keep("dz", sigmoid_from_exp(zz, e, ws.get("dz")))
    dz -= yy
    dz /= m
    return loss, dz.reshape(z.shape)


def _bce(z: np.ndarray, y: np.ndarray, ws: Workspace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(logits (R, m), labels, per-sample loss (R, m), exp(−|z|)): the part shared by the mean and per-sample forms."""
    zz = z[..., 0] if (z.ndim == 3 and z.shape[-1] == 1) else z
    if zz.ndim != 2:
        raise ValueError(f"bce_with_logits expects logits (R, m) or (R, m, 1), got {z.shape}")
    R, m = zz.shape
    yy = _labels(y, R, m).astype(zz.dtype, copy=False)
    e = ws.keep("e", exp_neg_abs(zz, ws.get("e")))
    per = ws.keep("per", np.maximum(zz, zeros_like_kept(zz, ws), out=ws.get("per")))  # see zeros_like_kept
    tmp = ws.keep("tmp", np.multiply(zz, yy, out=ws.get("tmp")))
    per -= tmp
    per += np.log1p(e, out=tmp)
    return zz, yy, per, e


def bce_per_sample(z: np.ndarray, y: np.ndarray, *, ws: Workspace = FRESH) -> np.ndarray:
    """The per-sample terms (R, m) whose mean over samples is :func:`bce_with_logits`' loss (for scoring several
    row blocks of one forward pass; the mean of a block is bit-for-bit that of the block scored alone)."""
    return _bce(z, y, ws)[2]


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray, *, ws: Workspace = FRESH, grad: bool = True
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """Cross-entropy of softmax(z) against integer class labels, via the shifted log-sum-exp.

    z (R, m, C), y (m,) or (R, m) ints in [0, C). Returns loss (R,) (mean over samples) and
    dz = (softmax(z) − onehot(y))/m (written into `ws`, see `layers`; None with ``grad=False``).
    """
    yy, per, e, s = _softmax_ce(z, y, ws)
    m = z.shape[1]
    loss = per.mean(axis=1)
    if not grad:
        return loss, None
    dz = e
    dz /= s
    np.put_along_axis(dz, yy[..., None], np.take_along_axis(dz, yy[..., None], axis=-1) - 1.0, axis=-1)
    dz /= m
    return loss, dz


def _softmax_ce(z: np.ndarray, y: np.ndarray, ws: Workspace
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels (R, m), per-sample loss (R, m), exp of the shifted logits, their sum): what the mean and
    per-sample forms share."""
    if z.ndim != 3:
        raise ValueError(f"softmax_cross_entropy expects logits (R, m, C), got {z.shape}")
    R, m, C = z.shape
    yy = np.broadcast_to(_labels(y, R, m), (R, m)).astype(np.intp, copy=False)  # (R, m) for take_along_axis
    shifted = ws.keep("shifted", np.subtract(z, z.max(axis=-1, keepdims=True), out=ws.get("shifted")))
    e = ws.keep("dz", np.exp(shifted, out=ws.get("dz")))
    s = e.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, yy[..., None], axis=-1)[..., 0]
    return yy, np.log(s[..., 0]) - picked, e, s


def softmax_ce_per_sample(z: np.ndarray, y: np.ndarray, *, ws: Workspace = FRESH) -> np.ndarray:
    """The per-sample terms (R, m) whose mean over samples is :func:`softmax_cross_entropy`'s loss."""
    return _softmax_ce(z, y, ws)[1]


def l2_penalty(weights: Sequence[np.ndarray], lam: float | np.ndarray, m: int
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """L2 weight decay as the course writes it: ``λ/(2m)·Σ‖W‖²`` added to the loss, ``(λ/m)·W`` to each gradient.

    Why divide by m: the data loss is a mean over the m samples, so the penalty is scaled the same way and λ keeps
    its meaning whatever the batch size. `weights` are (R, din, dout) arrays (biases are not penalised);
    `lam` is a scalar or an (R,) array (one λ per replica, for a vectorised grid over λ). Returns loss (R,) and
    one gradient per weight.
    """
    if not weights:
        raise ValueError("l2_penalty needs at least one weight array")
    R = weights[0].shape[0]
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.ndim not in (0, 1) or (lam_arr.ndim == 1 and lam_arr.shape != (R,)):
        raise ValueError(f"l2 lambda must be a scalar or shape ({R},), got shape {lam_arr.shape}")
    lam_w = lam_arr.reshape((-1,) + (1,) * (weights[0].ndim - 1)) if lam_arr.ndim else lam_arr
    sq = np.zeros(R)
    grads = []
    for W in weights:
        sq = sq + np.einsum("rij,rij->r", W, W) if W.ndim == 3 else sq + (W * W).reshape(R, -1).sum(axis=1)
        grads.append((lam_w / m * W).astype(W.dtype, copy=False))
    return lam_arr / (2.0 * m) * sq, grads
