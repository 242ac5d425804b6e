"""Learning-rate tuning on the replica axis: every arm of a grid over a log grid of lrs, in the same packed fits.

Why (SPEC "Protocol for comparisons"; Choi et al. 2019, Sivaprasad et al. 2020, Schmidt et al. 2021): ranking
optimizers or initializers at one shared learning rate mostly ranks how well that lr suits each arm. The fair
comparison puts every arm at its own best lr, chosen on VALIDATION data, and reports it on seeds that took no part
in choosing it (choosing and reporting on the same seeds is optimistically biased).

Two stages, both on the replica axis (the lr is a per-replica number of every update rule in src/nn):
  1. one fit holding, per arm, `tune.lrs` × `tune.seeds` tuning replicas (seeds `tune.seed`, `tune.seed + 1`, ...)
     and the arm at its configured `train.lr` on its report seeds (`train.seed` ... `train.seed + train.seeds - 1`):
     exactly the replicas an untuned run trains, so the shared-lr view IS the untuned result, number for number;
  2. one fit holding, per arm whose chosen lr is not `train.lr`, the chosen lr on the same report seeds (an arm
     whose chosen lr is `train.lr` reuses its stage-1 report replicas: same lr, same seeds, same numbers).
Per arm that is L·T + S (+ S) replicas in two fits instead of S in one; a pack of n arms stays one net per stage.

Selection (:func:`choose`): the lr with the highest mean validation accuracy over the tuning seeds, a diverged
replica scoring chance; ties go to the lower mean validation loss (any diverged replica: +inf), then the smaller
lr. Test data play no part. The chosen lr is flagged `at_edge` when it is an end of the grid and strictly better
than its neighbour: the best lr may then lie outside the grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.lab.loop import SPLITS, FitResult
from src.lab.stats import score, summary

GRID, SHARED, TUNED = "grid", "shared", "tuned"  # a replica's role
TUNE_STAGE, REPORT_STAGE = "tune", "report"


@dataclass(frozen=True)
class Block:
    """Consecutive replicas of one fit: arm `arm` at learning rate `lr` on `seeds`, starting at replica `start`."""

    arm: int
    role: str
    lr: float
    seeds: tuple[int, ...]
    start: int = 0

    @property
    def sl(self) -> slice:
        return slice(self.start, self.start + len(self.seeds))

    @property
    def stage(self) -> str:
        return TUNE_STAGE if self.role == GRID else REPORT_STAGE


def _placed(blocks: list[Block]) -> list[Block]:
    out, at = [], 0
    for b in blocks:
        out.append(Block(b.arm, b.role, b.lr, b.seeds, at))
        at += len(b.seeds)
    return out


def report_seeds(cfg: Any) -> tuple[int, ...]:
    return tuple(range(int(cfg.train.seed), int(cfg.train.seed) + int(cfg.train.seeds)))


def tuning_seeds(cfg: Any) -> tuple[int, ...]:
    return tuple(range(int(cfg.tune.seed), int(cfg.tune.seed) + int(cfg.tune.seeds)))


def stage1(cfgs: Sequence[Any]) -> list[Block]:
    """Per arm: each lr of its `tune.lrs` on the tuning seeds, then its `train.lr` on its report seeds."""
    blocks = []
    for arm, c in enumerate(cfgs):
        blocks += [Block(arm, GRID, float(lr), tuning_seeds(c)) for lr in c.tune.lrs]
        blocks.append(Block(arm, SHARED, float(c.train.lr), report_seeds(c)))
    return _placed(blocks)


def stage2(cfgs: Sequence[Any], chosen: dict[int, float]) -> list[Block]:
    """Per arm whose chosen lr is not its `train.lr`: the chosen lr on its report seeds."""
    return _placed([Block(arm, TUNED, lr, report_seeds(cfgs[arm])) for arm, lr in sorted(chosen.items())
                    if not math.isclose(lr, float(cfgs[arm].train.lr), rel_tol=1e-12)])


# ----------------------------------------------------------------------------------------------- selection


@dataclass
class LrRow:
    """One lr of an arm's tuning stage: means and 95% CIs over its tuning seeds."""

    lr: float
    val_acc: float  # diverged replicas score chance
    val_acc_ci95: float
    val_loss: float  # over the replicas that did not diverge
    val_loss_ci95: float
    train_loss: float  # the final training loss (same replicas)
    train_loss_ci95: float
    diverged: int
    n: int
    chosen: bool = False


