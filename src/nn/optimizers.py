"""Update rules (optimizers), one small class each, with ``torch.optim``'s semantics and names.

Why several: plain gradient descent moves every parameter by ``lr * g``, which is too slow along shallow directions
of the loss and unstable along steep ones (the ill-conditioned valley ``x²/20 + y²`` of study S3). Momentum averages
successive gradients so consistent directions accelerate and oscillating ones cancel; AdaGrad/RMSprop/Adam divide
each coordinate by a running scale of its own gradients so every coordinate takes steps of a similar size.

Conventions (the whole of ``src/nn``)
-------------------------------------
* ``params`` and ``grads`` are ``dict[str, ndarray]`` with the same keys and shapes and a leading replica axis R
  on every array (``W`` ``(R, fan_in, fan_out)``, ``b`` ``(R, fan_out)``, ...). R independent models train at
  once; replicas never mix: replica r of an R-replica run is the same computation as a one-replica run.
* ``update(params, grads, mask=None)`` changes the ``params`` arrays IN PLACE (the MLP holds references to
  them) and never modifies ``grads``. It is vectorised: one NumPy expression per parameter array, no Python loop
  over replicas or elements.
* Every numeric hyper-parameter (``lr``, ``momentum``, ``dampening``, ``alpha``, each of ``betas``, ``eps``,
  ``weight_decay``, ``lr_decay``, ``initial_accumulator_value``) is a float or an array of shape ``(R,)``, one value
  per replica, so one vectorised job can run a grid over learning rates. ``opt.lr`` may be re-assigned at any time
  (a schedule does it once per epoch); the flags ``nesterov``, ``centered``, ``amsgrad`` are shared by all replicas.
* ``mask`` (bool ``(R,)``): replicas with ``False`` keep their parameters AND their optimizer state unchanged
  (moments, step count ``t``), so an early-stopped or diverged replica is frozen exactly. ``t`` is a per-replica
  step counter ``(R,)`` (``None`` before the first update) used for bias correction and the first-step rule.
* ``state_dict()`` / ``load_state_dict()`` snapshot and restore ``lr``, ``t`` and the per-parameter state.

Semantics: ``torch.optim`` (checked against torch 2.13 to 1e-10 by ``tests/test_optimizers.py``)
------------------------------------------------------------------------------------------------
With ``g`` the gradient, ``p`` the parameter and ``t`` the 1-based step of the replica:

``SGD`` (Robbins & Monro 1951; momentum: Polyak 1964 "heavy ball"; Nesterov 1983 in Sutskever et al. 2013's form)::

    g ← g + weight_decay·p                              (if weight_decay ≠ 0)
    buf ← g  at t = 1,  else  buf ← momentum·buf + (1 − dampening)·g       (if momentum ≠ 0)
    d ← g + momentum·buf  if nesterov  else  buf
    p ← p − lr·d

``variant="course"`` is the Coursera course's ("Improving Deep Neural Networks", week 2) exponentially weighted
momentum ``v ← β·v + (1 − β)·g; p ← p − lr·v`` with ``v`` starting at 0 and ``β = momentum``. It equals torch's
rule with ``dampening = β`` EXCEPT at the first step (torch copies ``g``; the course starts from 0, so its first
step is ``(1 − β)`` times smaller), and its effective step is ``1 − β`` times torch's: the same ``lr`` is not
the same optimizer. The book (Saito, *Deep Learning from Scratch*, ``common/optimizer.py``) writes momentum as
``v ← α·v − lr·g; p ← p + v``: with a constant lr that is exactly torch's rule (``v = −lr·buf``); when lr
changes, the book's velocity keeps the old learning rates inside it, torch's buffer does not. The book's
``Nesterov`` (after Bengio et al. 2013, arXiv:1212.0901) applies ``momentum²`` to the velocity AFTER updating it
(``p += μ²·v_new − (1+μ)·lr·g``), whereas Bengio et al.'s formula, and torch's rule above, use the velocity
before the update (``p += μ²·v_old − (1+μ)·lr·g``); the book's version therefore takes a different (larger) step.
``Momentum`` and ``Nesterov`` here are ``SGD`` with other defaults.

``AdaGrad`` (Duchi, Hazan & Singer 2011)::

    g ← g + weight_decay·p;  clr ← lr / (1 + (t − 1)·lr_decay)
    sum ← sum + g²          (sum starts at initial_accumulator_value)
    p ← p − clr·g / (√sum + eps)                       eps = 1e-10

The book's AdaGrad is the same formula with ``eps = 1e-7`` (added to ``√h`` at the same place) and no decay.

``RMSprop`` (Hinton, Srivastava & Swersky, Coursera "Neural Networks for Machine Learning" lecture 6e, 2012;
centred form: Graves 2013)::

    g ← g + weight_decay·p
    sq ← alpha·sq + (1 − alpha)·g²
    centered: ga ← ga + (1 − alpha)·(g − ga);  avg ← √(sq − ga²) + eps   else  avg ← √sq + eps
    momentum > 0: buf ← momentum·buf + g/avg;  p ← p − lr·buf      else  p ← p − lr·g/avg

The book's RMSprop is the non-centred case with ``alpha = decay_rate = 0.99`` and ``eps = 1e-7``; the course has
RMSprop only in a lecture (``s ← β₂s + (1 − β₂)g²; W ← W − lr·g/(√s + ε)``, ε ≈ 1e-8): the same formula.

``Adam`` (Kingma & Ba 2015) and ``AdamW`` (Loshchilov & Hutter 2019, decoupled weight decay)::

    AdamW: p ← p·(1 − lr·weight_decay)              Adam: g ← g + weight_decay·p
    m ← β₁·m + (1 − β₁)·g;   v ← β₂·v + (1 − β₂)·g²
    v̂max ← max(v̂max, v)  if amsgrad (Reddi, Kale & Kumar 2018)
    p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)

i.e. ``p ← p − lr·m̂/(√v̂ + eps)`` with the bias-corrected moments ``m̂ = m/(1 − β₁ᵗ)``, ``v̂ = v/(1 − β₂ᵗ)``;
eps is added AFTER the square root of the corrected ``v̂``. At ``t = 1`` the step is ``lr·g/(|g| + eps)``, i.e.
``lr`` in the direction of ``−sign(g)`` whatever the scale of ``g``. The course's Adam is this formula (eps 1e-8).
The book's folds the corrections into ``lr_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)`` and adds ``eps = 1e-7`` to the
UNcorrected ``√v``, which equals an eps of ``1e-7/√(1 − β₂ᵗ)`` here (≈ 3.2e-6 at t = 1): same with eps → 0.

Weight decay
------------
``weight_decay`` here is torch's coupled form (``g + λ·p``, AdamW: decoupled ``p·(1 − lr·λ)``) and applies to EVERY
parameter it is given, biases and batch-norm ``gamma``/``beta`` included. L2 regularisation in nnlab is normally
the MLP's ``l2`` (``λ/(2m)·ΣW²`` on the weight matrices only, the course's form); use ``weight_decay`` to compare
with torch or to study AdamW, not on top of ``l2`` by accident.

Differences from torch, on purpose: hyper-parameters may be per-replica arrays; ``mask``; the variant ``course``;
``alpha`` of RMSprop must be in [0, 1) (torch accepts any alpha >= 0). Not implemented: ``maximize``, ``foreach``,
``fused``, ``capturable``, ``differentiable``, parameter groups (one set of hyper-parameters per optimizer).
"""

