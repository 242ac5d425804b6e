"""From a validated config to the objects of `src.nn`: network, optimizer, schedule.

Why a module of its own: the Hydra entry point, the gradient-check CLI, the benchmarks and the tests all need
"the net this config describes", and must get the very same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from src.data import Dataset
from src.lab.config import init_kwargs, optimizer_kwargs, schedule_kwargs
from src.nn import MLP, initializers, optimizers, schedules


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
