"""`hydra/sweeper=vectorized`: Hydra's basic sweeper, with configs that differ only in per-replica numbers packed.

Why a sweeper: it is the one place that sees the whole grid before any job starts, and it works with every
launcher (basic, joblib, submitit, ray): packing happens before launching, the launcher just runs fewer,
bigger jobs. It composes each config of the cartesian product (as the basic sweeper already does to validate
them), groups those equal everywhere except at `src.lab.packing.PACKABLE` paths, and launches one job per group
(groups split by configs when the launcher has more workers than groups: `packing.spread`) with `+pack='<json>'`
and its own job folder `pack<g>`; the job (src/lab/packing.py) writes each config's records
under `<sweep dir>/<config index>/`, so `runs.csv`, the leaderboard and MLflow look as if every config had
been a job of its own.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from src.lab import packing

log = logging.getLogger(__name__)


def replicas_per_config(cfg: dict[str, Any]) -> int:
    """How many replicas one config adds to a pack: its seeds, and with `tune.enabled` its lrs × tuning seeds and
    the report seeds at the chosen lr (src/lab/tuning.py; the larger of its two fits counts)."""
    seeds = int(cfg["train"]["seeds"])
    tune = cfg.get("tune") or {}
    if not tune.get("enabled"):
        return seeds
    return len(tune.get("lrs") or []) * int(tune.get("seeds", 1)) + seeds


class Composer:
    """Configs composed by Hydra once per distinct set of config-group choices (`init=he`, `optimizer=adam`, `+x=`,
    `~x`, `hydra...`), with the value overrides applied to a copy of that, by the very call Hydra's own composition
    makes for them (`OmegaConf.update(cfg, key, value, merge=True)`).

    Why: a full Hydra composition costs ~0.1-0.3 s; a grid of 1,000 configs spent minutes composing before the
    first job started, although 10 learning rates x 10 inits x ... needs only as many compositions as it has
    distinct group choices (here 10 x 2 x 5). A value override Hydra would refuse falls back to the full
    composition, which then raises Hydra's own error. Two users: the vectorized sweeper groups a grid's configs
    (:meth:`for_sweep`, no `hydra` node), the pre-flight check validates every swept value (src/lab/preflight.py;
    what it reads of the `hydra` node, the launcher and the output folders, is not changed by a value override).

    `full(overrides)` is the full composition; `reuse`: compositions without `hydra` by their group choices
    alone (:meth:`choices`), used instead of composing (the pre-flight's, handed to the sweeper)."""

    def __init__(self, loader: Any, full: Callable[[list[str]], Any],
                 reuse: dict[frozenset[str], Any] | None = None) -> None:
        self.full = full
        self.parser = OverridesParser.create(config_loader=loader)
        self.groups = _top_level_groups(loader)
        self.reuse = reuse or {}
        self._base: dict[tuple[str, ...], Any] = {}

    @classmethod
    def for_sweep(cls, loader: Any, master: Any) -> Composer:
        """The sweeper's: each job's config as `loader.load_sweep_config(master, overrides)` has it, without `hydra`;
        what the same command's pre-flight check composed is reused (:func:`take_handed_over`)."""
        def full(overrides: list[str]) -> Any:
            composed = loader.load_sweep_config(master, overrides)
            with open_dict(composed):
                del composed["hydra"]
            return composed

        return cls(loader, full, take_handed_over(master))

    def choices(self, structural: tuple[str, ...]) -> frozenset[str] | None:
        """The plain top-level group choices of `structural` when everything else in it is Hydra's own
        (`hydra.*`, `hydra/...`: they change only the `hydra` node), else None. Why a set: Hydra applies group
        choices by group, so their order does not matter (the pre-flight lists the command line first, the
        sweeper the preset's swept groups first)."""
        kept = []
        for text in structural:
            o = self.parser.parse_override(text)
            key = o.key_or_group
            if key == "hydra" or key.startswith(("hydra.", "hydra/")):
                continue
            if o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override() or o.package is not None \
                    or key not in self.groups:
                return None
            kept.append(text)
        return frozenset(kept)

    def by_choices(self) -> dict[frozenset[str], Any]:
        """The compositions made so far whose overrides were group choices alone (and Hydra's own keys)."""
        return {c: cfg for key, cfg in self._base.items() if (c := self.choices(key)) is not None}

    def config(self, overrides: list[str]) -> Any:
        """The composed DictConfig of `overrides` (the caller's own copy)."""
        structural, values = [], []
        for text in overrides:
            o = self.parser.parse_override(text)
            plain = not (o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override())
            key = o.key_or_group
            if plain and o.package is None and key not in self.groups and not key.startswith("hydra") \
                    and "/" not in key:
                values.append((key, o.value()))
            else:
                structural.append(text)
        base_key = tuple(structural)
        if base_key not in self._base:
            choices = self.choices(base_key) if self.reuse else None
            reused = self.reuse.get(choices) if choices is not None else None
            self._base[base_key] = reused if reused is not None else self.full(structural)
        cfg = copy.deepcopy(self._base[base_key])
        try:
            for key, value in values:
                OmegaConf.update(cfg, key, value, merge=True)
        except Exception:  # noqa: BLE001 - Hydra's own composition says what is wrong with it
            cfg = self.full(overrides)
        return cfg

    def __call__(self, overrides: list[str]) -> dict[str, Any]:
        """The config as a plain dict, interpolations kept (what the sweeper groups and packs)."""
        d = OmegaConf.to_container(self.config(overrides), resolve=False)
        assert isinstance(d, dict)
        return d


_HANDED_OVER: dict[str, Any] = {}  # the pre-flight check's compositions, for the sweeper of the same command


def hand_over(composer: Composer) -> None:
    """Keep what the pre-flight check composed (`composer`, configs with `hydra`) for the sweeper that runs next in
    this process: the vectorized sweeper composed every group choice of a sweep again (10 inits: 10 compositions
    of ~0.1 s each, twice per `python -m src.train -m`). Only compositions of group choices alone are kept."""
    _HANDED_OVER.clear()
    configs = {}
    for choices, cfg in composer.by_choices().items():
        if "hydra" in cfg:
            _HANDED_OVER.setdefault("sources", _sources(cfg))
            bare = copy.deepcopy(cfg)
            with open_dict(bare):
                del bare["hydra"]
            configs[choices] = bare
    _HANDED_OVER["configs"] = configs


def take_handed_over(master: Any) -> dict[frozenset[str], Any]:
    """The pre-flight check's compositions (:func:`hand_over`), once, if they were composed from the same config
    sources as `master` (the app's primary config and search path: `--config-dir`, `--config-name` or a test's
    own conf/ change them), else {}. Each equals Hydra's own composition without `hydra`: the non-`hydra` part of a
    config does not depend on the run mode or on Hydra's own overrides (tested for every preset)."""
    handed = dict(_HANDED_OVER)
    _HANDED_OVER.clear()
    if not handed.get("configs") or handed.get("sources") != _sources(master):
        return {}
    return handed["configs"]


def _sources(cfg: Any) -> Any:
    """What a config was composed from: its primary config's name and every config source (provider, path)."""
    hydra = cfg.get("hydra") or {}
    runtime, job = hydra.get("runtime") or {}, hydra.get("job") or {}
    return (job.get("config_name"), [(s.get("provider"), s.get("schema"), s.get("path"))
                                     for s in runtime.get("config_sources") or []])


def _top_level_groups(loader: Any) -> set[str]:
    """The config groups at the top of the search path (`init`, `optimizer`, `hydra`, ...): an override of one
    is a choice, not a value.

    Only the top level: a nested group's override has a "/" in its key (`hydra/launcher=joblib`) and is treated
    as a choice for that reason alone (a dotted key is always a value). One `list_groups` call (~10 ms); walking
    every nested group took 17 calls and ~0.3 s, paid twice by every `python -m src.train -m` (the pre-flight's
    Composer and the sweeper's)."""
    return set(loader.list_groups(""))


def _count(name: str, value: Any, alternative: str = "") -> int:
    """`value` as an int >= 1, else a one-line error naming the sweeper parameter and what it accepts."""
    try:
        n = int(value)
        ok = n >= 1 and n == value and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"hydra.sweeper.{name} must be an integer >= 1{' ' + alternative if alternative else ''}, "
                         f"got {value!r}")
    return n