from __future__ import annotations

import copy
import inspect
import operator
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from . import _flat, _hyper
from ._hyper import Hyper, nonzero
from ._hyper import per_replica as _rb

NAMES: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")

_POSITIVE = {"lo": 0.0, "lo_open": True}
_NONNEG = {"lo": 0.0}
_UNIT = {"lo": 0.0, "hi": 1.0}  # [0, 1)


class Optimizer:
    """Base class: per-replica step counter, lazy per-parameter state, masking; subclasses define ``_step``.

    Subclasses list their per-replica numeric hyper-parameters in ``_HYPERS`` (attribute names) and implement
    ``_init_state(p)`` (the zero state of one parameter array) and ``_step(p, g, state, hp)``, which updates
    ``p`` and the arrays of ``state`` in place for the selected replicas (the array values of ``hp`` already
    restricted to them). ``_prepare(t, hp)`` adds what depends only on the step (bias corrections, ...) once per
    update rather than once per parameter array; ``t`` is a Python int when all selected replicas are at the same
    step (the usual case: then the per-step numbers are Python floats, as in torch), else an int array.
    """

    _HYPERS: tuple[str, ...] = ("lr",)

    def __init__(self, lr: Hyper) -> None:
        self.lr = _hyper.real("lr", lr, **_POSITIVE)
        self.t: np.ndarray | None = None
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._plan: tuple | None = None  # see _groups
        self._scratch: dict[str, np.ndarray] = {}  # the step's temporaries, reused from one update to the next

    # -- learning rate (set by schedules each epoch; 0 is allowed there, e.g. cosine annealing to eta_min=0)
    @property
    def lr(self) -> Hyper:
        return self._lr

    @lr.setter
    def lr(self, value: Hyper) -> None:
        self._lr = _hyper.real("lr", value, **_NONNEG)

    # -- what subclasses provide
    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _prepare(self, t: int | np.ndarray, hp: dict[str, Any]) -> dict[str, Any]:
        return hp

    def _step(self, p: np.ndarray, g: np.ndarray, state: MutableMapping[str, np.ndarray],
              hp: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # -- the public API
    def update(self, params: MutableMapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
               mask: np.ndarray | None = None) -> None:
        """One step on every parameter, in place; replicas where ``mask`` is False are left untouched."""
        groups = self._groups(params, grads)
        R = groups[0][0].shape[0]
        hp = {name: getattr(self, name) for name in self._HYPERS}
        for name, value in hp.items():
            if isinstance(value, np.ndarray):
                _hyper.check_replicas(name, value, R)
        if self.t is None:
            self.t = np.zeros(R, dtype=np.int64)
        elif self.t.shape != (R,):
            raise ValueError(f"this optimizer has state for R={self.t.shape[0]} replicas but got R={R}; "
                             "use a new optimizer (or reset()) for a different network")
        idx = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (R,):
                raise ValueError(f"invalid mask of dtype {mask.dtype} and shape {mask.shape}; "
                                 f"valid: a bool array of shape ({R},)")
            if not mask.any():
                return
            if not mask.all():
                idx = np.flatnonzero(mask)
        if idx is None:
            self.t += 1
            hp = self._prepare(_compact(self.t), hp)
            for p, g, state in groups:
                self._step(p, g, state, hp)
            return
        self.t[idx] += 1
        hp = {name: (v[idx] if isinstance(v, np.ndarray) else v) for name, v in hp.items()}
        hp = self._prepare(_compact(self.t[idx]), hp)
        for full_p, g, full_state in groups:
            p = full_p[idx]  # copies (fancy indexing); written back below
            state = {name: a[idx] for name, a in full_state.items()}
            self._step(p, g[idx], state, hp)
            full_p[idx] = p
            for name, a in state.items():
                full_state[name][idx] = a

    def _groups(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]
                ) -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """The (param, grad, state) triples one update steps through.

        One triple when `params` and `grads` are views that tile one ``(R, P)`` array each in the same layout
        (an MLP's params and gradients, see _flat.py): the formula then runs once on all parameters, with the
        state held as ``(R, P)`` arrays too (``self.state[key]`` are views into them, so `state_dict` is
        unchanged). Otherwise one triple per key. The result is cached for the next call with the same arrays.
        """
        plan = self._plan
        if plan is not None:
            keys, p_arrays, g_arrays, groups = plan
            if (len(params) == len(keys) and all(map(operator.is_, params.values(), p_arrays))
                    and all(map(operator.is_, grads.values(), g_arrays))
                    and tuple(params) == keys and tuple(grads) == keys):
                return groups
        self._check_arrays(params, grads)
        keys = tuple(params)
        p_base = _flat.base_of([params[k] for k in keys])
        g_base = _flat.base_of([grads[k] for k in keys])
        if p_base is not None and g_base is not None and g_base.shape == p_base.shape:
            flat_state = self._init_state(p_base)
            shapes = {k: params[k].shape[1:] for k in keys}
            per_name = {name: _flat.views(a, shapes) for name, a in flat_state.items()}
            for k in keys:
                old = self.state.get(k, {})
                for name, v in per_name.items():
                    if name in old:
                        v[k][...] = old[name]  # a state built one array at a time carries on in the flat one
                self.state[k] = {name: v[k] for name, v in per_name.items()}
            groups = [(p_base, g_base, flat_state)]
        else:
            groups = [(params[k], grads[k], self._state_of(k, params[k])) for k in keys]
        self._plan = (keys, tuple(params.values()), tuple(grads.values()), groups)
        return groups

    def reset(self) -> None:
        """Forget all state (moments and step counts); hyper-parameters are kept."""
        self.t = None
        self.state = {}
        self._plan = None

    def state_dict(self) -> dict[str, Any]:
        """A deep copy of ``lr``, the step counter ``t`` and the per-parameter state arrays."""
        return {
            "lr": copy.deepcopy(self.lr),
            "t": None if self.t is None else self.t.copy(),
            "state": {k: {n: a.copy() for n, a in s.items()} for k, s in self.state.items()},
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copies the arrays)."""
        self.lr = sd["lr"]
        self.t = None if sd["t"] is None else np.array(sd["t"], dtype=np.int64)
        self.state = {k: {n: np.array(a) for n, a in s.items()} for k, s in sd["state"].items()}
        self._plan = None

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments as currently set (for logging)."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={_hyper.fmt(v)}' for k, v in self.hparams().items())})"

    # -- helpers
    def _tmp(self, p: np.ndarray, name: str = "tmp") -> np.ndarray:
        """A scratch array shaped like `p` for the step's intermediate results, reused across updates (large
        temporaries allocated at every step are what glibc mmaps and unmaps; see workspace.py)."""
        a = self._scratch.get(name)
        if a is None or a.shape != p.shape or a.dtype != p.dtype:
            a = self._scratch[name] = np.empty_like(p)
        return a

    def _state_of(self, key: str, p: np.ndarray) -> dict[str, np.ndarray]:
        state = self.state.get(key)
        if state is None:
            state = self.state[key] = self._init_state(p)
        return state

    @staticmethod
    def _check_arrays(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> int:
        if params and params.keys() != grads.keys():
            missing = sorted(set(params) - set(grads))
            extra = sorted(set(grads) - set(params))
            raise ValueError(f"grads must have the same keys as params; missing {missing}, extra {extra}")
        R = _hyper.replica_count(params, "param", "no parameters to update (params is empty)")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape:
                raise ValueError(f"grad {key!r} has shape {g.shape} but the param has shape {p.shape}")
        return R


def _compact(t: np.ndarray) -> int | np.ndarray:
    """The step as a Python int when every selected replica is at the same step, else the array."""
    first = int(t[0])
    if t.shape[0] == 1:
        return first
    return first if bool((t == first).all()) else t  # the method: np.all() costs ~3 µs of Python per step


def _add_weight_decay(g: np.ndarray, p: np.ndarray, wd: Hyper) -> np.ndarray:
    """torch's coupled weight decay ``g + λ·p`` as a NEW array (the caller's grads are never modified)."""
    return g + _rb(wd, p.ndim) * p if nonzero(wd) else g


class SGD(Optimizer):
    """(Mini-batch) gradient descent, optionally with momentum (Polyak 1964) or Nesterov momentum (Nesterov 1983,
    Sutskever et al. 2013); ``torch.optim.SGD`` semantics, or ``variant="course"`` (see the module docstring)."""

    _HYPERS = ("lr", "momentum", "dampening", "weight_decay")
    VARIANTS = ("torch", "course")

    def __init__(self, lr: Hyper = 0.01, momentum: Hyper = 0.0, dampening: Hyper = 0.0, nesterov: bool = False,
                 weight_decay: Hyper = 0.0, variant: str = "torch") -> None:
        super().__init__(lr)
        self.momentum = _hyper.real("momentum", momentum, **_NONNEG)
        self.dampening = _hyper.real("dampening", dampening, lo=0.0, hi=1.0, hi_open=False)
        self.nesterov = _hyper.boolean("nesterov", nesterov)
        self.weight_decay = _hyper.real("weight_decay", weight_decay, **_NONNEG)
        self.variant = _hyper.choice("SGD variant", variant, self.VARIANTS)
        if self.variant == "course" and (self.nesterov or nonzero(self.dampening)):
            raise ValueError("variant 'course' (v = beta*v + (1-beta)*g) takes no nesterov or dampening; "
                             "valid: nesterov=False, dampening=0 (or variant='torch')")
        if self.nesterov and (np.any(np.asarray(self.momentum) <= 0) or nonzero(self.dampening)):
            raise ValueError(f"invalid Nesterov momentum {_hyper.fmt(self.momentum)} with dampening "
                             f"{_hyper.fmt(self.dampening)}; valid: momentum > 0 and dampening = 0 (as in torch)")

    def _prepare(self, t: int | np.ndarray, hp: dict[str, Any]) -> dict[str, Any]:
        # torch: buf = g at a replica's first step (buf is still 0 there), else momentum*buf + (1 - dampening)*g
        damp = hp["dampening"]
        if not nonzero(damp):
            coef = None
        elif isinstance(t, int):
            coef = 1.0 if t == 1 else 1.0 - damp
        else:
            coef = np.where(t == 1, 1.0, 1.0 - damp)
        return {**hp, "coef": coef}

    def _uses_buffer(self) -> bool:
        return nonzero(self.momentum)

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {"momentum_buffer": np.zeros_like(p)} if self._uses_buffer() else {}

    def _step(self, p: np.ndarray, g: np.ndarray, state: MutableMapping[str, np.ndarray],
              hp: Mapping[str, Any]) -> None:
        nd = p.ndim
        g = _add_weight_decay(g, p, hp["weight_decay"])
        d = g
        if "momentum_buffer" in state:
            buf = state["momentum_buffer"]
            mom = _rb(hp["momentum"], nd)
            buf *= mom
            if self.variant == "course":
                buf += (1.0 - mom) * g
            elif hp["coef"] is None:
                buf += g
            else:
                buf += _rb(hp["coef"], nd) * g
            d = g + mom * buf if self.nesterov else buf
        p -= np.multiply(_rb(hp["lr"], nd), d, out=self._tmp(p))


class Momentum(SGD):
    """SGD with (heavy-ball) momentum 0.9 by default (Polyak 1964); the book's ``Momentum`` (see module doc)."""

    def __init__(self, lr: Hyper = 0.01, momentum: Hyper = 0.9, dampening: Hyper = 0.0, weight_decay: Hyper = 0.0,
                 variant: str = "torch") -> None:
        super().__init__(lr=lr, momentum=momentum, dampening=dampening, nesterov=False, weight_decay=weight_decay,
                         variant=variant)


