"""Check a whole run or sweep before Hydra starts it: every bad input fails at once, in one line.

Why: Hydra reports a bad override as a multi-line message with its search path, and a bad value inside a
sweep list (`train.lr=0.1,abc`) only fails after the sweep has started (leaving an orphan parent run).
Here every value of every swept key -- on the command line or in a preset's `hydra.sweeper.params` -- is
composed with Hydra's own compose API, type-checked by the schema, range-checked by `config.validate`,
and its dataset file is opened; the tracking server is pinged. Only then does the real Hydra app run.
`HYDRA_FULL_ERROR=1` re-raises the original exception with its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

from src.lab.config import Config, ConfigError, validate

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_SKIP_FLAGS = {"-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg", "--shell-completion", "-sc",
               "--version", "-p", "--package", "--resolve"}
_ARG_FLAGS = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-c", "--cfg",
              "-p", "--package", "-i", "--info", "-sc", "--shell-completion", "--experimental-rerun"}
ROOT_EXTRA_KEYS = {"hydra"}
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
            try:
                sweeps[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
            except Exception:  # noqa: BLE001 - interval sweeps (optuna) have no finite list
                continue
        else:
            fixed.append(ov.input_line or f"{key}={ov.get_value_element_as_str()}")
    return fixed, sweeps


def compose(overrides: list[str]) -> Any:
    """The config `python -m src.train <overrides>` would run, with Hydra's own node (`cfg.hydra`), unvalidated.

    Hydra's compose API, as the app composes; used by the pre-flight check, the gradient check and the tests.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.lab.config import register

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)


def _check_one(overrides: list[str], seen_data: set[tuple[str, str]]) -> Any:
    from src import data
    from src.lab.tracking import check_reachable, resolve_uri

    try:
        cfg = compose(overrides)
    except Exception as exc:  # noqa: BLE001 - every composition error becomes one line
        raise PreflightError(one_line(exc)) from exc
    extra = set(cfg.keys()) - {f.name for f in dataclasses.fields(Config)} - ROOT_EXTRA_KEYS
    if extra:
        valid = ", ".join(f.name for f in dataclasses.fields(Config))
        raise PreflightError(f"unknown key {sorted(extra)[0]!r}; valid top-level keys: {valid}")
    validate(cfg)
    key = (str(cfg.data.name), str(cfg.data.dir))
    if key not in seen_data:
        seen_data.add(key)
        data.load(cfg.data.name, cfg.data.dir)
        if cfg.tracking.enabled:
            check_reachable(resolve_uri(cfg.tracking.uri))
    return cfg


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
    seen: set[tuple[str, str]] = set()
    first = fixed + [vals[0] for vals in sweeps.values()]
    base = _check_one(first, seen)
    if multirun:
        preset = base.hydra.sweeper.get("params") or {}
        preset_ov = [f"{k}={v}" for k, v in preset.items() if k not in sweeps and f"{k}=" not in " ".join(fixed)]
        _, preset_sweeps = _expand(preset_ov)
        for k, vals in preset_sweeps.items():
            sweeps.setdefault(k, vals)
        fixed += [f"{k}={v}" for k, v in preset.items() if k not in sweeps]
    # Each value of each swept key, with the others at their first value: catches every bad value with
    # sum(len) compositions instead of prod(len).
    n_compose = 0
    for key, vals in sweeps.items():
        others = [v[0] for k, v in sweeps.items() if k != key]
        for val in vals[1:] if multirun else []:
            if n_compose >= MAX_COMPOSE:
                break
            _check_one(fixed + others + [val], seen)
            n_compose += 1
    total = 1
    for vals in sweeps.values():
        total *= len(vals)
    return total


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
