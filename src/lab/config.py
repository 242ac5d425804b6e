"""The configuration schema: what a user can vary, typed, with its valid ranges.

Why structured configs: Hydra merges every YAML file of `conf/` into these dataclasses, so a wrong type
(`train.lr=abc`) or an unknown key (`model.depth=3`) fails while the config is composed, before any data
is loaded or any MLflow run is opened. Ranges (lr > 0, dropout in [0, 1), ...) are not expressible as types,
so :func:`validate` checks them and raises :class:`ConfigError` with one line naming the key, the bad value
and what is valid. The names of the choices come from `src.nn` and `src.data` themselves, never copied.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
SHUFFLES = ("random", "course")


STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SEED_LIMIT = 2**32


class ConfigError(ValueError):
    """A configuration value outside its valid range; the message is one line."""


@dataclass
class DataCfg:
    """Which dataset (a file written by the `generate` stage), where the files live, and an optional re-scaling.

    `shift`/`scale` map every feature to `X * scale + shift` at load time (study S6, preprocessing);
    `standardize`: null keeps the data as generated, false undoes the generator's standardisation first,
    true re-standardises with the train split's statistics (see `src.data.transform`).
    """

    name: str = MISSING
    dir: str = "data"
    standardize: bool | None = None
    shift: float = 0.0
    scale: float = 1.0


@dataclass
class ModelCfg:
    """The network: hidden layer sizes (input and output sizes come from the dataset) and regularisers."""

    hidden: list[int] = field(default_factory=lambda: [10, 5])
    activation: str = "relu"
    batchnorm: bool = False
    bn_momentum: float = 0.9
    dropout: float = 0.0
    l2: float = 0.0
    leaky_slope: float = 0.01


@dataclass
class InitCfg:
    """Weight initialisation. `name` is a `src.nn.initializers` name; the optional numbers are its kwargs.

    `course: true` draws the weights exactly as the course notebooks do (legacy global RNG seeded with
    `train.seed`, `randn(fan_out, fan_in) * scale`), which makes the course tables reproducible to the digit.
    """

    name: str = "he_normal"
    std: float | None = None
    mean: float | None = None
    a: float | None = None
    value: float | None = None
    gain: float | None = None
    course: bool = False


@dataclass
class OptimizerCfg:
    """Update rule (a `src.nn.optimizers` name) and its hyper-parameters, with `torch.optim`'s names.

    The learning rate is `train.lr` (one knob for every optimizer); unset fields keep the optimizer's default.
    """

    name: str = "adam"
    momentum: float | None = None
    dampening: float | None = None
    nesterov: bool | None = None
    variant: str | None = None
    alpha: float | None = None
    betas: list[float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    centered: bool | None = None
    amsgrad: bool | None = None
    lr_decay: float | None = None


@dataclass
class ScheduleCfg:
    """Learning-rate schedule, evaluated once per epoch (a `src.nn.schedules` name and its kwargs)."""

    name: str = "constant"
    step_size: int | None = None
    gamma: float | None = None
    decay_rate: float | None = None
    time_interval: int | None = None
    t_max: int | None = None
    eta_min: float | None = None


@dataclass
class TrainCfg:
    """The training loop. `seeds` is the number of replicas trained at once (seeds `seed`..`seed+seeds-1`)."""

    epochs: int = 1000
    batch_size: int | None = None
    lr: float = 0.01
    clip_value: float | None = None
    clip_norm: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    seeds: int = 5
    seed: int = 0
    log_every: int = 10
    shuffle: str = "random"
    dtype: str = "float64"
    progress: bool | None = None  # null: a progress bar only when stdout is a terminal (never in DVC's logs)
    max_memory_gb: float = 4.0  # refuse a run estimated above this (src/lab/memory.py); does not change results


@dataclass
class TrackingCfg:
    """Where runs go. `uri: null` means `$MLFLOW_TRACKING_URI` or else `sqlite:///<project>/mlflow.db`."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    artifacts: bool = True
    model: bool = True  # log each finished run's net as an MLflow model (runs:/<run id>/model)
    max_curve_points: int = 500
    # Per-run PNGs (src.plots.runs.FIGURES). Curves and layer diagnostics are logged as metric series either way
    # and charted by the MLflow UI, so by default only what it cannot draw is rendered (~0.2 s per figure).
    figures: list[str] = field(default_factory=lambda: ["boundary", "histograms"])


