"""Check a whole run or sweep before Hydra starts it: every bad input fails at once, in one line.

Why: Hydra reports a bad override as a multi-line message with its search path, and a bad value inside a
sweep list (`train.lr=0.1,abc`) only fails after the sweep has started (leaving an orphan parent run).
Here every value of every swept key -- on the command line or in a preset's `hydra.sweeper.params` -- is
composed with Hydra's own compose API (once per distinct set of config-group choices, values applied to a
copy as Hydra applies them), type-checked by the schema, range-checked by `config.validate`,
and its dataset file is opened; the tracking server is pinged. Only then does the real Hydra app run.
`HYDRA_FULL_ERROR=1` re-raises the original exception with its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from src.lab.config import Config, ConfigError, validate

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_SKIP_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg", "--shell-completion", "-sc",
               "--version", "-p", "--package", "--resolve"}
_ARG_FLAGS = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-c", "--cfg",
              "-p", "--package", "-i", "--info", "-sc", "--shell-completion", "--experimental-rerun"}
ROOT_EXTRA_KEYS = {"hydra", "pack"}  # pack: a packed job's configs, added by the vectorized sweeper
MAX_COMPOSE = 400


class PreflightError(ConfigError):
    """Raised with a one-line message; :func:`preflight` prints it and exits 2."""


def split_argv(argv: list[str]) -> tuple[list[str], bool, bool]:
    """(overrides, multirun?, skip?) from Hydra's command line."""
    overrides: list[str] = []
    multirun = skip = False
    it = iter(argv)
    for a in it:
        if a in ("-m", "--multirun"):
            multirun = True
        elif a.startswith("-"):
            flag = a.split("=", 1)[0]
            skip |= flag in _SKIP_FLAGS
            if flag in _ARG_FLAGS and "=" not in a:
                next(it, None)
        else:
            overrides.append(a)
    return overrides, multirun, skip


def _valid_keys(path: list[str]) -> list[str] | None:
    """The schema's field names at a dotted path (for 'unknown key' messages)."""
    node: Any = Config
    for part in path:
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return None
        node = fields[part].default_factory() if fields[part].default_factory is not dataclasses.MISSING else None
        node = type(node) if node is not None else None
    if node is None or not dataclasses.is_dataclass(node):
        return None
    return [f.name for f in dataclasses.fields(node)]


def one_line(exc: BaseException) -> str:
    """Turn Hydra/OmegaConf's multi-line composition errors into one line naming the value and the choices."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException):
        missing = str(getattr(exc, "missing_cfg_file", "") or "")
        options = getattr(exc, "options", None)
        if missing and options is not None:
            group, _, value = missing.rpartition("/")
            return f"{group}={value!r} is not a known choice; valid: {', '.join(options)}"
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), None)
    head = lines[0] if lines else type(exc).__name__
    if head.startswith("Key '") and " not in " in head and full_key:
        parent = full_key.split(".")[:-1]
        valid = _valid_keys(parent)
        if valid:
            return f"unknown key {full_key!r}; valid keys under {'.'.join(parent) or 'the root'}: {', '.join(valid)}"
    appended = re.match(r"Could not append to config\. An item is already at '([^']+)'", head)
    if appended:  # `+key=value` for a key the schema has, e.g. the old spelling +resume=true
        key = appended.group(1)
        value = "true" if key == "resume" else "..."
        return f"{key} is already in the config: drop the '+' ({key}={value})"
    if full_key and full_key not in head:
        head = f"{full_key}: {head}"
    if "Ambiguous value" in head:
        head += " (add -m/--multirun to sweep over a comma-separated list)"
    return head


def _expand(override_strings: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Fixed overrides and {key: [values]} of swept ones, parsed by Hydra's own override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fixed: list[str] = []
    sweeps: dict[str, list[str]] = {}
    for ov in OverridesParser.create().parse_overrides(override_strings):
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if ov.is_interval_sweep():
                raise PreflightError(f"{ov.input_line}: an interval has no list of values to run, and nnlab's "
                                     "sweepers (vectorized, basic) only enumerate; give a list (0.01,0.03,0.1), "
                                     "range(...) or choice(...)")
            sweeps[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
            if not sweeps[key]:
                raise PreflightError(f"{ov.input_line} gives no values to sweep (an empty range or choice)")
        else:
            fixed.append(ov.input_line or f"{key}={ov.get_value_element_as_str()}")
    return fixed, sweeps


def compose(overrides: list[str]) -> Any:
    """The config `python -m src.train <overrides>` would run, with Hydra's own node (`cfg.hydra`), unvalidated.

    Hydra's compose API, as the app composes, once per call; used by the tests and the benchmarks (the pre-flight
    check and the gradient check compose the same way, once per distinct set of group choices: :func:`composing`).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.lab.config import register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


