"""Grid vectorisation: train several configs of a sweep as ONE replica-batched net, record each config apart.

Why: a grid's configs often differ only in numbers the maths already takes per replica -- the initializer and
its scale, the learning rate, clipping thresholds, patience, L2, the seed. Training them as separate jobs pays
Python, Hydra and process overhead once per config; packed, n configs × S seeds are one net of R = n·S
replicas trained by one `loop.fit` (R=32 costs ~4x less per replica than R=1, see benchmarks/bench.py).
Replica r of the packed net uses exactly the seed, initializer, learning rate, thresholds and patience it
would have used alone, so each config's numbers are the same as an unpacked run's (tests/test_vectorize.py
checks it to 1e-12); what is shared is only the wall time, reported per config as the job's time / n.

Flow: `src.lab.sweeper.VectorizedSweeper` (`hydra/sweeper=vectorized`) composes every config of the grid, groups
the ones that differ only at PACKABLE paths, and launches one job per group with `+pack='<base64 json>'`: one entry
per config with its sweep index, its overrides and its values at the packable paths. The Hydra entry
(`src/train.py`) hands such a job to :func:`run_packed`, which fits once, splits the FitResult per config and
records each config through `src.lab.job.run_job` with the trained slice, so every config gets the ordinary MLflow
child run, `result.json` (in `<sweep dir>/<index>/`) and runs.csv row, through the very same code as an unpacked
job. This module uses `src.lab.job`; the job never imports this module.

Differences from unpacked runs, on purpose: a config's history is cut at its last active epoch (the packed
loop runs until every config has stopped); activation-histogram bin edges are shared by the whole pack.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from src.lab import drawing
from src.lab.replicas import split_result, subnet

# Leaf paths whose values may differ inside one pack: the maths takes each of them per replica (the sweeper still
# packs each patience apart, see group_key; build_packed takes one per replica all the same).
PACKABLE: tuple[str, ...] = (
    "init.name", "init.std", "init.mean", "init.a", "init.value", "init.gain",
    "train.lr", "train.seed", "train.clip_norm", "train.clip_value", "train.patience", "model.l2",
)
PACK_KEY = "pack"
T = TypeVar("T")


# ----------------------------------------------------------------------------------------- grouping (sweeper)


def _get(d: Mapping[str, Any], path: str) -> Any:
    node: Any = d
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def group_key(cfg: Mapping[str, Any]) -> str | None:
    """What must be equal for two configs to share a pack (None: never packed, e.g. the course's fixed init)."""
    if _get(cfg, "init.course"):
        return None
    d = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("hydra", PACK_KEY)})
    # Each patience (none included) gets packs of its own: a packed loop runs until its last replica stops, so
    # stopped replicas would ride along (frozen, but still computed) for the rest of the epochs. Measured: on the
    # default grid, mixing stopping and non-stopping configs made the packed fits no faster than separate jobs;
    # s5_early's patience 5/20/100 stop at ~100/250/1050 epochs, and as one pack computed 30 replicas to epoch
    # 1060 (31,800 replica-epochs for 14,030 used): one pack per patience took the stage 14.0 s -> 11.1 s.
    d["_patience"] = _get(cfg, "train.patience")
    for path in PACKABLE:
        *parents, leaf = path.split(".")
        node = d
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(d, sort_keys=True, default=str)


def spread(packs: list[list[T]], workers: int) -> list[list[T]]:
    """The packs, split (by configs, in order, into near-equal parts) so that there are at least `workers` of them,
    unless every pack is a single config by then.

    Why: a pack is one process's work. A grid that packs into fewer jobs than the launcher runs at once leaves
    workers idle: s1_init's 10 inits are one pack, and on two joblib workers it took 22.0 s; as two packs of 5
    inits, 16.2 s, with the same metrics, replicas and tuning tables (byte for byte: a replica computes the same
    numbers whichever pack holds it). Each extra part goes to the pack with the most configs per part, so 10
    configs on 3 workers are 4 + 3 + 3, not 5 + 3 + 2. Nothing is split for a launcher that runs one job at a time.
    """
    parts = [1] * len(packs)
    while packs and sum(parts) < workers:
        k = max(range(len(packs)), key=lambda i: len(packs[i]) / parts[i])
        if len(packs[k]) <= parts[k]:
            break  # the fullest part holds one config: so does every part
        parts[k] += 1
    out: list[list[T]] = []
    for pack, n in zip(packs, parts, strict=True):
        size, extra = divmod(len(pack), n)
        start = 0
        for j in range(n):
            stop = start + size + (j < extra)
            out.append(list(pack[start:stop]))
            start = stop
    return out


def pack_entry(num: int, overrides: list[str], cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"num": int(num), "overrides": list(overrides), "set": {p: _get(cfg, p) for p in PACKABLE}}


def encode(entries: list[dict[str, Any]]) -> str:
    """The `+pack=` override: the entries as JSON, base64url-encoded inside Hydra quotes (Hydra's own override
    strings carry backslash escapes such as `sqlite\\:///...`, which its quoted-string grammar would rewrite)."""
    text = base64.urlsafe_b64encode(json.dumps(entries, separators=(",", ":")).encode()).decode()
    return f"+{PACK_KEY}='{text}'"


def decode(value: str) -> list[dict[str, Any]]:
    value = value.strip()
    return json.loads(value if value.startswith("[") else base64.urlsafe_b64decode(value.encode()).decode())


# ------------------------------------------------------------------------------------------- the packed job