@dataclass
class Choice:
    """An arm's chosen lr and the whole sensitivity table it was chosen from (sorted by lr)."""

    lr: float
    table: list[LrRow]
    at_edge: bool


def choose(blocks: Sequence[Block], result: FitResult, arm: int, chance: float) -> Choice:
    """The arm's lr by the selection rule of the module docstring (validation data only)."""
    rows: list[tuple[LrRow, float]] = []
    for b in blocks:
        if b.arm != arm or b.role != GRID:
            continue
        div = result.diverged[b.sl]
        va = np.array([score(a, d, chance) for a, d in zip(result.final["val_acc"][b.sl], div, strict=True)])
        s_va = summary(va)
        s_vl = summary(np.where(div, np.nan, result.final["val_loss"][b.sl]))
        s_tl = summary(np.where(div, np.nan, result.final["train_loss"][b.sl]))
        tie = math.inf if div.any() or not math.isfinite(s_vl["mean"]) else s_vl["mean"]
        rows.append((LrRow(b.lr, s_va["mean"], s_va["ci95"], s_vl["mean"], s_vl["ci95"], s_tl["mean"],
                           s_tl["ci95"], int(div.sum()), int(div.size)), tie))
    if not rows:
        raise ValueError(f"arm {arm} has no tuning replicas (tune.lrs is empty?)")
    best, _ = min(rows, key=lambda rt: (-rt[0].val_acc, rt[1], rt[0].lr))
    best.chosen = True
    table = sorted((r for r, _ in rows), key=lambda r: r.lr)
    i = table.index(best)
    edge = len(table) > 1 and i in (0, len(table) - 1)
    inner = table[1] if i == 0 else table[-2]
    return Choice(best.lr, table, at_edge=edge and best.val_acc > inner.val_acc)


# --------------------------------------------------------------------------------------------- the outcome


@dataclass
class Outcome:
    """What tuning found for one arm, for its records: the choice, the tuned report result, every replica's row."""

    choice: Choice
    shared_lr: float
    tuned: FitResult  # the report seeds at the chosen lr (the shared-lr result itself when the two lrs agree)
    tuned_net: Any
    replicas: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0  # this arm's share of both fits

    @property
    def reused(self) -> bool:
        return math.isclose(self.choice.lr, self.shared_lr, rel_tol=1e-12)

    def metrics(self) -> dict[str, float]:
        """`tuned_*` headline numbers (mean and CI over the report seeds at the chosen lr) and the tuning table
        as `sensitivity/<metric>/lr_<lr>` (MLflow's metric keys allow no '='), for the arm's MLflow run."""
        from src.lab.records import final_metrics

        m = final_metrics(self.tuned)
        out = {f"tuned_{k}": v for k, v in m.items() if not k.startswith("replica/") and k != "wall_time_s"}
        out.update(tuned_lr=self.choice.lr, tuned_lr_at_edge=float(self.choice.at_edge),
                   tune_lrs=float(len(self.choice.table)), tune_wall_time_s=self.wall_time)
        for r in self.choice.table:
            for k in ("val_acc", "val_loss", "train_loss"):
                out[f"sensitivity/{k}/lr_{r.lr:g}"] = float(getattr(r, k))
        return out

    def series(self) -> dict[str, tuple[list[int], list[float]]]:
        """The sensitivity curve as MLflow metric series, step = the lr's index in the sorted grid:
        `sensitivity/val_acc`, `sensitivity/val_acc_ci95`, `sensitivity/train_loss` and `sensitivity/log10_lr` (pick
        the latter as the x-axis of a chart in the MLflow UI to draw validation accuracy against log10 lr)."""
        steps = list(range(len(self.choice.table)))
        cols = {"val_acc": [r.val_acc for r in self.choice.table],
                "val_acc_ci95": [r.val_acc_ci95 for r in self.choice.table],
                "train_loss": [r.train_loss for r in self.choice.table],
                "log10_lr": [math.log10(r.lr) for r in self.choice.table]}
        return {f"sensitivity/{k}": (steps, [float(v) for v in vals]) for k, vals in cols.items()}

    def table_rows(self) -> list[dict[str, Any]]:
        """The arm's tuning table (one row per lr) for `tuning.csv`."""
        return [{"lr": r.lr, "val_acc": r.val_acc, "val_acc_ci95": r.val_acc_ci95, "val_loss": r.val_loss,
                 "val_loss_ci95": r.val_loss_ci95, "train_loss": r.train_loss, "train_loss_ci95": r.train_loss_ci95,
                 "diverged": r.diverged, "n": r.n, "chosen": int(r.chosen), "at_edge": int(r.chosen and
                                                                                        self.choice.at_edge)}
                for r in self.choice.table]