@contextlib.contextmanager
def composing() -> Iterator[Any]:
    """A :class:`src.lab.sweeper.Composer` of the configs `python -m src.train <overrides>` would run (with
    `cfg.hydra`), inside Hydra's initialisation for conf/: every config with the same group choices shares one
    composition. The pre-flight check's, and the gradient check's for a suite of nets."""
    from hydra import initialize_config_dir

    from src.lab.config import register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield _composer()


def _composer() -> Any:
    """Hydra's composition of a job's config (with `cfg.hydra`), once per distinct set of group choices: a sweep of
    21 seeds composed 21 times (~0.3 s each, on top of Hydra's own two per job). Inside `initialize_config_dir`."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    from src.lab.sweeper import Composer

    return Composer(GlobalHydra.instance().config_loader(),
                    lambda ov: hydra_compose(config_name="config", overrides=ov, return_hydra_config=True))


def _check_one(overrides: list[str], seen: dict[str, Any], multirun: bool, composer: Any) -> Any:
    """Compose one job's config and check everything about it that can fail later; return the config."""
    from src.lab import build, memory
    from src.lab.tracking import check_store, resolve_uri

    try:
        cfg = composer.config(overrides)
        _resolve_all(cfg)
    except Exception as exc:  # noqa: BLE001 - every composition error becomes one line
        raise PreflightError(one_line(exc)) from exc
    _check_keys(cfg)
    validate(cfg)
    _check_hydra(cfg, multirun)
    key = f"{cfg.data.name}|{cfg.data.dir}|{cfg.data.shift}|{cfg.data.scale}|{cfg.data.standardize}"
    if key not in seen:
        seen[key] = build.load_dataset(cfg)  # the file, and the preprocessing's magnitudes
    ds = seen[key]
    try:
        memory.check(cfg, build.layer_sizes(cfg, ds), {s: len(getattr(ds, f"y_{s}")) for s in ("train", "val", "test")})
    except memory.MemoryLimitError as exc:
        raise PreflightError(str(exc)) from None
    uri = resolve_uri(cfg.tracking.uri)
    if cfg.tracking.enabled and f"uri|{uri}" not in seen:
        seen[f"uri|{uri}"] = True
        check_store(uri)
    return cfg


def _resolve_all(cfg: Any) -> None:
    """Every interpolation resolves and no value is left `???` (missing): these failed inside the job."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    for key in cfg:
        if key != "hydra":
            value = cfg[key]  # a missing scalar raises here
            if isinstance(value, DictConfig | ListConfig):
                OmegaConf.to_container(value, resolve=True, throw_on_missing=True)


def _check_keys(cfg: Any) -> None:
    """Every key is in the schema, at any depth: `+train.lrate=0.5` (a typo with `+`) was silently ignored."""
    from omegaconf import DictConfig

    def walk(node: Any, schema: Any, path: str) -> None:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        for k in node:
            if not path and k in ROOT_EXTRA_KEYS:
                continue
            if k not in fields:
                where = path.rstrip(".") or "the root"
                raise PreflightError(f"unknown key {path + str(k)!r} (added with +?); valid keys under {where}: "
                                     f"{', '.join(fields)}")
            f = fields[k]
            sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(sub) and isinstance(node._get_node(k), DictConfig):
                walk(node[k], type(sub), f"{path}{k}.")

    walk(cfg, Config, "")


def _check_hydra(cfg: Any, multirun: bool) -> None:
    """Hydra's own keys that otherwise fail after work has started: the launcher's worker count, the vectorized
    sweeper's counts and the output folders (job folders, `results_dir`)."""
    from src.files import OutputPathError, check_output_dir

    launcher = cfg.hydra.get("launcher") or {}
    n_jobs = launcher.get("n_jobs") if hasattr(launcher, "get") else None
    if n_jobs is not None:
        cpus = os.cpu_count() or 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -cpus:
            raise PreflightError(f"hydra.launcher.n_jobs={n_jobs!r} is invalid; valid: an integer >= 1 (workers), "
                                 f"or -1 .. -{cpus} (all CPUs, all but one, ...)")
    sweeper = cfg.hydra.get("sweeper") or {}
    if multirun and str(sweeper.get("_target_", "")).endswith(".VectorizedSweeper"):
        from src.lab.sweeper import MAX_REPLICAS, counts

        try:
            counts(sweeper.get("max_replicas", MAX_REPLICAS), sweeper.get("min_jobs"))
        except ValueError as exc:
            raise PreflightError(str(exc)) from None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    sweep_dir = str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("dir"))  # as written, unresolved
    if multirun and "${hydra:" in sweep_dir:
        raise PreflightError(f"hydra.sweep.dir={sweep_dir}: Hydra names the sweep folder before any job exists, so "
                             "it cannot use ${hydra:...} (Hydra fails with 'HydraConfig was not set'); each job's own "
                             "folder is hydra.sweep.subdir")
    hydra_node = HydraConfig.instance().cfg
    if not multirun:  # a single run's folder may use ${hydra:job.name} & co: Hydra resolves it with the job's node
        HydraConfig.instance().set_config(cfg)
    try:
        folders = {"hydra.sweep.dir": cfg.hydra.sweep.dir} if multirun else {"hydra.run.dir": cfg.hydra.run.dir}
        if multirun and cfg.get("results_dir"):
            folders["results_dir"] = cfg.results_dir
    except Exception as exc:  # noqa: BLE001 - an interpolation in a folder's name that does not resolve
        raise PreflightError(one_line(exc)) from exc
    finally:  # Hydra sets the job's own node when the app runs; a caller's (tests, notebooks) is left as it was
        HydraConfig.instance().cfg = hydra_node
    for key, folder in folders.items():
        try:
            check_output_dir(str(folder), key=key)
        except OutputPathError as exc:
            raise PreflightError(str(exc)) from None