def sub_configs(cfg: DictConfig) -> tuple[list[dict[str, Any]], list[DictConfig]]:
    """The pack's entries and one full config per entry (the job's config with the entry's packed values)."""
    entries = decode(str(cfg[PACK_KEY]))
    base = copy.deepcopy(cfg)
    with open_dict(base):
        del base[PACK_KEY]
    subs = []
    for e in entries:
        sub = copy.deepcopy(base)
        for path, value in e["set"].items():
            OmegaConf.update(sub, path, value, merge=False)
        subs.append(sub)
    return entries, subs


def run_packed(cfg: DictConfig) -> float:
    """Fit every config of `cfg.pack` at once, then record each through `src.lab.job.run_job`."""
    from src.lab import job

    entries, subs = sub_configs(cfg)
    left_out = _left_out(cfg, subs)
    todo = [k for k in range(len(subs)) if k not in left_out]
    trained = _fit_pack(subs, todo) if todo else {}
    ctx = job.context()
    sweep_dir: Path = ctx.sweep_dir or ctx.out_dir
    losses, interrupted = [], False
    _draw_ahead(subs, entries, trained, sweep_dir)
    try:
        for k, (e, sub) in enumerate(zip(entries, subs, strict=True)):
            sub_ctx = job.JobContext(out_dir=sweep_dir / str(e["num"]), multirun=True, overrides=e["overrides"],
                                     num=e["num"], sweep_dir=ctx.sweep_dir)
            try:
                losses.append(job.run_job(sub, ctx=sub_ctx, trained=trained.get(k)))
            except KeyboardInterrupt:
                interrupted = True  # record the others (as killed) before stopping the sweep
    finally:
        drawing.finish()
    if interrupted:
        raise KeyboardInterrupt
    finite = [v for v in losses if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _draw_ahead(subs: list[DictConfig], entries: list[dict[str, Any]], trained: dict[int, Any],
                sweep_dir: Path) -> None:
    """Hand the figures of the trained configs that will log artifacts to a forked helper (src/lab/drawing.py)."""
    from src.lab.artifacts import draw_figures, figures_of
    from src.lab.build import load_dataset
    from src.lab.config import to_container

    todo = [k for k, got in trained.items() if not isinstance(got, BaseException)
            and subs[k].tracking.enabled and subs[k].tracking.artifacts]
    if len(todo) < 2:
        return
    ds = load_dataset(subs[todo[0]])  # a pack shares its data (data.* is never a packable path)
    items = []
    for k in sorted(todo):
        art = sweep_dir / str(entries[k]["num"]) / "artifacts"  # where src.lab.job writes the config's artifacts
        result, net = trained[k][:2]
        items.append((art, functools.partial(draw_figures, art, figures_of(to_container(subs[k])), result, net, ds)))
    drawing.start(items)


def _left_out(cfg: DictConfig, subs: list[DictConfig]) -> set[int]:
    """Configs the shared fit leaves out: invalid ones, and (`resume=true`) those already done; `run_job` still
    records each of them (as failed, or as resumed)."""
    from src.lab import job
    from src.lab.config import ConfigError, to_container, validate
    from src.lab.records import config_hash, resume_key
    from src.lab.tracking import Tracker, resolve_uri

    bad: set[int] = set()
    for k, sub in enumerate(subs):
        try:
            validate(sub)
        except (ConfigError, ValueError):
            bad.add(k)
    if cfg.get("resume", False) and cfg.tracking.enabled:
        from src.lab.build import load_dataset

        tracker = Tracker(resolve_uri(cfg.tracking.uri), cfg.tracking.experiment or cfg.study)
        digest = load_dataset(subs[0]).digest()  # a pack shares its data (data.* is never a packable path)
        bad |= {k for k in range(len(subs)) if k not in bad and job.find_done(
            tracker, resume_key(config_hash(to_container(subs[k])), digest)) is not None}
    return bad


def _fit_pack(subs: list[DictConfig], todo: list[int]) -> dict[int, Any]:
    """Fit configs `todo` of `subs` as one net: {config: (its FitResult slice, its subnet)}, or {config: the
    exception} for every config when the shared fit fails (each is then recorded as failed). With `tune.enabled`
    the pack is tuned (src/lab/tuning.py: two fits) and each config also gets its tuning outcome."""
    from src.lab.build import build_packed, load_dataset
    from src.lab.job import train

    t0 = time.perf_counter()
    trained: dict[int, Any] = {}
    base = subs[todo[0]]
    tuned = bool(base.tune.enabled)
    try:
        ds = load_dataset(base)
        if tuned:
            from src.lab.tuning import fit_tuned

            for k, got in zip(todo, fit_tuned([subs[k] for k in todo], ds, train), strict=True):
                trained[k] = got
        else:
            built = build_packed([subs[k] for k in todo], ds)
            result = train(built)
            S = int(base.train.seeds)
            for j, k in enumerate(todo):
                sl = slice(j * S, (j + 1) * S)
                trained[k] = (split_result(result, sl, len(todo)), subnet(built.net, sl))
    except Exception as exc:  # noqa: BLE001 - every config of the pack is recorded as failed by run_job
        trained = {k: exc for k in todo}
    what = (f"tuned over {len(base.tune.lrs)} lrs × {int(base.tune.seeds)} seeds, then " if tuned else "")
    print(f"packed job: {len(todo)} configs × {int(base.train.seeds)} seeds, {what}in "
          f"{'two fits' if tuned else 'one fit'}, {time.perf_counter() - t0:.1f}s", flush=True)
    return trained