class Nesterov(SGD):
    """SGD with Nesterov momentum (Nesterov 1983; Sutskever et al. 2013), ``torch.optim.SGD(nesterov=True)``."""

    def __init__(self, lr: Hyper = 0.01, momentum: Hyper = 0.9, weight_decay: Hyper = 0.0) -> None:
        super().__init__(lr=lr, momentum=momentum, dampening=0.0, nesterov=True, weight_decay=weight_decay)


class AdaGrad(Optimizer):
    """Per-coordinate steps ``lr/√(Σ g²)`` (Duchi et al. 2011); ``torch.optim.Adagrad`` semantics.

    The accumulated sum only grows, so the effective learning rate decays to 0: good for sparse convex problems,
    often too early a stop for deep nets (hence RMSprop).
    """

    _HYPERS = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, lr: Hyper = 0.01, lr_decay: Hyper = 0.0, weight_decay: Hyper = 0.0,
                 initial_accumulator_value: Hyper = 0.0, eps: Hyper = 1e-10) -> None:
        super().__init__(lr)
        self.lr_decay = _hyper.real("lr_decay", lr_decay, **_NONNEG)
        self.weight_decay = _hyper.real("weight_decay", weight_decay, **_NONNEG)
        self.initial_accumulator_value = _hyper.real("initial_accumulator_value", initial_accumulator_value,
                                                     **_NONNEG)
        self.eps = _hyper.real("eps", eps, **_NONNEG)

    def _prepare(self, t: int | np.ndarray, hp: dict[str, Any]) -> dict[str, Any]:
        return {**hp, "clr": hp["lr"] / (1 + (t - 1) * hp["lr_decay"])}

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        s = np.zeros_like(p)
        s += _rb(self.initial_accumulator_value, p.ndim)
        return {"sum": s}

    def _step(self, p: np.ndarray, g: np.ndarray, state: MutableMapping[str, np.ndarray],
              hp: Mapping[str, Any]) -> None:
        nd = p.ndim
        g = _add_weight_decay(g, p, hp["weight_decay"])
        clr = hp["clr"]
        s = state["sum"]
        s += np.multiply(g, g, out=self._tmp(p))
        std = np.sqrt(s, out=self._tmp(p, "std"))
        std += _rb(hp["eps"], nd)
        step = np.divide(g, std, out=std)
        step *= _rb(clr, nd)
        p -= step


