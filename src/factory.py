"""From a validated config to the objects of `src.nn`: network, optimizer, schedule.

Why a module of its own: the Hydra entry point, the gradient-check CLI, the benchmarks and the tests all need
"the net this config describes", and must get the very same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from src.data import Dataset
from src.nn import MLP, initializers, optimizers, schedules

_INIT_KEYS = ("std", "mean", "a", "value", "gain")
_OPT_KEYS = ("momentum", "dampening", "nesterov", "variant", "alpha", "betas", "eps", "weight_decay",
             "centered", "amsgrad", "lr_decay")
_SCHED_KEYS = ("step_size", "gamma", "decay_rate", "time_interval", "t_max", "eta_min")


def _set(node: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys of `node` that the user set (not None), as plain Python values."""
    out: dict[str, Any] = {}
    for k in keys:
        v = node.get(k) if hasattr(node, "get") else getattr(node, k, None)
        if v is not None:
            out[k] = list(v) if k == "betas" else v
    return out


def init_kwargs(init_cfg: Any) -> dict[str, Any]:
    return _set(init_cfg, _INIT_KEYS)


def optimizer_kwargs(opt_cfg: Any) -> dict[str, Any]:
    kw = _set(opt_cfg, _OPT_KEYS)
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return kw


def schedule_kwargs(sched_cfg: Any) -> dict[str, Any]:
    return _set(sched_cfg, _SCHED_KEYS)


def layer_sizes(cfg: Any, ds: Dataset) -> list[int]:
    """Input width from the data, hidden widths from the config, one output unit for binary sets."""
    n_out = 1 if ds.n_classes == 2 else ds.n_classes
    return [ds.n_features, *[int(h) for h in cfg.model.hidden], n_out]


def build_net(cfg: Any, ds: Dataset) -> MLP:
    sizes = layer_sizes(cfg, ds)
    m = cfg.model
    params = None
    if cfg.init.course:
        # The course draws from the legacy global stream; every replica gets that same draw on purpose
        # (it is one fixed network), so replicas then differ only where the loop's randomness differs.
        params = initializers.course_params(sizes, cfg.init.name, seed=int(cfg.train.seed), **init_kwargs(cfg.init))
    return MLP(
        sizes=sizes,
        activation=m.activation,
        init=cfg.init.name,
        init_kwargs=init_kwargs(cfg.init),
        replicas=int(cfg.train.seeds),
        seed=int(cfg.train.seed),
        batchnorm=bool(m.batchnorm),
        dropout=float(m.dropout),
        l2=float(m.l2),
        bn_momentum=float(m.bn_momentum),
        leaky_slope=float(m.leaky_slope),
        dtype=np.dtype(cfg.train.dtype).type,
        params=params,
    )


def build_optimizer(cfg: Any) -> optimizers.Optimizer:
    return optimizers.get(cfg.optimizer.name, lr=float(cfg.train.lr), **optimizer_kwargs(cfg.optimizer))


def build_schedule(cfg: Any) -> schedules.Schedule:
    return schedules.get(cfg.schedule.name, **schedule_kwargs(cfg.schedule))