def check(argv: list[str]) -> int:
    """Validate every job the command line asks for; return how many jobs it will run."""
    overrides, multirun, skip = split_argv(argv)
    if skip:
        return 0
    try:
        fixed, sweeps = _expand(overrides)
    except Exception as exc:  # noqa: BLE001 - grammar errors
        raise PreflightError(one_line(exc)) from exc
    if sweeps and not multirun:
        key = next(iter(sweeps))
        raise PreflightError(f"{key} has several values ({', '.join(v.split('=', 1)[1] for v in sweeps[key])}) "
                             "but this is a single run; add -m/--multirun to sweep")
    _check_config_name(argv)
    with composing() as composer:
        total = _check_all(fixed, sweeps, multirun, composer)
    if multirun:
        from src.lab.sweeper import hand_over

        hand_over(composer)  # the sweeper reuses what matches its own config sources
    return total


def _check_all(fixed: list[str], sweeps: dict[str, list[str]], multirun: bool, composer: Any) -> int:
    seen: dict[str, Any] = {}
    first = fixed + [vals[0] for vals in sweeps.values()]
    base = _check_one(first, seen, multirun, composer)
    if multirun:
        preset = base.hydra.sweeper.get("params") or {}
        preset_ov = [f"{k}={v}" for k, v in preset.items() if k not in sweeps and f"{k}=" not in " ".join(fixed)]
        _, preset_sweeps = _expand(preset_ov)
        for k, vals in preset_sweeps.items():
            sweeps.setdefault(k, vals)
        fixed += [f"{k}={v}" for k, v in preset.items() if k not in sweeps]
        if preset_sweeps:  # the preset's first values too (`clip=none`): its first job was checked without them
            _check_one(fixed + [vals[0] for vals in sweeps.values()], seen, multirun, composer)
    # Each value of each swept key, with the others at their first value: catches every bad value with
    # sum(len) compositions instead of prod(len).
    n_compose = 0
    for key, vals in sweeps.items():
        others = [v[0] for k, v in sweeps.items() if k != key]
        for val in vals[1:] if multirun else []:
            if n_compose >= MAX_COMPOSE:
                break
            _check_one(fixed + others + [val], seen, multirun, composer)
            n_compose += 1
    total = 1
    for vals in sweeps.values():
        total *= len(vals)
    return total


def _check_config_name(argv: list[str]) -> None:
    """`--config-name`/`-cn` names a config of conf/, and `--config-path`/`--config-dir` an existing folder (the
    pre-flight check composes conf/config; another primary config is not checked further)."""
    it = iter(argv)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag not in ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"):
            continue
        value = value if eq else next(it, "")
        if flag in ("-cn", "--config-name"):
            names = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
            if value.removesuffix(".yaml") not in names:
                raise PreflightError(f"--config-name={value!r} is not a config of {CONF_DIR}; valid: "
                                     f"{', '.join(names)}")
        elif not Path(CONF_DIR.parent / "src" / value if flag in ("-cp", "--config-path") and not
                      Path(value).is_absolute() else value).is_dir():
            raise PreflightError(f"{flag} {value!r} is not a folder")


def preflight(argv: list[str]) -> None:
    """Run :func:`check`; on a bad input print `nnlab: error: <one line>` and exit 2."""
    from src.data import DatasetError
    from src.lab.tracking import TrackingError

    if os.environ.get("NNLAB_SKIP_PREFLIGHT"):
        return
    try:
        total = check(argv)
    except (ConfigError, DatasetError, TrackingError) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"nnlab: error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    if total > 1:
        os.environ["NNLAB_SWEEP_TOTAL"] = str(total)


__all__ = ["check", "compose", "one_line", "preflight", "split_argv", "PreflightError"]
