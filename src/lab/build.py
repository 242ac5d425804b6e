"""The one builder: from a validated config to everything a fit needs -- dataset, net, optimizer, schedule, loop.

Why one module: a job, a packed job, the gradient-check CLI, the tests and the benchmarks all need "the run this
config describes", and must get the very same one (the course tables are reproduced to the digit, packed jobs
match separate jobs to 1e-12). :func:`build` is that run; :func:`build_packed` is n configs of a pack as one net
of n·S replicas, each replica with exactly the seed, initializer, learning rate, thresholds and patience it would
have had alone (src/lab/packing.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src import data
from src.data import Dataset
from src.lab.config import init_kwargs, optimizer_kwargs, progress_on, schedule_kwargs
from src.lab.loop import LoopConfig
from src.nn import MLP, initializers, optimizers, schedules
from src.nn.optimizers import Optimizer
from src.nn.schedules import Schedule


@dataclass
class Built:
    """What `loop.fit` takes: the (preprocessed) dataset, the net, its optimizer and schedule, the loop settings."""

    dataset: Dataset
    net: MLP
    optimizer: Optimizer
    schedule: Schedule
    loop: LoopConfig
    activation: str


def build(cfg: Any, ds: Dataset | None = None) -> Built:
    """The run `cfg` describes (`ds`: its dataset if already loaded, e.g. by a test)."""
    ds = load_dataset(cfg) if ds is None else ds
    return Built(ds, build_net(cfg, ds), build_optimizer(cfg), build_schedule(cfg), loop_settings(cfg),
                 str(cfg.model.activation))


def build_packed(subs: Sequence[Any], ds: Dataset) -> Built:
    """One net of R = n·S replicas for the n configs `subs` (equal except at packing.PACKABLE paths).

    A pack of one config (the sweeper sends every config it cannot pack, e.g. `init.course=true`, alone) is that
    config's own run, :func:`build`: the same net, bit for bit, as an unpacked job.
    """
    if len(subs) == 1:
        return build(subs[0], ds)
    if subs[0].init.course:
        raise ValueError("init.course=true configs are never packed: the course's draw is one fixed network")
    S = int(subs[0].train.seeds)
    return build_replicas([c for c in subs for _ in range(S)], [float(c.train.lr) for c in subs for _ in range(S)],
                          [int(c.train.seed) + r for c in subs for r in range(S)], ds)


def build_replicas(cfgs: Sequence[Any], lrs: Sequence[float], seeds: Sequence[int], ds: Dataset) -> Built:
    """One net whose replica r is config `cfgs[r]` at learning rate `lrs[r]` and seed `seeds[r]`.

    The configs must be equal except at packing.PACKABLE paths (init, clipping, patience, L2); the optimizer,
    schedule, model and loop settings are the first config's. A pack (:func:`build_packed`) and the stages of
    learning-rate tuning (src/lab/tuning.py) are both lists of such replicas.
    """
    base = cfgs[0]
    net = _mlp(base, ds, init=[str(c.init.name) for c in cfgs], init_kwargs=[init_kwargs(c.init) for c in cfgs],
               seeds=[int(s) for s in seeds], l2=np.array([float(c.model.l2) for c in cfgs]))
    opt = build_optimizer(base, lr=np.asarray(lrs, dtype=np.float64))
    loop = dataclasses.replace(
        loop_settings(base),
        clip_value=_per_replica([c.train.clip_value for c in cfgs], np.inf),
        clip_norm=_per_replica([c.train.clip_norm for c in cfgs], np.inf),
        patience=_per_replica([c.train.patience for c in cfgs], np.inf))
    return Built(ds, net, opt, build_schedule(base), loop, str(base.model.activation))


def load_dataset(cfg: Any) -> Dataset:
    """The configured dataset file, preprocessed as configured (`data.shift/scale/standardize`)."""
    d = cfg.data
    return data.transform(data.load(d.name, d.dir), shift=float(d.shift), scale=float(d.scale),
                          standardize=d.standardize)


def layer_sizes(cfg: Any, ds: Dataset) -> list[int]:
    """Input width from the data, hidden widths from the config, one output unit for binary sets."""
    n_out = 1 if ds.n_classes == 2 else ds.n_classes
    return [ds.n_features, *[int(h) for h in cfg.model.hidden], n_out]


def build_net(cfg: Any, ds: Dataset) -> MLP:
    """The configured net: `train.seeds` replicas seeded `train.seed`, `train.seed + 1`, ..."""
    params = None
    if cfg.init.course:
        # The course draws from the legacy global stream; every replica gets that same draw on purpose
        # (it is one fixed network), so replicas then differ only where the loop's randomness differs.
        params = initializers.course_params(layer_sizes(cfg, ds), cfg.init.name, seed=int(cfg.train.seed),
                                            **init_kwargs(cfg.init))
    return _mlp(cfg, ds, init=cfg.init.name, init_kwargs=init_kwargs(cfg.init), replicas=int(cfg.train.seeds),
                seed=int(cfg.train.seed), l2=float(cfg.model.l2), params=params)


def _mlp(cfg: Any, ds: Dataset, **replicas: Any) -> MLP:
    """The MLP of `cfg`'s model on `ds`; `replicas` are the per-replica arguments (init, seeds, l2, ...)."""
    m = cfg.model
    return MLP(sizes=layer_sizes(cfg, ds), activation=m.activation, batchnorm=bool(m.batchnorm),
               dropout=float(m.dropout), bn_momentum=float(m.bn_momentum), leaky_slope=float(m.leaky_slope),
               dtype=np.dtype(cfg.train.dtype).type, **replicas)


def build_optimizer(cfg: Any, lr: float | np.ndarray | None = None) -> Optimizer:
    """The configured update rule at `train.lr` (or `lr`: one per replica for a pack)."""
    return optimizers.get(cfg.optimizer.name, lr=float(cfg.train.lr) if lr is None else lr,
                          **optimizer_kwargs(cfg.optimizer))


def build_schedule(cfg: Any) -> Schedule:
    return schedules.get(cfg.schedule.name, **schedule_kwargs(cfg.schedule))


def loop_settings(cfg: Any) -> LoopConfig:
    """`train.*` as the loop's settings; `train.progress: null` shows the bar only when stdout is a terminal."""
    t = cfg.train
    return LoopConfig(epochs=int(t.epochs), batch_size=t.batch_size, clip_value=t.clip_value, clip_norm=t.clip_norm,
                      patience=t.patience, min_delta=float(t.min_delta), log_every=int(t.log_every),
                      shuffle=t.shuffle, progress=progress_on(t.progress))


def _per_replica(values: list[Any], off: float) -> np.ndarray | None:
    """(R,) array of per-replica values (None -> `off`); None when every replica has it off."""
    if all(v is None for v in values):
        return None
    return np.array([off if v is None else float(v) for v in values], dtype=np.float64)
