"""A fully connected network that trains R independent replicas at once.

Why replicas: every claim of the lab is reported as mean ± CI over seeds, and NumPy pays its Python overhead per
call, not per number. Stacking R networks along a leading axis and using batched ``np.matmul`` trains R seeds for
roughly the price of one small-batch run. Replicas never mix: replica r of a net built with seeds [s0..s_{R-1}]
computes exactly what an R=1 net built with seed s_r computes (same initial weights, same dropout masks, its own
batch-norm statistics), so a replica is a seed, not an approximation of one.

Architecture: ``[dense -> (batch norm) -> activation -> (dropout)] * (L-1) -> dense -> logits``. One output unit
means a binary task (sigmoid + binary cross-entropy on the logit); C > 1 outputs mean softmax + cross-entropy.
Parameter names are 1-based like the course: W1, b1, ..., WL, bL (+ gamma_l, beta_l for batch norm).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _flat, initializers
from .layers import (
    ACTIVATIONS,
    activation,
    activation_backward,
    activation_forward,
    batchnorm_backward,
    batchnorm_forward,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    sigmoid,
    softmax,
)
from .losses import bce_per_sample, bce_with_logits, softmax_ce_per_sample, softmax_cross_entropy
from .workspace import FRESH, Workspace


def _per_replica(value: Any, R: int, what: str, is_single: Any) -> list[Any]:
    """`value` as a list of length R: a single value is repeated, a sequence must have length R."""
    if is_single(value):
        return [value] * R
    seq = list(value)
    if len(seq) != R:
        raise ValueError(f"{what}: got {len(seq)} per-replica values for {R} replicas")
    return seq


class MLP:
    """Multi-layer perceptron with a leading replica axis on every parameter (see the module docstring).

    Parameters mirror the config: `sizes` [n_in, hidden..., n_out]; `activation` for hidden layers; `init` a
    `src.nn.initializers` name (or one per replica) with `init_kwargs` (a dict, or one per replica); `replicas`
    and `seed` (replica r uses ``seed + r``) or explicit `seeds`; `batchnorm`, `dropout` (drop probability),
    `l2` (λ, scalar or per replica); `params` overrides the initializer with explicit arrays (with or without the
    replica axis), e.g. from `initializers.course_params`.
    """

    EVAL_CHUNK_BYTES: int = 16 * 1024 * 1024  # eval-mode forward passes slice their input to stay under this

    def __init__(
        self,
        sizes: list[int],
        activation: str = "relu",
        init: str | Sequence[str] = "he_normal",
        init_kwargs: dict | Sequence[dict] | None = None,
        replicas: int = 1,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        batchnorm: bool = False,
        dropout: float = 0.0,
        l2: float | np.ndarray = 0.0,
        bn_momentum: float = 0.9,
        bn_eps: float = 1e-5,
        leaky_slope: float = 0.01,
        dtype: Any = np.float64,
        params: dict[str, np.ndarray] | None = None,
    ) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be [n_in, ..., n_out] with every width >= 1, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a drop probability in [0, 1), got {dropout!r}")
        if not 0.0 <= float(bn_momentum) < 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
        if seeds is not None:
            seeds = [int(s) for s in seeds]
            if replicas not in (1, len(seeds)):
                raise ValueError(f"replicas={replicas} but {len(seeds)} seeds given")
        else:
            if int(replicas) < 1:
                raise ValueError(f"replicas must be >= 1, got {replicas}")
            seeds = [int(seed) + r for r in range(int(replicas))]
        if not seeds or min(seeds) < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seeds}")
        self.sizes: list[int] = sizes
        self.n_layers: int = len(sizes) - 1
        self.seeds: list[int] = seeds
        self.replicas: int = len(seeds)
        self.activation: str = activation
        self.binary: bool = sizes[-1] == 1
        self.batchnorm: bool = bool(batchnorm)
        self.dropout: float = float(dropout)
        self.bn_momentum: float = float(bn_momentum)
        self.bn_eps: float = float(bn_eps)
        self.leaky_slope: float = float(leaky_slope)
        self.dtype: np.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a float type, got {self.dtype}")
        R = self.replicas
        self.init: list[str] = _per_replica(init, R, "init", lambda v: isinstance(v, str))
        self.init_kwargs: list[dict] = [dict(kw) for kw in _per_replica(
            init_kwargs if init_kwargs is not None else {}, R, "init_kwargs", lambda v: isinstance(v, Mapping))]
        inits = [initializers.get(n, **kw) for n, kw in zip(self.init, self.init_kwargs, strict=True)]
        self._l2: float | np.ndarray = 0.0
        self.l2 = l2

        shapes = self._shapes()
        # The parameters are views into one (R, P) array (W1, b1, ... of replica r in row r), so that an
        # optimizer steps all of them with one NumPy call per formula instead of one per array (see _flat.py).
        param_shapes = {k: s[1:] for k, s in shapes.items() if not k.startswith("running_")}
        flat = np.zeros((R, sum(int(np.prod(s)) for s in param_shapes.values())), dtype=self.dtype)
        self.params: dict[str, np.ndarray] = _flat.views(flat, param_shapes)
        self.state: dict[str, np.ndarray] = {}
        for l in range(1, self.n_layers + 1):
            if self._has_bn(l):
                self.params[f"gamma{l}"][...] = 1.0
                self.state[f"running_mean{l}"] = np.zeros(shapes[f"gamma{l}"], dtype=self.dtype)
                self.state[f"running_var{l}"] = np.ones(shapes[f"gamma{l}"], dtype=self.dtype)
        if params is None:
            # Replica r draws from its own Generator, layer by layer: the draws do not depend on R.
            for r, s in enumerate(seeds):
                rng = np.random.default_rng(s)
                for l in range(1, self.n_layers + 1):
                    self.params[f"W{l}"][r] = inits[r]((sizes[l - 1], sizes[l]), rng)
        else:
            self._set_explicit(params)
        # Dropout masks come from a separate stream per replica, so changing dropout never changes the weights.
        # Public so that a caller can snapshot/restore `rng.bit_generator.state` around an extra train-mode pass
        # (e.g. diagnostics) and keep the training masks independent of how often it looks.
        self.dropout_rngs: list[np.random.Generator] = [np.random.default_rng([s, 1]) for s in seeds]
        self._Wb = [(f"W{l}", f"b{l}") for l in range(1, self.n_layers + 1)]  # names per layer, made once
        self._reset_buffers()

    # --- reusable buffers ---------------------------------------------------------------------------------------

    MAX_WORKSPACES: int = 6  # input shapes whose buffers are kept (batches, the last partial one, eval splits)

    def _reset_buffers(self) -> None:
        """Forget the training step's buffers (they are rebuilt on the next step, for the current params)."""
        self._workspaces: dict[tuple[int, ...], list[Workspace]] = {}
        self._grads: dict[str, np.ndarray] | None = None

    def _workspaces_for(self, shape: tuple[int, ...]) -> list[Workspace]:
        """One workspace per layer plus one for the loss, for inputs of `shape` (see workspace.py for why): the
        training step's, which `evaluate` reuses (nothing it returns aliases them).

        The gradient arrays are bound into them as views of one flat buffer shared by every input shape, so
        that the optimizer recognises them as one array (see _flat.py) and a step allocates nothing large.
        """
        wss = self._workspaces.get(shape)
        if wss is None:
            if self._grads is None:
                _, self._grads = _flat.flat_like(self.params, self.dtype)
            if len(self._workspaces) >= self.MAX_WORKSPACES:
                del self._workspaces[next(iter(self._workspaces))]
            wss = [Workspace() for _ in range(self.n_layers + 1)]
            for l in range(1, self.n_layers + 1):
                for name, key in (("dW", "W"), ("db", "b"), ("dgamma", "gamma"), ("dbeta", "beta")):
                    if f"{key}{l}" in self._grads:
                        wss[l - 1].bind(name, self._grads[f"{key}{l}"])
            self._workspaces[shape] = wss
        return wss

    def __copy__(self) -> MLP:
        """A shallow copy (arrays shared, as `copy.copy` does) with its own training buffers: two nets never
        write their gradients into the same arrays."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._reset_buffers()
        return new

    def __deepcopy__(self, memo: dict) -> MLP:
        new = object.__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k not in ("_workspaces", "_grads"):
                new.__dict__[k] = copy.deepcopy(v, memo)
        new._reset_buffers()
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_workspaces"], state["_grads"] = {}, None
        return state

    # --- construction helpers -----------------------------------------------------------------------------------

    def _has_bn(self, l: int) -> bool:
        return self.batchnorm and l < self.n_layers

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        R, out = self.replicas, {}
        for l in range(1, self.n_layers + 1):
            out[f"W{l}"] = (R, self.sizes[l - 1], self.sizes[l])
            out[f"b{l}"] = (R, self.sizes[l])
            if self._has_bn(l):
                for k in ("gamma", "beta", "running_mean", "running_var"):
                    out[f"{k}{l}"] = (R, self.sizes[l])
        return out

    def _set_explicit(self, params: dict[str, np.ndarray]) -> None:
        shapes = self._shapes()
        unknown = sorted(set(params) - set(shapes))
        if unknown:
            raise ValueError(f"params has unknown key(s) {', '.join(unknown)}; expected {', '.join(shapes)}")
        missing = [f"W{l}" for l in range(1, self.n_layers + 1) if f"W{l}" not in params]
        if missing:
            raise ValueError(f"params is missing weight(s) {', '.join(missing)}")
        for k, v in params.items():
            arr = np.asarray(v)
            shape = shapes[k]
            if arr.shape not in (shape, shape[1:]):
                raise ValueError(f"params[{k!r}] has shape {arr.shape}; expected {shape} or {shape[1:]}")
            target = self.params[k] if k in self.params else self.state[k]
            target[...] = arr  # broadcasts a replica-less array to every replica (a copy, never a view)

    # --- L2 -----------------------------------------------------------------------------------------------------

    @property
    def l2(self) -> float | np.ndarray:
        """The L2 strength λ: a float, or an (R,) array (one λ per replica)."""
        return self._l2

    @l2.setter
    def l2(self, value: float | np.ndarray) -> None:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            lam: float | np.ndarray = float(arr)
        elif arr.shape == (self.replicas,):
            lam = arr.copy()
        else:
            raise ValueError(f"l2 must be a scalar or shape ({self.replicas},), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"l2 must be finite and >= 0, got {value!r}")
        self._l2 = lam
        self._l2_on = bool(np.any(arr != 0))  # cached: checked on every training step

    def _l2_active(self) -> bool:
        return self._l2_on

    def _l2_loss(self, m: int) -> np.ndarray:
        """λ/(2m)·Σ‖W‖² per replica (weights only; biases and BN parameters are not penalised)."""
        sq = np.zeros(self.replicas)
        for l in range(1, self.n_layers + 1):
            W = self.params[f"W{l}"]
            sq += np.einsum("rij,rij->r", W, W)
        return np.asarray(self._l2) / (2.0 * m) * sq

    # --- forward / backward -------------------------------------------------------------------------------------

    def _input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype != self.dtype:
            X = X.astype(self.dtype)
        if X.ndim not in (2, 3) or X.shape[-1] != self.sizes[0]:
            raise ValueError(f"X must be (m, {self.sizes[0]}) or ({self.replicas}, m, {self.sizes[0]}), "
                             f"got {X.shape}")
        if X.ndim == 3 and X.shape[0] != self.replicas:
            raise ValueError(f"X has {X.shape[0]} replicas, the net has {self.replicas}")
        return X

    def _forward(self, X: np.ndarray, train: bool, masks: Sequence[np.ndarray] | None = None,
                 update_state: bool = True, rngs: list[np.random.Generator] | None = None,
                 keep: bool = False, ws: Sequence[Workspace] | None = None, taps: bool | None = None
                 ) -> tuple[np.ndarray, list[tuple], list[dict[str, np.ndarray]]]:
        """Logits, per-layer caches (if `keep`) and per-layer {"z", "a"} taps (if `taps`, default: `keep`).

        "z" is the dense output (before batch norm), "a" the activation output (before dropout). `ws` is one
        workspace per layer to write into (None: new arrays).
        """
        if taps is None:
            taps = keep
        L, P = self.n_layers, self.params
        if masks is not None:
            if self.dropout == 0.0:
                raise ValueError("dropout_mask given but the net has dropout=0")
            if len(masks) != L - 1:
                raise ValueError(f"dropout_mask needs one mask per hidden layer ({L - 1}), got {len(masks)}")
        use_dropout = train and self.dropout > 0.0
        caches: list[tuple] = []
        tap_list: list[dict[str, np.ndarray]] = []
        a = X
        for l, (Wk, bk) in enumerate(self._Wb, start=1):
            w = FRESH if ws is None else ws[l - 1]
            z, dc = dense_forward(a, P[Wk], P[bk], ws=w)
            if l == L:
                if keep:
                    caches.append((dc, None, None, None))
                if taps:
                    tap_list.append({"z": z})
                return z, caches, tap_list
            h, bc = z, None
            if self.batchnorm:  # (every hidden layer; l < L here)
                st = {"running_mean": self.state[f"running_mean{l}"], "running_var": self.state[f"running_var{l}"]}
                if train and not update_state:
                    st = {k: v.copy() for k, v in st.items()}
                h, bc = batchnorm_forward(z, P[f"gamma{l}"], P[f"beta{l}"], st, train,
                                          momentum=self.bn_momentum, eps=self.bn_eps, ws=w)
            # h (this layer's dense or batch-norm output) is needed by nothing but the activation, so unless a
            # caller taps it the activation overwrites it (see layers.activation_forward for why)
            if keep:
                a, ac = activation_forward(self.activation, h, self.leaky_slope, ws=w, inplace=not taps)
            else:
                a, ac = activation(self.activation, h, self.leaky_slope, ws=w, inplace=not taps), None
            if taps:
                tap_list.append({"z": z, "a": a})
            dr = None
            if use_dropout:
                a, dr = dropout_forward(a, self.dropout, True, rngs if rngs is not None else self.dropout_rngs,
                                        mask=None if masks is None else masks[l - 1], ws=w)
            if keep:
                caches.append((dc, bc, ac, dr))
        raise AssertionError("unreachable")  # pragma: no cover

    def _data_loss(self, logits: np.ndarray, y: np.ndarray, ws: Workspace = FRESH, grad: bool = True
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        loss = bce_with_logits if self.binary else softmax_cross_entropy
        return loss(logits, y, ws=ws, grad=grad)

    def _output(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities: (R, m) for a binary net, (R, m, C) otherwise."""
        return sigmoid(logits[..., 0]) if self.binary else softmax(logits)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, *, taps: bool = False,
                       dropout_mask: Sequence[np.ndarray] | None = None) -> Any:
        """Training-mode loss per replica and the gradient of every parameter.

        Train mode: dropout on (masks from each replica's own stream, or the fixed `dropout_mask`, one per hidden
        layer, shape (R, m, width)), batch norm with batch statistics, running statistics updated. The loss is the
        mean data loss plus λ/(2m)·Σ‖W‖² (m = rows of this batch). Returns ``(loss (R,), grads)`` with grads keyed
        and shaped like `params`; with ``taps=True`` also a list of per-layer dicts {"z", "a", "dz", "dW"} (for
        the output layer "a" is the sigmoid/softmax output and "dz" the gradient of the logits).

        The gradient arrays are this net's reusable buffers: they are VALID UNTIL THE NEXT CALL, which overwrites
        them (that is what makes a step allocate nothing large; see workspace.py). Copy them to keep them, e.g.
        ``{k: g.copy() for k, g in grads.items()}``. They may be modified in place until then (clipping does).
        With ``taps=True`` everything returned, grads included, is freshly allocated and never overwritten.
        """
        X = self._input(X)
        m = X.shape[-2]
        L = self.n_layers
        wss = None if taps else self._workspaces_for(X.shape)
        logits, caches, tap_list = self._forward(X, True, masks=dropout_mask, keep=True, ws=wss, taps=taps)
        loss, dz = self._data_loss(logits, y, FRESH if wss is None else wss[L])
        l2_on = self._l2_on
        if l2_on:
            lam = np.asarray(self._l2)
            loss = loss + self._l2_loss(m)
            lam_w = (lam.reshape(-1, 1, 1) if lam.ndim else lam) / m
        P = self.params
        grads: dict[str, np.ndarray] = {}
        da: Any = None  # dL/d(output of layer l), set by layer l+1's backward
        if taps:
            tap_list[-1]["a"] = self._output(logits).reshape(logits.shape)
        for l in range(L, 0, -1):
            w = FRESH if wss is None else wss[l - 1]
            Wk, bk = self._Wb[l - 1]
            dc, bc, ac, dr = caches[l - 1]
            if l < L:
                if dr is not None:
                    da = dropout_backward(da, dr, ws=w)
                dz = activation_backward(self.activation, da, ac, ws=w, inplace=True)  # da: nobody else's
                if bc is not None:
                    dz, grads[f"gamma{l}"], grads[f"beta{l}"] = batchnorm_backward(dz, bc, ws=w)
            dx, dW, db = dense_backward(dz, dc, need_dx=l > 1, ws=w)
            if l2_on:
                dW += lam_w * P[Wk]
            grads[Wk], grads[bk] = dW, db
            if taps:
                tap_list[l - 1]["dz"] = dz
                tap_list[l - 1]["dW"] = dW
            da = dx
        grads = {k: grads[k] for k in P}  # same key order as params
        if taps:
            return loss, grads, tap_list
        return loss, grads

    def train_loss(self, X: np.ndarray, y: np.ndarray, *,
                   dropout_mask: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """The training-mode loss per replica that :meth:`loss_and_grads` returns, from the same forward pass, without
        the backward pass and leaving the running statistics alone.

        Why: a finite-difference check (``gradcheck.check_mlp``) evaluates the loss twice per parameter entry and
        never uses the gradients those evaluations would compute: the backward pass was most of each evaluation.
        Dropout masks come from the replicas' streams unless `dropout_mask` is given, as in ``loss_and_grads``.
        """
        X = self._input(X)
        logits, _, _ = self._forward(X, True, masks=dropout_mask, update_state=False, keep=True, taps=False)
        loss, _ = self._data_loss(logits, y, grad=False)
        if self._l2_on:
            loss = loss + self._l2_loss(X.shape[-2])
        return loss

    def forward(self, X: np.ndarray, *, train: bool = False) -> np.ndarray:
        """Logits (R, m, n_out). ``train=True`` behaves exactly as in training (batch statistics, running statistics
        updated, dropout masks drawn from the replicas' streams); the default eval mode has no side effects.

        Eval mode treats every sample on its own, so a large input (a decision-boundary grid of 90,000 points
        times R=128 replicas would need ~1 GB per activation array) goes through in slices of rows of at most
        ``EVAL_CHUNK_BYTES`` per array: the same logits, bounded memory."""
        X = self._input(X)
        m = X.shape[-2]
        rows = self._eval_rows()
        if train or m <= rows:
            logits, _, _ = self._forward(X, train)
            return logits
        return np.concatenate([self._forward(X[..., s:s + rows, :], False)[0] for s in range(0, m, rows)], axis=-2)

    def _eval_rows(self) -> int:
        """Rows per slice of an eval-mode pass (arrays of at most EVAL_CHUNK_BYTES)."""
        return max(256, self.EVAL_CHUNK_BYTES // (self.replicas * max(self.sizes) * self.dtype.itemsize))

    def loss(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Eval-mode loss per replica, INCLUDING the L2 penalty (the objective being minimised)."""
        X = self._input(X)
        loss, _ = self._data_loss(self.forward(X), y, grad=False)
        if self._l2_active():
            loss = loss + self._l2_loss(X.shape[-2])
        return loss

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Eval-mode probabilities: P(y=1) as (R, m) for a binary net, (R, m, C) otherwise."""
        return self._output(self.forward(X))

    def _predict_from_logits(self, logits: np.ndarray, ws: Workspace = FRESH) -> np.ndarray:
        """Predicted classes: a bool array (P(y=1) > 0.5, the course's `a3 > 0.5`) for a binary net, else indices."""
        if self.binary:
            return sigmoid(logits[..., 0], ws=ws) > 0.5
        return logits.argmax(axis=-1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Eval-mode class predictions (R, m) as integers."""
        return self._predict_from_logits(self.forward(X)).astype(np.int64, copy=False)

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fraction of correct predictions per replica, (R,)."""
        return (self.predict(X) == np.asarray(y)).mean(axis=-1)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode (loss (R,), accuracy (R,)) from one forward pass.

        The loss here is the DATA loss only (no L2 term), so that train/val/test losses are comparable across λ
        and with unregularised runs; use `loss` for the regularised objective.

        The pass writes into the net's reused buffers (the training loop evaluates every few epochs, and at R=128
        an activation array is megabytes, see workspace.py) unless the input is large enough to go in slices;
        the returned arrays are new.
        """
        X = self._input(X)
        return self.evaluate_parts(X, y, (X.shape[-2],))[0]

    def evaluate_parts(self, X: np.ndarray, y: np.ndarray, sizes: Sequence[int]
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`evaluate` of consecutive row blocks of `X` (``sizes`` rows each, e.g. the train then the val
        split stacked once), from ONE forward pass: one (loss (R,), accuracy (R,)) per block.

        Why: for a small net the cost of an evaluation is the number of NumPy calls, not the rows, and the
        training loop scores train and val at every log point; one pass over both halves the calls. Each block's
        numbers are those of `evaluate` on that block alone (rows are independent in eval mode).
        """
        X = self._input(X)
        m = X.shape[-2]
        if sum(sizes) != m or any(s < 0 for s in sizes):  # an empty block scores NaN, as `evaluate` of no rows
            raise ValueError(f"sizes must be row counts >= 0 summing to the {m} rows of X, got {list(sizes)}")
        if m > self._eval_rows():
            logits, ws = self.forward(X), FRESH
        else:
            wss = self._workspaces_for(X.shape)
            logits, _, _ = self._forward(X, False, ws=wss)
            ws = wss[-1]
        y = np.asarray(y)
        per = (bce_per_sample if self.binary else softmax_ce_per_sample)(logits, y, ws=ws)
        correct = self._predict_from_logits(logits, ws) == y
        out, start = [], 0
        for size in sizes:  # sums over a slice of the sample axis: what the block's own mean would compute
            rows = slice(start, start + size)
            out.append((np.add.reduce(per[:, rows], axis=1) / size, np.add.reduce(correct[:, rows], axis=1) / size))
            start += size
        return out

    def probe(self, X: np.ndarray, *, train: bool = False) -> list[dict[str, np.ndarray]]:
        """Forward-only taps, one {"z", "a"} dict per layer (the output layer's "a" is its sigmoid/softmax output).

        For the no-training activation studies (SPEC S2). Never changes the net: with ``train=True`` batch norm
        uses batch statistics without updating the running ones, and dropout masks come from a throw-away stream
        (``default_rng([seed, 3])`` per replica) so the training stream is not consumed.
        """
        rngs = [np.random.default_rng([s, 3]) for s in self.seeds] if train else None
        logits, _, taps = self._forward(self._input(X), train, update_state=False, rngs=rngs, keep=True)
        taps[-1]["a"] = self._output(logits).reshape(logits.shape)
        return taps

    # --- snapshots ----------------------------------------------------------------------------------------------

    def copy_params(self) -> dict[str, np.ndarray]:
        """A deep copy of every parameter and batch-norm running statistic (e.g. the best weights so far)."""
        out = {k: v.copy() for k, v in self.params.items()}
        out.update({k: v.copy() for k, v in self.state.items()})
        return out

    def load_params(self, d: dict[str, np.ndarray], mask: np.ndarray | None = None) -> None:
        """Write arrays from `d` (as returned by `copy_params`) back into the net, in place.

        With a boolean `mask` of shape (R,), only replicas where it is True are overwritten (early stopping
        restores each replica's own best weights; the others keep theirs). Arrays are copied, never aliased.
        """
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.replicas,):
                raise ValueError(f"mask must have shape ({self.replicas},), got {mask.shape}")
        for k, v in d.items():
            if k in self.params:
                target = self.params[k]
            elif k in self.state:
                target = self.state[k]
            else:
                raise KeyError(f"load_params: unknown key {k!r}")
            v = np.asarray(v)
            if v.shape != target.shape:
                raise ValueError(f"load_params: {k!r} has shape {v.shape}, expected {target.shape}")
            if mask is None:
                target[...] = v
            else:
                target[mask] = v[mask]

    def __repr__(self) -> str:
        extra = []
        if self.batchnorm:
            extra.append("batchnorm")
        if self.dropout:
            extra.append(f"dropout={self.dropout}")
        if self._l2_active():
            extra.append(f"l2={self._l2}")
        inits = self.init[0] if len(set(self.init)) == 1 else self.init
        tail = ", " + ", ".join(extra) if extra else ""
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, init={inits!r}, "
                f"replicas={self.replicas}{tail})")