MAX_REPLICAS = 1024  # the sweeper's default cap on a pack's replicas (conf/hydra/sweeper/vectorized.yaml)


def counts(max_replicas: Any, min_jobs: Any) -> tuple[int, int | None]:
    """The sweeper's two counts, checked (the pre-flight calls this too, before any job starts)."""
    return _count("max_replicas", max_replicas), None if min_jobs is None else _count("min_jobs", min_jobs, "or null")


class VectorizedSweeper(BasicSweeper):
    """Cartesian product like BasicSweeper; configs differing only at PACKABLE paths share one job."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 max_replicas: int = MAX_REPLICAS, min_jobs: int | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_replicas, self.min_jobs = counts(max_replicas, min_jobs)

    def workers(self) -> int:
        """How many jobs the launcher runs at once, i.e. how many packs keep it busy: `min_jobs` when set (e.g. a
        SLURM array), else the joblib launcher's `n_jobs` (at most the usable cores; joblib's -1 is every core,
        -2 all but one), else 1 (Hydra's basic launcher runs one job at a time)."""
        if self.min_jobs is not None:
            return self.min_jobs
        assert self.config is not None
        n_jobs = OmegaConf.select(self.config, "hydra.launcher.n_jobs", default=None)
        if n_jobs is None:
            return 1
        from joblib import effective_n_jobs  # joblib's reading of n_jobs (-1 = every core, ...)

        from src.lab.config import cores

        return cores(effective_n_jobs(int(n_jobs)))

    def plan(self, arguments: list[str]) -> list[list[str]]:
        """The job override lists: one per pack (each with `+pack=...` and `hydra.sweep.subdir=pack<g>`)."""
        assert self.config is not None and self.hydra_context is not None
        params_conf = self._parse_config()
        params_conf.extend(arguments)
        loader = self.hydra_context.config_loader
        overrides = OverridesParser.create(config_loader=loader).parse_overrides(params_conf)
        jobs = self.split_arguments(overrides, None)[0]
        compose = Composer.for_sweep(loader, self.config)
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, ov in enumerate(jobs):
            d = compose(list(ov))
            key = packing.group_key(d)
            groups.setdefault(key if key is not None else f"alone:{i}", []).append((i, d))
        packs: list[list[tuple[int, dict[str, Any]]]] = []
        for members in groups.values():
            per_job = max(1, self.max_replicas // max(replicas_per_config(members[0][1]), 1))
            packs += [members[s:s + per_job] for s in range(0, len(members), per_job)]
        batch: list[list[str]] = []
        for chunk in packing.spread(packs, self.workers()):
            entries = [packing.pack_entry(i, jobs[i], d) for i, d in chunk]
            batch.append([*jobs[chunk[0][0]], packing.encode(entries), f"hydra.sweep.subdir=pack{len(batch)}"])
        log.info(f"vectorized sweeper: {len(jobs)} configs in {len(batch)} jobs")
        print(f"[vectorized] {len(jobs)} configs packed into {len(batch)} jobs", flush=True)
        return batch

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        batch = self.plan(arguments)
        self.overrides = [batch]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.batch_index = 1
        try:
            results = self.launcher.launch(batch, initial_job_idx=0)
        except BrokenExecutor as exc:  # a worker died: signals.protect_neighbours already said why, in one line
            from src.lab.sweep import SweepAborted

            raise SweepAborted(str(exc).removeprefix("nnlab: error: ")) from exc
        for r in results:
            _ = r.return_value  # re-raises a job's exception, as the basic sweeper does
        return [results]