class RMSprop(Optimizer):
    """Divide by a running RMS of recent gradients (Hinton's lecture 6e, 2012); ``torch.optim.RMSprop`` semantics.

    ``centered=True`` divides by an estimate of the gradient's standard deviation instead (Graves 2013).
    """

    _HYPERS = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def __init__(self, lr: Hyper = 0.01, alpha: Hyper = 0.99, eps: Hyper = 1e-8, weight_decay: Hyper = 0.0,
                 momentum: Hyper = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        self.alpha = _hyper.real("alpha", alpha, **_UNIT)
        self.eps = _hyper.real("eps", eps, **_NONNEG)
        self.weight_decay = _hyper.real("weight_decay", weight_decay, **_NONNEG)
        self.momentum = _hyper.real("momentum", momentum, **_NONNEG)
        self.centered = _hyper.boolean("centered", centered)

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        state = {"square_avg": np.zeros_like(p)}
        if self.centered:
            state["grad_avg"] = np.zeros_like(p)
        if nonzero(self.momentum):
            state["momentum_buffer"] = np.zeros_like(p)
        return state

    def _step(self, p: np.ndarray, g: np.ndarray, state: MutableMapping[str, np.ndarray],
              hp: Mapping[str, Any]) -> None:
        nd = p.ndim
        g = _add_weight_decay(g, p, hp["weight_decay"])
        alpha = _rb(hp["alpha"], nd)
        tmp, avg = self._tmp(p), self._tmp(p, "avg")
        sq = state["square_avg"]
        sq *= alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - alpha
        sq += tmp
        if self.centered:
            ga = state["grad_avg"]
            np.subtract(g, ga, out=tmp)
            tmp *= 1.0 - alpha
            ga += tmp
            np.multiply(ga, ga, out=tmp)
            np.subtract(sq, tmp, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(sq, out=avg)
        avg += _rb(hp["eps"], nd)
        lr = _rb(hp["lr"], nd)
        step = np.divide(g, avg, out=avg)  # g / avg
        if "momentum_buffer" in state:
            buf = state["momentum_buffer"]
            buf *= _rb(hp["momentum"], nd)
            buf += step
            step = buf
        p -= np.multiply(lr, step, out=tmp)


class Adam(Optimizer):
    """Momentum on ``g`` and RMS scaling by ``g²``, both bias-corrected (Kingma & Ba 2015); ``torch.optim.Adam``.

    ``amsgrad=True`` divides by the running maximum of ``v`` (Reddi et al. 2018). ``weight_decay`` is torch's
    coupled L2 form (added to the gradient, hence rescaled by Adam like any gradient); use :class:`AdamW` for the
    decoupled form.
    """

    _HYPERS = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _DECOUPLED = False

    def __init__(self, lr: Hyper = 1e-3, betas: tuple[Hyper, Hyper] | list[Hyper] = (0.9, 0.999), eps: Hyper = 1e-8,
                 weight_decay: Hyper = 0.0, amsgrad: bool = False) -> None:
        super().__init__(lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"invalid betas {_hyper.fmt(betas)}; valid: a pair (beta1, beta2), each in [0, 1) "
                             "(a float or an array of shape (R,))") from None
        self.beta1 = _hyper.real("betas[0]", beta1, **_UNIT)
        self.beta2 = _hyper.real("betas[1]", beta2, **_UNIT)
        self.eps = _hyper.real("eps", eps, **_NONNEG)
        self.weight_decay = _hyper.real("weight_decay", weight_decay, **_NONNEG)
        self.amsgrad = _hyper.boolean("amsgrad", amsgrad)

    @property
    def betas(self) -> tuple[Hyper, Hyper]:
        return (self.beta1, self.beta2)

    def _prepare(self, t: int | np.ndarray, hp: dict[str, Any]) -> dict[str, Any]:
        b1, b2 = hp["beta1"], hp["beta2"]
        if isinstance(t, int) and not isinstance(b1, np.ndarray) and not isinstance(b2, np.ndarray):
            bias_correction1, bias_correction2_sqrt = 1 - b1**t, (1 - b2**t) ** 0.5  # Python floats, as torch
        else:
            bias_correction1, bias_correction2_sqrt = 1 - np.power(b1, t), np.sqrt(1 - np.power(b2, t))
        return {**hp, "one_minus_beta1": 1 - b1, "one_minus_beta2": 1 - b2,
                "step_size": hp["lr"] / bias_correction1, "bias_correction2_sqrt": bias_correction2_sqrt}

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        state = {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(p)
        return state

    def _step(self, p: np.ndarray, g: np.ndarray, state: MutableMapping[str, np.ndarray],
              hp: Mapping[str, Any]) -> None:
        nd = p.ndim
        lr, wd = hp["lr"], hp["weight_decay"]
        if self._DECOUPLED:
            if nonzero(wd):
                p *= 1.0 - _rb(lr, nd) * _rb(wd, nd)
        else:
            g = _add_weight_decay(g, p, wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        tmp = self._tmp(p)
        m += np.multiply(_rb(hp["one_minus_beta1"], nd), np.subtract(g, m, out=tmp), out=tmp)
        v *= _rb(hp["beta2"], nd)
        v += np.multiply(_rb(hp["one_minus_beta2"], nd), np.multiply(g, g, out=tmp), out=tmp)
        if self.amsgrad:
            vmax = state["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v, out=tmp)
        denom /= _rb(hp["bias_correction2_sqrt"], nd)
        denom += _rb(hp["eps"], nd)
        step = np.divide(m, denom, out=tmp)  # m / denom
        step *= _rb(hp["step_size"], nd)
        p -= step


class AdamW(Adam):
    """Adam with decoupled weight decay ``p ← p·(1 − lr·λ)`` (Loshchilov & Hutter 2019); ``torch.optim.AdamW``.

    Decoupling matters because with Adam's coupled form the decay term is divided by ``√v̂`` like the gradient,
    so parameters with large gradients are barely regularised.
    """

    _DECOUPLED = True

    def __init__(self, lr: Hyper = 1e-3, betas: tuple[Hyper, Hyper] | list[Hyper] = (0.9, 0.999), eps: Hyper = 1e-8,
                 weight_decay: Hyper = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}
assert tuple(_CLASSES) == NAMES


def kwargs_of(name: str) -> tuple[str, ...]:
    """The keyword arguments the optimizer ``name`` accepts."""
    cls = _CLASSES[_hyper.choice("optimizer", name, NAMES)]
    return tuple(list(inspect.signature(cls.__init__).parameters)[1:])


def get(name: str, **kwargs: Any) -> Optimizer:
    """Build an optimizer by name (one of :data:`NAMES`) with ``torch.optim``-named keyword arguments.

    Unknown names, unknown keywords and out-of-range values raise a one-line ``ValueError`` that names the bad
    value and the valid choices, e.g. ``unknown optimizer 'x'; valid: sgd, momentum, ...``.
    """
    valid = kwargs_of(name)
    _hyper.check_kwargs(f"optimizer {name!r}", kwargs, valid)
    return _CLASSES[name](**kwargs)


__all__ = ["NAMES", "SGD", "AdaGrad", "Adam", "AdamW", "Momentum", "Nesterov", "Optimizer", "RMSprop", "get",
           "kwargs_of"]
