"""Per-layer diagnostics: the evidence for "vanishing", "exploding", "saturated" and "dead".

Why: a loss curve says THAT a net does not train; these numbers say WHY. Glorot & Bengio (2010) diagnosed deep
sigmoid nets by the saturation of their top hidden layer; He et al. (2015) by how activation variance grows or
shrinks with depth; the CS231n notes by activation histograms per layer. Each statistic is per replica, shape (R,).

Input: the taps of `MLP.loss_and_grads(..., taps=True)` or `MLP.probe(...)`: one dict per layer with "a"
(activation output, (R, m, d)) and optionally "z" and "dW".
"""

from __future__ import annotations

from typing import Any

import numpy as np

SATURATION = 0.01  # sigmoid: a < 0.01 or a > 0.99; tanh: |a| > 0.99


def _saturated(a: np.ndarray, activation: str) -> np.ndarray:
    """Fraction of (sample, unit) entries in the flat tails of the activation, per replica."""
    R = a.shape[0]
    if activation == "sigmoid":
        sat = (a < SATURATION) | (a > 1.0 - SATURATION)
    elif activation == "tanh":
        sat = np.abs(a) > 1.0 - SATURATION
    else:
        return np.zeros(R)
    return sat.reshape(R, -1).mean(axis=1)


def layer_stats(taps: list[dict[str, Any]], activation: str) -> dict[str, np.ndarray]:
    """Statistics per layer l = 1..L, keys ``f"layer{l}/{stat}"``, each of shape (R,):

    - ``act_mean``, ``act_std``: mean and std of the layer's output over all samples and units.
    - ``saturated``: fraction of entries in the flat part of the nonlinearity (sigmoid a < 0.01 or > 0.99, tanh
      |a| > 0.99); 0 for relu / leaky_relu / identity, which do not saturate. For the OUTPUT layer "a" is the
      sigmoid/softmax output, so a binary net's output saturation is measured like a sigmoid's (confident,
      possibly wrongly confident, outputs: the "first cost is inf" of SPEC S1); for softmax it is the fraction of
      samples whose largest probability exceeds 0.99.
    - ``dead``: fraction of units that output exactly 0 for every sample (dead ReLUs: they get no gradient and
      never recover). Counted for relu hidden layers only (0 otherwise).
    - ``grad_norm``: L2 norm of dLoss/dW (only when the taps carry "dW").
    """
    out: dict[str, np.ndarray] = {}
    L = len(taps)
    for l, tap in enumerate(taps, start=1):
        a = np.asarray(tap["a"])
        R = a.shape[0]
        flat = a.reshape(R, -1)
        key = f"layer{l}"
        out[f"{key}/act_mean"] = flat.mean(axis=1)
        out[f"{key}/act_std"] = flat.std(axis=1)
        if l < L:
            out[f"{key}/saturated"] = _saturated(a, activation)
            if activation == "relu":
                a3 = a.reshape(R, -1, a.shape[-1])
                out[f"{key}/dead"] = np.all(a3 == 0, axis=1).mean(axis=1)
            else:
                out[f"{key}/dead"] = np.zeros(R)
        else:
            if a.ndim == 2 or a.shape[-1] == 1:
                out[f"{key}/saturated"] = _saturated(a, "sigmoid")
            else:
                out[f"{key}/saturated"] = (a.max(axis=-1) > 1.0 - SATURATION).reshape(R, -1).mean(axis=1)
            out[f"{key}/dead"] = np.zeros(R)
        if tap.get("dW") is not None:
            dW = np.asarray(tap["dW"])
            out[f"{key}/grad_norm"] = np.sqrt(np.einsum("rij,rij->r", dW, dW))
    return out


def histograms(taps: list[dict[str, Any]], bins: int = 30, range: tuple[float, float] | None = None,
               key: str = "a") -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw histogram counts of each layer's `key` values ("a" activations by default; "z" or "dz" also work).

    Returns one ``(counts (R, bins) int64, edges (bins+1,))`` pair per layer. The edges are shared by the replicas
    of a layer (so counts can be averaged over seeds): `range` if given, else the finite min/max over all
    replicas. Non-finite values are not counted.
    """
    out = []
    for tap in taps:
        v = np.asarray(tap[key])
        R = v.shape[0]
        flat = v.reshape(R, -1)
        finite = np.isfinite(flat)
        if range is not None:
            lo, hi = float(range[0]), float(range[1])
        elif finite.any():
            lo, hi = float(flat[finite].min()), float(flat[finite].max())
        else:
            lo, hi = 0.0, 1.0
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        counts = np.zeros((R, bins), dtype=np.int64)
        for r in np.arange(R):  # one np.histogram per replica; R is small and this is off the hot path
            counts[r], _ = np.histogram(flat[r][finite[r]], bins=edges)
        out.append((counts, edges))
    return out