REPLICA_KEYS = ("stage", "role", "lr", "seed", "diverged", "epochs_used", "best_epoch", "stopped_early",
                *(f"{s}_{m}" for s in SPLITS for m in ("acc", "loss")), "chance")


def replica_rows(result: FitResult, block: Block | None, chance: float, seeds: Sequence[int] | None = None,
                 lr: float | None = None) -> list[dict[str, Any]]:
    """One row per replica of `block` of `result` (or of the whole result, an untuned run's report replicas)."""
    if block is None:
        sl, role, stage = slice(0, result.replicas), SHARED, REPORT_STAGE
        seeds = list(seeds or range(result.replicas))
    else:
        sl, role, stage, seeds, lr = block.sl, block.role, block.stage, list(block.seeds), block.lr
    rows = []
    for j, r in enumerate(range(result.replicas)[sl]):
        row: dict[str, Any] = {"stage": stage, "role": role, "lr": lr, "seed": int(seeds[j]),
                               "diverged": int(bool(result.diverged[r])), "epochs_used": int(result.epochs_used[r]),
                               "best_epoch": int(result.best_epoch[r]), "stopped_early": int(bool(
                                   result.stopped_early[r])), "chance": chance}
        for k, v in result.final.items():
            row[k] = float(v[r])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------- fitting


def fit_tuned(cfgs: Sequence[Any], ds: Any, train: Callable[[Any], FitResult]) -> list[tuple[FitResult, Any, Outcome]]:
    """Tune every arm of `cfgs` (configs of one pack, or a single config): per arm (its shared-lr report result,
    that result's net, its :class:`Outcome`). `train` fits a `src.lab.build.Built` (src.lab.job.train)."""
    from src.lab.build import build_replicas
    from src.lab.replicas import split_result, subnet

    chance = 1.0 / ds.n_classes

    def fit(blocks: list[Block]) -> tuple[FitResult, Any]:
        per = [(cfgs[b.arm], b.lr, s) for b in blocks for s in b.seeds]
        built = build_replicas([p[0] for p in per], [p[1] for p in per], [p[2] for p in per], ds)
        return train(built), built.net

    t0 = time.perf_counter()
    blocks1 = stage1(cfgs)
    res1, net1 = fit(blocks1)
    t1 = time.perf_counter() - t0
    choices = {arm: choose(blocks1, res1, arm, chance) for arm in range(len(cfgs))}
    blocks2 = stage2(cfgs, {arm: c.lr for arm, c in choices.items()})
    t0 = time.perf_counter()
    res2, net2 = fit(blocks2) if blocks2 else (None, None)
    t2 = time.perf_counter() - t0
    n_rep1, n_rep2 = max(res1.replicas, 1), max(sum(len(b.seeds) for b in blocks2), 1)
    out = []
    for arm in range(len(cfgs)):
        shared_b = next(b for b in blocks1 if b.arm == arm and b.role == SHARED)
        shared = split_result(res1, shared_b.sl, 1)
        shared.wall_time = t1 * len(shared_b.seeds) / n_rep1
        shared_net = subnet(net1, shared_b.sl)
        rows = [row for b in blocks1 if b.arm == arm for row in replica_rows(res1, b, chance)]
        tuned_b = next((b for b in blocks2 if b.arm == arm), None)
        own = sum(len(b.seeds) for b in blocks1 if b.arm == arm) / n_rep1 * t1
        if tuned_b is None:
            tuned, tuned_net = shared, shared_net
        else:
            assert res2 is not None
            tuned, tuned_net = split_result(res2, tuned_b.sl, 1), subnet(net2, tuned_b.sl)
            tuned.wall_time = t2 * len(tuned_b.seeds) / n_rep2
            own += tuned.wall_time
            rows += replica_rows(res2, tuned_b, chance)
        out.append((shared, shared_net, Outcome(choices[arm], float(cfgs[arm].train.lr), tuned, tuned_net, rows,
                                                own)))
    return out