# The default learning-rate grid of `tune.lrs`: 7 values over 3 decades, the 1-3-10 steps of a log grid.
TUNE_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class TuneCfg:
    """Learning-rate tuning on the replica axis (src/lab/tuning.py; SPEC "Protocol for comparisons").

    `enabled: true` trains every config of the run or grid at each of `lrs` on `seeds` tuning replicas (seeds
    `seed`, `seed + 1`, ..., kept apart from the report seeds `train.seed`...), picks its lr on VALIDATION
    accuracy (ties: validation loss), and reports that lr on the report seeds next to the configured `train.lr`,
    in two packed fits. `lrs` should span >= 3 decades with >= 7 values; the report says when it does not.
    """

    enabled: bool = False
    lrs: list[float] = field(default_factory=lambda: list(TUNE_LRS))
    seeds: int = 3
    seed: int = 1000


@dataclass
class Config:
    """The whole job. `study` names the MLflow experiment (and, in the pipeline, the `results/<study>/` folder).

    `study` is derived from the preset (`experiment=<name>`, see :func:`register`; `adhoc` without one), so a
    preset states only what differs; `results_dir` is set by dvc.yaml's stages (null: the sweep folder only);
    `resume: true` skips configs that already finished in the experiment.
    """

    study: str = "adhoc"
    data: DataCfg = field(default_factory=DataCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    init: InitCfg = field(default_factory=InitCfg)
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    tracking: TrackingCfg = field(default_factory=TrackingCfg)
    tune: TuneCfg = field(default_factory=TuneCfg)
    results_dir: str | None = None
    resume: bool = False


# --- the config's kwargs for src.nn's factories (only the keys the user set) ----------------------------

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



def cores(most: int | str) -> int:
    """`${nnlab.cores:N}`: this machine's usable cores (joblib's count: affinity and cgroup quotas), at most N.

    Why: a preset that launches its packs with joblib sets `hydra.launcher.n_jobs` to this, its pack count: joblib's
    own `-1` starts one worker per core, every one of them at once (measured: 16 processes for 2 tasks at
    n_jobs=16), which on a 64-core machine would be 56 idle workers for the default grid's 8 packs."""
    from joblib import cpu_count

    n = int(most)
    if n < 1:
        raise ValueError(f"nnlab.cores needs a count >= 1, got {most!r}")
    return min(cpu_count(), n)


def register() -> None:
    """Put the schema in Hydra's ConfigStore under `nnlab_schema` (`conf/config.yaml` extends it), and the
    resolvers: `${nnlab.study:}` (the study, from the preset's name), `${nnlab.cores:N}` (a launcher's workers)."""
    ConfigStore.instance().store(name="nnlab_schema", node=Config)
    for name, fn in (("nnlab.study", _study), ("nnlab.cores", cores)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("nnlab.launch"):
        # Cached like Hydra's own ${now:...}: resolved once in the launching process, and Hydra copies the cache
        # into every job's config, so all jobs of a sweep agree on its folder.
        OmegaConf.register_new_resolver("nnlab.launch", lambda: str(os.getpid()), use_cache=True)


def _preset(root: Any) -> str | None:
    """The chosen `experiment=` preset (None without one), from the config's own Hydra node when it has one
    (the compose API: pre-flight, tests), else from the running Hydra job or sweep (HydraConfig)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_node = root.get("hydra") if isinstance(root, DictConfig) else None
    if hydra_node is not None:
        choices = hydra_node.runtime.choices
    else:
        try:
            choices = HydraConfig.get().runtime.choices
        except ValueError:
            raise ConfigError("study cannot be derived from the preset: compose with return_hydra_config=True "
                              "(src.lab.preflight.compose does) or set study=...") from None
    preset = choices.get("experiment")
    return str(preset) if preset not in (None, "null") else None


def _study(_root_: Any) -> str:
    """`study`: the preset's name (`experiment=s1_init` -> s1_init); `adhoc` without a preset, so that a grid
    typed on the command line gets an MLflow experiment of its own instead of joining a study's."""
    return _preset(_root_) or "adhoc"


def progress_on(value: bool | None) -> bool:
    """`train.progress`: true/false as given; null (the default) = only when stdout is a terminal."""
    import sys

    return sys.stdout.isatty() if value is None else bool(value)


def _bad(key: str, value: Any, valid: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid; valid: {valid}")


def _choice(key: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise _bad(key, value, ", ".join(choices))


def _positive(key: str, value: float | None, *, allow_none: bool = True, strict: bool = True) -> None:
    if value is None:
        if allow_none:
            return
        raise _bad(key, value, "a number")
    ok = math.isfinite(value) and (value > 0 if strict else value >= 0)
    if not ok:
        raise _bad(key, value, "a finite number > 0" if strict else "a finite number >= 0")


def validate(cfg: DictConfig | Config) -> None:
    """Check every range a type cannot express; raise :class:`ConfigError` (one line) on the first bad value.

    Called before any work (by the pre-flight check of a whole sweep and again inside each job).
    """
    from src import data
    from src.nn import initializers, optimizers, schedules

    c: Any = cfg
    _finite_everywhere(c)
    if not STUDY_NAME.match(str(c.study)):
        raise _bad("study", c.study, "1-100 letters, digits, '_', '-' or '.', starting with a letter or digit (it "
                   "names the MLflow experiment and the results/ and multirun/ folders)")
    _choice("data.name", c.data.name, data.NAMES)
    if not math.isfinite(c.data.shift):
        raise _bad("data.shift", c.data.shift, "a finite number")
    _positive("data.scale", c.data.scale, allow_none=False)
    hidden = list(c.model.hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) for h in hidden):
        raise _bad("model.hidden", _plain(c.model.hidden), "a list of integer layer sizes, e.g. [10, 5]")
    if any(h < 1 for h in hidden):
        raise _bad("model.hidden", hidden, "a list of layer sizes >= 1, e.g. [10, 5] (or [] for no hidden layer)")
    _choice("model.activation", c.model.activation, ACTIVATIONS)
    if not 0.0 <= c.model.dropout < 1.0:
        raise _bad("model.dropout", c.model.dropout, "a drop probability in [0, 1)")
    _positive("model.l2", c.model.l2, strict=False)
    if not 0.0 <= c.model.bn_momentum < 1.0:
        raise _bad("model.bn_momentum", c.model.bn_momentum, "a number in [0, 1)")
    _choice("init.name", c.init.name, initializers.NAMES)
    if c.init.course and c.init.name not in initializers.COURSE_INITS:  # else every job fails after the launch
        raise _bad("init.name", c.init.name, f"with init.course=true, one of {', '.join(initializers.COURSE_INITS)} "
                   "(the course draws randn * scale; or init.course=false)")
    _choice("optimizer.name", c.optimizer.name, optimizers.NAMES)
    _choice("schedule.name", c.schedule.name, schedules.NAMES)
    t = c.train
    if t.epochs < 1:
        raise _bad("train.epochs", t.epochs, "an integer >= 1")
    if t.batch_size is not None and t.batch_size < 1:
        raise _bad("train.batch_size", t.batch_size, "an integer >= 1, or null for full batch")
    _positive("train.lr", t.lr, allow_none=False)
    _positive("train.clip_value", t.clip_value)
    _positive("train.clip_norm", t.clip_norm)
    if t.patience is not None and t.patience < 0:
        raise _bad("train.patience", t.patience, "an integer >= 0, or null for no early stopping")
    _positive("train.min_delta", t.min_delta, strict=False)
    if t.seed < 0:
        raise _bad("train.seed", t.seed, "an integer >= 0 (replica r uses seed + r)")
    if t.seeds < 1:
        raise _bad("train.seeds", t.seeds, "an integer >= 1 (the number of replicas)")
    if t.seed + t.seeds - 1 >= SEED_LIMIT:
        raise _bad("train.seed", t.seed, f"train.seed + train.seeds - 1 < 2**32 (={SEED_LIMIT}; NumPy's legacy "
                   "seeds, used by init.course and shuffle=course)")
    _positive("train.max_memory_gb", t.max_memory_gb, allow_none=False)
    if c.optimizer.eps is not None and not c.optimizer.eps > 0:
        raise _bad("optimizer.eps", c.optimizer.eps, "a finite number > 0 (Adam/RMSprop/Adagrad divide by "
                   "sqrt(v) + eps: 0 gives 0/0 wherever a gradient is exactly 0), or null for the default")
    if t.log_every < 1:
        raise _bad("train.log_every", t.log_every, "an integer >= 1")
    _choice("train.shuffle", t.shuffle, SHUFFLES)
    _choice("train.dtype", t.dtype, ("float64", "float32"))
    if c.tracking.max_curve_points < 2:
        raise _bad("tracking.max_curve_points", c.tracking.max_curve_points, "an integer >= 2")
    from src.plots.runs import FIGURES

    for name in c.tracking.figures:
        _choice("tracking.figures", name, tuple(FIGURES))
    _validate_tune(c)
    # The libraries' own checks of kwargs (unknown names, ranges, combinations) also give one-line ValueErrors,
    # in the library's words (`momentum`, `Nesterov`): prefixed with the config keys they came from.
    for group, name, kwargs, build in (
        ("init", c.init.name, init_kwargs(c.init), lambda kw: initializers.get(c.init.name, **kw)),
        ("optimizer", c.optimizer.name, optimizer_kwargs(c.optimizer),
         lambda kw: optimizers.get(c.optimizer.name, lr=t.lr, **kw)),
        ("schedule", c.schedule.name, schedule_kwargs(c.schedule), lambda kw: schedules.get(c.schedule.name, **kw)),
    ):
        try:
            build(kwargs)
        except (ValueError, TypeError) as exc:
            keys = ", ".join(f"{group}.{k}={v!r}" for k, v in kwargs.items())
            raise ConfigError(f"{group}={name}{f' ({keys})' if keys else ''}: {str(exc).splitlines()[0]}") from exc


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig | ListConfig) else node


def _finite_everywhere(c: Any) -> None:
    """No key takes nan or inf: a non-finite number is always a typo or an overflow, never a setting (`null` is
    the spelling of "off"). Without this, `model.leaky_slope=nan` trained and was reported as diverged."""
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
        elif isinstance(node, float) and not math.isfinite(node):
            raise _bad(path, node, "a finite number (no key takes nan or inf; null switches an option off)")

    walk(to_container(c) if isinstance(c, DictConfig) else dataclasses.asdict(c), "")


def _validate_tune(c: Any) -> None:
    """`tune.*`: positive distinct lrs, >= 1 tuning seed, tuning seeds apart from the report seeds."""
    tu = c.get("tune") if hasattr(c, "get") else getattr(c, "tune", None)
    if tu is None or not tu.enabled:
        return
    lrs = [float(v) for v in tu.lrs]
    if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs) or len(set(lrs)) != len(lrs):
        raise _bad("tune.lrs", lrs, "a list of distinct learning rates > 0, e.g. [0.001,0.003,0.01,0.03,0.1,0.3,1]")
    if tu.seeds < 1:
        raise _bad("tune.seeds", tu.seeds, "an integer >= 1 (tuning replicas per learning rate)")
    t = c.train
    report = range(int(t.seed), int(t.seed) + int(t.seeds))
    tuning = range(int(tu.seed), int(tu.seed) + int(tu.seeds))
    if tu.seed < 0 or set(report) & set(tuning):
        raise _bad("tune.seed", tu.seed, f"an integer >= 0 whose {tu.seeds} tuning seeds avoid the report seeds "
                   f"{t.seed}..{t.seed + t.seeds - 1} (choosing and reporting on the same seeds is biased)")
    if c.init.course:
        raise _bad("tune.enabled", True, "false with init.course=true (the course's one fixed draw is not tuned)")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python, without Hydra's own node.

    Key by key, so a config composed with its Hydra node (the compose API) resolves too: that node's
    `${hydra:...}` needs a running Hydra, while our keys may read it (`${nnlab.study:}`).
    """
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        value = cfg[key]
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        out[str(key)] = value
    return out
