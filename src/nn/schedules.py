"""Learning-rate schedules: ``lr(epoch)`` from the initial rate ``lr0``, evaluated once per epoch by the loop.

Why: a rate large enough to make fast progress early is too large to settle into a minimum later (mini-batch noise
keeps the iterate bouncing at a radius proportional to lr). Decaying lr trades early speed for late precision;
the course ("Improving Deep Neural Networks", week 2, "Learning rate decay and scheduling") shows GD/Momentum on
moons going from ≈0.80 to ≈0.95 accuracy with a scheduled decay (study S3).

A schedule is a callable ``schedule(lr0, epoch) -> lr`` with ``epoch`` the 0-based epoch index. ``lr0`` is a float
or an array ``(R,)`` (one initial rate per replica, so a grid over learning rates runs in one vectorised job); the
result has the same form (float in, float out; array in, new array out). The schedule's own parameters are floats
shared by all replicas. Closed forms (``t`` = epoch):

* ``constant``: ``lr0``.
* ``step(step_size=1000, gamma=0.1)``: ``lr0 · gamma^⌊t / step_size⌋`` (torch ``StepLR``).
* ``exponential(gamma=0.99)``: ``lr0 · gamma^t`` (torch ``ExponentialLR``).
* ``inverse_time(decay_rate=1.0)``: ``lr0 / (1 + decay_rate·t)``, the course's ``update_lr`` (Keras
  ``InverseTimeDecay``; a 1/t decay, the Robbins–Monro rate).
* ``interval(decay_rate=1.0, time_interval=1000)``: ``lr0 / (1 + decay_rate·⌊t / time_interval⌋)``, the course's
  ``schedule_lr_decay`` (a staircase 1/t).
* ``cosine(t_max=1000, eta_min=0.0)``: ``eta_min + (lr0 − eta_min)·(1 + cos(π·min(t, t_max)/t_max))/2``
  (Loshchilov & Hutter 2017, SGDR, without restarts; torch ``CosineAnnealingLR``'s closed form up to ``t_max``).

``inverse_time`` and ``interval`` evaluate the course's expressions in the course's order
(``1/(1 + decay_rate·t) · lr0``), so they are bit-identical to the notebook. ``cosine`` holds ``eta_min`` for
``t > t_max``; torch's ``CosineAnnealingLR`` keeps following the cosine (the rate rises again), a restart nobody
asked for; up to ``t_max`` the two agree (``step`` and ``exponential`` agree with torch everywhere; checked by a
live torch test). The course applies its decay once per epoch with mini-batches, as does the loop here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _hyper
from ._hyper import Hyper

NAMES: tuple[str, ...] = ("constant", "step", "exponential", "inverse_time", "interval", "cosine")


class Schedule:
    """Base class, also the ``constant`` schedule: ``lr(t) = lr0``. Subclasses override :meth:`_value`."""

    name = "constant"

    def __call__(self, lr0: Hyper, epoch: int) -> Hyper:
        """The learning rate for the 0-based ``epoch`` (a float, or an array shaped like ``lr0``)."""
        if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"invalid epoch {_hyper.fmt(epoch)}; valid: an integer >= 0")
        epoch = int(epoch)
        if isinstance(lr0, np.ndarray) and lr0.ndim > 0:
            return np.asarray(self._value(lr0.astype(np.float64), epoch), dtype=np.float64)
        return float(self._value(float(lr0), epoch))

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        return lr0 * 1.0

    def hparams(self) -> dict[str, Any]:
        """The schedule's keyword arguments (for logging)."""
        return {k: getattr(self, k) for k in _KWARGS[self.name]}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr0`` every epoch."""

    name = "constant"


class Step(Schedule):
    """Multiply by ``gamma`` every ``step_size`` epochs (torch ``StepLR``)."""

    name = "step"

    def __init__(self, step_size: int = 1000, gamma: float = 0.1) -> None:
        self.step_size = _hyper.integer("step_size", step_size, lo=1)
        self.gamma = _hyper.real("gamma", gamma, lo=0.0, lo_open=True, per_replica_ok=False)

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        return lr0 * self.gamma ** (t // self.step_size)


class Exponential(Schedule):
    """Multiply by ``gamma`` every epoch (torch ``ExponentialLR``)."""

    name = "exponential"

    def __init__(self, gamma: float = 0.99) -> None:
        self.gamma = _hyper.real("gamma", gamma, lo=0.0, lo_open=True, per_replica_ok=False)

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        return lr0 * self.gamma**t


class InverseTime(Schedule):
    """``lr0 / (1 + decay_rate·t)``: the course's ``update_lr`` (decays like 1/t, the Robbins–Monro rate)."""

    name = "inverse_time"

    def __init__(self, decay_rate: float = 1.0) -> None:
        self.decay_rate = _hyper.real("decay_rate", decay_rate, lo=0.0, per_replica_ok=False)

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        return 1 / (1 + self.decay_rate * t) * lr0  # the course's expression, same order of operations


class Interval(Schedule):
    """``lr0 / (1 + decay_rate·⌊t/time_interval⌋)``: the course's ``schedule_lr_decay`` (a staircase 1/t)."""

    name = "interval"

    def __init__(self, decay_rate: float = 1.0, time_interval: int = 1000) -> None:
        self.decay_rate = _hyper.real("decay_rate", decay_rate, lo=0.0, per_replica_ok=False)
        self.time_interval = _hyper.integer("time_interval", time_interval, lo=1)

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        return 1 / (1 + self.decay_rate * math.floor(t / self.time_interval)) * lr0


class Cosine(Schedule):
    """Half a cosine from ``lr0`` down to ``eta_min`` over ``t_max`` epochs, then ``eta_min`` (SGDR without
    restarts, Loshchilov & Hutter 2017)."""

    name = "cosine"

    def __init__(self, t_max: int = 1000, eta_min: float = 0.0) -> None:
        self.t_max = _hyper.integer("t_max", t_max, lo=1)
        self.eta_min = _hyper.real("eta_min", eta_min, lo=0.0, per_replica_ok=False)

    def _value(self, lr0: Hyper, t: int) -> Hyper:
        t = min(t, self.t_max)
        return self.eta_min + (lr0 - self.eta_min) * (1 + math.cos(math.pi * t / self.t_max)) / 2


_CLASSES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": Step,
    "exponential": Exponential,
    "inverse_time": InverseTime,
    "interval": Interval,
    "cosine": Cosine,
}
_KWARGS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "step": ("step_size", "gamma"),
    "exponential": ("gamma",),
    "inverse_time": ("decay_rate",),
    "interval": ("decay_rate", "time_interval"),
    "cosine": ("t_max", "eta_min"),
}
assert tuple(_CLASSES) == NAMES == tuple(_KWARGS)


def get(name: str, **kwargs: Any) -> Schedule:
    """Build a schedule by name (one of :data:`NAMES`); one-line ``ValueError`` on a bad name, keyword or value."""
    _hyper.choice("schedule", name, NAMES)
    _hyper.check_kwargs(f"schedule {name!r}", kwargs, _KWARGS[name])
    return _CLASSES[name](**kwargs)


__all__ = ["NAMES", "Constant", "Cosine", "Exponential", "Interval", "InverseTime", "Schedule", "Step", "get"]
