"""The training loop: epochs x mini-batches over R replicas at once, knowing nothing of Hydra or MLflow.

Why it is shaped like this:
- Every replica is an independent model (its own seed, shuffling, early stopping, divergence); the loop
  keeps a boolean `active` mask of shape (R,) and hands it to the optimizer, so a stopped or diverged
  replica is frozen while the others go on -- one vectorised pass still trains all of them.
- Divergence is data, not a crash: a non-finite loss marks that replica diverged (with the epoch) and
  freezes it; the run finishes and reports `diverged_fraction`. Overflow warnings are silenced on purpose
  inside the loop because non-finite values are detected explicitly.
- The only per-step work is the maths itself (forward, backward, optional clipping, update) plus one
  `isfinite` on an (R,) vector; evaluation, early stopping and diagnostics run every `log_every` epochs.
- Ctrl-C / SIGTERM (raised as KeyboardInterrupt by the caller's handler) ends the loop cleanly: the result
  carries the history so far and `interrupted=True`, so the caller can record it before re-raising.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from src.data import Dataset
from src.nn import MLP, clipping, diagnostics
from src.nn.optimizers import Optimizer
from src.nn.schedules import Constant, Schedule

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LoopConfig:
    """The knobs of :func:`fit` (a plain mirror of `train.*` in the Hydra config)."""

    epochs: int = 1000
    batch_size: int | None = None
    clip_value: float | np.ndarray | None = None
    clip_norm: float | np.ndarray | None = None
    patience: int | np.ndarray | None = None  # an (R,) array gives one patience per replica (inf/NaN = off)
    min_delta: float = 0.0
    log_every: int = 10
    shuffle: str = "random"
    progress: bool = False
    n_diagnostics: int = 10


@dataclass
class FitResult:
    """What a run produced. Arrays of shape (R,) are per replica; history arrays are (K, R) for K log points."""

    epochs: np.ndarray  # (K,) epochs at which the history was recorded
    history: dict[str, np.ndarray]  # name -> (K, R)
    final: dict[str, np.ndarray]  # e.g. "test_acc" -> (R,), after restoring the best weights
    epochs_used: np.ndarray
    best_epoch: np.ndarray
    diverged: np.ndarray
    diverged_epoch: np.ndarray
    stopped_early: np.ndarray
    diag_epochs: list[int] = field(default_factory=list)
    diagnostics: list[dict[str, np.ndarray]] = field(default_factory=list)  # per diag epoch: layer stats
    histograms: dict[str, list] = field(default_factory=dict)  # "start"/"end" -> per layer (counts, edges)
    wall_time: float = 0.0
    interrupted: bool = False

    @property
    def replicas(self) -> int:
        return int(self.diverged.shape[0])


def _batches(ds: Dataset, net: MLP, cfg: LoopConfig, epoch: int,
             rngs: list[np.random.Generator]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of one epoch. Full batch shares X across replicas (no copy); random shuffling is per
    replica (replica independence); `course` shuffling reproduces the course notebooks' permutation
    (`np.random.seed(10 + epoch)`, the same for every replica)."""
    X, y = ds.X_train, ds.y_train
    m = X.shape[0]
    bs = cfg.batch_size
    if bs is None or bs >= m:
        yield X, y
        return
    if cfg.shuffle == "course":
        perm = np.random.RandomState(10 + epoch).permutation(m)
        for s in range(0, m, bs):
            idx = perm[s:s + bs]
            yield X[idx], y[idx]
        return
    perms = np.stack([rng.permutation(m) for rng in rngs])  # (R, m): one draw per replica per epoch
    for s in range(0, m, bs):
        idx = perms[:, s:s + bs]
        yield X[idx], y[idx]


def _patience(value: int | np.ndarray | None, R: int) -> np.ndarray | None:
    """Patience as a float (R,) array (inf = no early stopping for that replica), or None when no replica stops."""
    if value is None:
        return None
    arr = np.array(value, dtype=np.float64)  # None inside a sequence becomes NaN
    arr = np.where(np.isnan(arr), np.inf, arr)
    if arr.ndim == 0:
        arr = np.full(R, float(arr))
    if arr.shape != (R,):
        raise ValueError(f"patience must be a scalar or shape ({R},), got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"patience must be >= 0 (inf = off), got {value!r}")
    return None if np.all(np.isinf(arr)) else arr


def _diagnose(net: MLP, ds: Dataset, activation: str) -> tuple[dict[str, np.ndarray], list]:
    """Per-layer activation/gradient statistics on the training set, without disturbing training state."""
    saved_state = {k: v.copy() for k, v in net.state.items()}
    saved_rngs = [rng.bit_generator.state for rng in net.dropout_rngs]
    try:
        _, _, taps = net.loss_and_grads(ds.X_train, ds.y_train, taps=True)
    finally:  # a diagnostic pass must not change training: BN running stats and dropout streams restored
        for k, v in saved_state.items():
            net.state[k][...] = v
        for rng, st in zip(net.dropout_rngs, saved_rngs, strict=True):
            rng.bit_generator.state = st
    return diagnostics.layer_stats(taps, activation), diagnostics.histograms(taps)


def _evaluate(net: MLP, ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
    return net.evaluate(X, y)


def fit(net: MLP, opt: Optimizer, schedule: Schedule, ds: Dataset, cfg: LoopConfig,
        activation: str = "relu", on_log: Callable[[int, dict[str, np.ndarray]], None] | None = None) -> FitResult:
    """Train `net` in place on `ds` and return the history and final per-replica metrics."""
    from src.lab.speed import tune_malloc

    tune_malloc()  # once per process: keeps batched temporaries out of mmap/munmap (see src/lab/speed.py)
    R = net.replicas
    t0 = time.perf_counter()
    lr0 = opt.lr
    rngs = [np.random.default_rng([int(s), 2]) for s in net.seeds]
    active = np.ones(R, dtype=bool)
    diverged = np.zeros(R, dtype=bool)
    diverged_epoch = np.full(R, -1, dtype=np.int64)
    stopped = np.zeros(R, dtype=bool)
    epochs_used = np.zeros(R, dtype=np.int64)
    best_val = np.full(R, np.inf)
    best_epoch = np.zeros(R, dtype=np.int64)
    wait = np.zeros(R, dtype=np.int64)
    patience = _patience(cfg.patience, R)
    best_params = net.copy_params() if patience is not None else None
    hist_epochs: list[int] = []
    hist: dict[str, list[np.ndarray]] = {}
    diag_every = max(cfg.log_every, cfg.epochs // max(cfg.n_diagnostics, 1))
    result = FitResult(np.zeros(0), {}, {}, epochs_used, best_epoch, diverged, diverged_epoch, stopped)
    stats, hists = _diagnose(net, ds, activation)
    result.diag_epochs.append(0)
    result.diagnostics.append(stats)
    result.histograms["start"] = hists

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        row0 = {"lr": np.broadcast_to(np.asarray(opt.lr, dtype=float), (R,)).copy(), "grad_norm": np.full(R, np.nan)}
        for split in ("train", "val"):
            row0[f"{split}_loss"], row0[f"{split}_acc"] = _evaluate(net, ds, split)
    hist_epochs.append(0)  # the untrained net: where every curve starts (not an early-stopping candidate)
    for k, v in row0.items():
        hist.setdefault(k, []).append(v)

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc="epochs", unit="ep", leave=False, mininterval=0.5)
    epoch = 0
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            # Per-step work is the maths plus a few cheap checks (benchmarks/bench.py "core" measures it
            # against a plain NumPy loop): the full batch is not re-yielded by a generator, a constant
            # schedule is applied once, and the (R,) finiteness test is one sum unless something is off.
            full_batch = cfg.batch_size is None or cfg.batch_size >= ds.X_train.shape[0]
            const_lr = type(schedule) in (Schedule, Constant)
            all_active = True
            for epoch in range(1, cfg.epochs + 1):
                if epoch == 1 or not const_lr:
                    opt.lr = schedule(lr0, epoch - 1)
                grad_norm = None
                batches = (((ds.X_train, ds.y_train),) if full_batch
                           else _batches(ds, net, cfg, epoch, rngs))
                for Xb, yb in batches:
                    loss, grads = net.loss_and_grads(Xb, yb)
                    if not math.isfinite(loss.sum()):  # a NaN/inf anywhere makes the sum non-finite
                        bad = active & ~np.isfinite(loss)
                        if bad.any():
                            diverged |= bad
                            diverged_epoch[bad] = epoch
                            active &= ~bad
                            all_active = False
                    if cfg.clip_value is not None:
                        grad_norm = clipping.clip_by_value(grads, cfg.clip_value)
                    if cfg.clip_norm is not None:
                        grad_norm = clipping.clip_by_norm(grads, cfg.clip_norm)
                    opt.update(net.params, grads, mask=None if all_active else active)
                epochs_used[active] = epoch
                if bar is not None:
                    bar.update(1)
                last = epoch == cfg.epochs
                if epoch % cfg.log_every == 0 or last:
                    if grad_norm is None:
                        grad_norm = clipping.global_norm(grads)
                    # A finite loss with non-finite grads is rare; it is caught here, at the log point.
                    bad = active & ~np.isfinite(grad_norm)
                    diverged |= bad
                    diverged_epoch[bad] = epoch
                    active &= ~bad
                    row = {"lr": np.broadcast_to(np.asarray(opt.lr, dtype=float), (R,)).copy(),
                           "grad_norm": grad_norm}
                    for split in ("train", "val"):
                        row[f"{split}_loss"], row[f"{split}_acc"] = _evaluate(net, ds, split)
                    hist_epochs.append(epoch)
                    for k, v in row.items():
                        hist.setdefault(k, []).append(np.where(diverged, np.nan, v) if k != "lr" else v)
                    val = row["val_loss"]
                    improved = active & (val < best_val - cfg.min_delta)
                    best_val[improved] = val[improved]
                    best_epoch[improved] = epoch
                    if best_params is not None:
                        wait[improved] = 0
                        wait[active & ~improved] += 1
                        if improved.any():
                            for k, v in net.copy_params().items():
                                best_params[k][improved] = v[improved]
                        stop = active & (wait > patience)
                        stopped |= stop
                        active &= ~stop
                    all_active = bool(active.all())
                    if epoch % diag_every == 0 or last:
                        stats, _ = _diagnose(net, ds, activation)
                        result.diag_epochs.append(epoch)
                        result.diagnostics.append(stats)
                    if on_log is not None:
                        on_log(epoch, row)
                    if bar is not None:
                        bar.set_postfix(val_loss=float(np.nanmean(val)), active=int(active.sum()), refresh=False)
                if not active.any():
                    break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if best_params is not None:
        restore = (best_epoch > 0) & np.isfinite(patience)  # replicas without early stopping keep their last weights
        net.load_params(best_params, mask=restore)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for split in SPLITS:
            loss, acc = _evaluate(net, ds, split)
            result.final[f"{split}_loss"] = np.where(diverged, np.nan, loss)
            # A diverged replica's frozen weights say nothing about the method: it counts in diverged_fraction,
            # not in the accuracy mean (NaN is left out of every mean and CI).
            result.final[f"{split}_acc"] = np.where(diverged, np.nan, acc)
        if not result.interrupted:
            stats, hists = _diagnose(net, ds, activation)
            if not result.diag_epochs or result.diag_epochs[-1] != epoch:
                result.diag_epochs.append(epoch)
                result.diagnostics.append(stats)
            result.histograms["end"] = hists
    result.epochs = np.asarray(hist_epochs, dtype=np.int64)
    result.history = {k: np.stack(v) for k, v in hist.items()} if hist else {}
    result.wall_time = time.perf_counter() - t0
    return result
