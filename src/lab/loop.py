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

`fit` is a short loop over named steps: :class:`Replicas` (who is still training, who diverged or stopped),
:class:`EarlyStopping` (per-replica patience, best-weights snapshot and restore), :class:`History` (the curves),
and `_Fit`'s epoch loop, log point and finish.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    (`np.random.seed(10 + epoch)`, the same for every replica).

    The rows are gathered with `np.take(X, idx, axis=0)`, not `X[idx]`: the same rows, but NumPy's fancy indexing
    of a whole row per index is 5-6x slower for these (R, batch) index arrays when rows are narrow (2 features:
    moons, circles), 1.2x for 64 (digits); benchmarks/bench.py "minibatch" measures the fit."""
    X, y = ds.X_train, ds.y_train
    m = X.shape[0]
    bs = cfg.batch_size
    if bs is None or bs >= m:
        yield X, y
        return
    if cfg.shuffle == "course":
        perm = course_permutation(epoch, m)
        for s in range(0, m, bs):
            idx = perm[s:s + bs]
            yield np.take(X, idx, axis=0), np.take(y, idx, axis=0)
        return
    perms = np.stack([rng.permutation(m) for rng in rngs])  # (R, m): one draw per replica per epoch
    for s in range(0, m, bs):
        idx = perms[:, s:s + bs]
        yield np.take(X, idx, axis=0), np.take(y, idx, axis=0)


def course_permutation(epoch: int, m: int) -> np.ndarray:
    """The course notebooks' order of the `m` training rows in `epoch`: `np.random.seed(10 + epoch)` then
    `np.random.permutation(m)`, without touching NumPy's global state.

    One RandomState, reseeded every epoch (the legacy seeding `RandomState(10 + epoch)` does, so the same stream),
    rather than a new one per epoch: a new RandomState first draws entropy from the OS for its bit generator
    (129 us, against 6.6 us reseeded: ~1.8 s of s3_course's 3 x 5,000 epochs). The lock keeps the seed and the
    draw together when jobs run in threads."""
    with _COURSE_LOCK:
        _COURSE_RS.seed(10 + epoch)
        return _COURSE_RS.permutation(m)


_COURSE_RS = np.random.RandomState(0)  # reseeded by course_permutation before every draw
_COURSE_LOCK = threading.Lock()


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


def _diagnose(net: MLP, ds: Dataset, activation: str, hists: bool = True) -> tuple[dict[str, np.ndarray], list]:
    """Per-layer activation/gradient statistics (and, with `hists`, histograms) on the training set, without
    disturbing training state."""
    saved_state = {k: v.copy() for k, v in net.state.items()}
    saved_rngs = [rng.bit_generator.state for rng in net.dropout_rngs]
    try:
        _, _, taps = net.loss_and_grads(ds.X_train, ds.y_train, taps=True)
    finally:  # a diagnostic pass must not change training: BN running stats and dropout streams restored
        for k, v in saved_state.items():
            net.state[k][...] = v
        for rng, st in zip(net.dropout_rngs, saved_rngs, strict=True):
            rng.bit_generator.state = st
    return diagnostics.layer_stats(taps, activation), diagnostics.histograms(taps) if hists else []


def _evaluate(net: MLP, ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
    return net.evaluate(X, y)


class TrainVal:
    """Scores the train and val splits at a log point in one forward pass over both, stacked once per run.

    Why: at R=1 on a small dataset an evaluation costs its ~30 NumPy calls, not its rows, and the loop scores both
    splits every `log_every` epochs; `MLP.evaluate_parts` gives each split the numbers of its own `evaluate`.
    """

    def __init__(self, net: MLP, ds: Dataset) -> None:
        self.sizes = (len(ds.y_train), len(ds.y_val))
        self.X = np.concatenate([ds.X_train, ds.X_val]).astype(net.dtype, copy=False)
        self.y = np.concatenate([ds.y_train, ds.y_val])

    def __call__(self, net: MLP) -> dict[str, np.ndarray]:
        (tl, ta), (vl, va) = net.evaluate_parts(self.X, self.y, self.sizes)
        return {"train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": va}


class Replicas:
    """Per-replica status, each an (R,) array: active (still training), diverged (+ the epoch), stopped early,
    epochs used. Arrays are updated in place, so the FitResult built on them sees every change.

    `epochs_used` is written when a replica is frozen and, for those still active, by :meth:`finish` (not on every
    epoch: a boolean-mask store per step is a measurable share of a one-replica step)."""

    def __init__(self, R: int) -> None:
        self.active = np.ones(R, dtype=bool)
        self.diverged = np.zeros(R, dtype=bool)
        self.diverged_epoch = np.full(R, -1, dtype=np.int64)
        self.stopped = np.zeros(R, dtype=bool)
        self.epochs_used = np.zeros(R, dtype=np.int64)

    def diverge(self, nonfinite: np.ndarray, epoch: int, used: int) -> bool:
        """Mark the active replicas with a non-finite value diverged at `epoch`, having trained `used` epochs, and
        freeze them; True if any."""
        bad = self.active & nonfinite
        if not bad.any():
            return False
        self.diverged |= bad
        self.diverged_epoch[bad] = epoch
        self.epochs_used[bad] = used
        self.active &= ~bad
        return True

    def stop(self, mask: np.ndarray, epoch: int) -> None:
        """Replicas `mask` ran out of patience after `epoch` epochs: stopped early, frozen."""
        self.stopped |= mask
        self.epochs_used[mask & self.active] = epoch
        self.active &= ~mask

    def finish(self, epochs_done: int) -> None:
        """The replicas still active trained every one of the `epochs_done` epochs."""
        self.epochs_used[self.active] = epochs_done


class EarlyStopping:
    """The best validation loss per replica, and (with a patience) stopping and the best weights.

    The best loss and its epoch are always tracked (`best_epoch` is reported by every run); only replicas with a
    finite patience stop after `patience` evaluations without a new best (by more than `min_delta`) and get their
    best weights back at the end. Replicas without early stopping keep their last weights.
    """

    def __init__(self, patience: int | np.ndarray | None, min_delta: float, net: MLP) -> None:
        R = net.replicas
        self.patience = _patience(patience, R)
        self.min_delta = min_delta
        self.best_val = np.full(R, np.inf)
        self.best_epoch = np.zeros(R, dtype=np.int64)
        self.wait = np.zeros(R, dtype=np.int64)
        self.best_params = net.copy_params() if self.patience is not None else None

    def observe(self, val: np.ndarray, active: np.ndarray, epoch: int, net: MLP) -> np.ndarray | None:
        """Record one evaluation; return the replicas out of patience now (None when no replica can stop)."""
        improved = active & (val < self.best_val - self.min_delta)
        self.best_val[improved] = val[improved]
        self.best_epoch[improved] = epoch
        if self.best_params is None:
            return None
        self.wait[improved] = 0
        self.wait[active & ~improved] += 1
        if improved.any():
            for k, v in net.copy_params().items():
                self.best_params[k][improved] = v[improved]
        return active & (self.wait > self.patience)

    def restore(self, net: MLP) -> None:
        """Put back the best weights of the replicas with a patience that improved at least once."""
        if self.best_params is not None:
            assert self.patience is not None
            net.load_params(self.best_params, mask=(self.best_epoch > 0) & np.isfinite(self.patience))


class History:
    """The curves: one (R,) row per log point for each of lr, grad_norm, train/val loss and accuracy."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, epoch: int, row: dict[str, np.ndarray], diverged: np.ndarray | None = None) -> None:
        """Append `row`; with `diverged`, a diverged replica's values are NaN (except the learning rate).

        The values are made before anything is appended, and every key exists before the first append: a Ctrl-C
        or SIGTERM (a KeyboardInterrupt between two bytecodes) in here leaves at most one list one entry longer
        than the others, which :meth:`arrays` drops (it once left the epochs one longer than the curves, and the
        interrupted run failed with an IndexError instead of being recorded KILLED)."""
        if diverged is not None and not diverged.any():
            diverged = None
        new = {k: v if diverged is None or k == "lr" else np.where(diverged, np.nan, v) for k, v in row.items()}
        for k in new:
            self.rows.setdefault(k, [])
        self.epochs.append(epoch)
        for k, v in new.items():
            self.rows[k].append(v)

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(K,) epochs and name -> (K, R) history, K the log points complete in every list (see :meth:`add`)."""
        k = min([len(self.epochs), *(len(v) for v in self.rows.values())])
        return (np.asarray(self.epochs[:k], dtype=np.int64),
                {name: np.stack(v[:k]) if k else np.empty((0, *np.shape(v[0]))) if v else np.empty((0, 0))
                 for name, v in self.rows.items()})


def _log_row(net: MLP, opt: Optimizer, scores: TrainVal, grad_norm: np.ndarray) -> dict[str, np.ndarray]:
    lr, R = opt.lr, net.replicas
    lrs = np.full(R, float(lr)) if isinstance(lr, (int, float)) else np.array(np.broadcast_to(lr, (R,)), dtype=float)
    row = {"lr": lrs, "grad_norm": grad_norm}
    row.update(scores(net))
    return row


_QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore", "under": "ignore"}


def fit(net: MLP, opt: Optimizer, schedule: Schedule, ds: Dataset, cfg: LoopConfig,
        activation: str = "relu", on_log: Callable[[int, dict[str, np.ndarray]], None] | None = None) -> FitResult:
    """Train `net` in place on `ds` and return the history and final per-replica metrics."""
    from src.lab.speed import tune_malloc

    tune_malloc()  # once per process: keeps batched temporaries out of mmap/munmap (see src/lab/speed.py)
    run = _Fit(net, opt, schedule, ds, cfg, activation, on_log)
    try:
        with np.errstate(**_QUIET):
            run.epochs()
    except KeyboardInterrupt:
        run.result.interrupted = True
    finally:
        if run.bar is not None:
            run.bar.close()
    return run.finish()


class _Fit:
    """One call of :func:`fit`: the state its steps share (replicas, early stopping, history, progress bar)."""

    def __init__(self, net: MLP, opt: Optimizer, schedule: Schedule, ds: Dataset, cfg: LoopConfig, activation: str,
                 on_log: Callable[[int, dict[str, np.ndarray]], None] | None) -> None:
        self.t0 = time.perf_counter()
        self.net, self.opt, self.schedule, self.ds, self.cfg = net, opt, schedule, ds, cfg
        self.activation, self.on_log = activation, on_log
        self.lr0 = opt.lr
        self.rngs = [np.random.default_rng([int(s), 2]) for s in net.seeds]
        self.reps = Replicas(net.replicas)
        self.stopper = EarlyStopping(cfg.patience, cfg.min_delta, net)
        self.history = History()
        self.diag_every = max(cfg.log_every, cfg.epochs // max(cfg.n_diagnostics, 1))
        self.scores = TrainVal(net, ds)
        r = self.reps
        self.result = FitResult(np.zeros(0), {}, {}, r.epochs_used, self.stopper.best_epoch, r.diverged,
                                r.diverged_epoch, r.stopped)
        self.epoch = 0
        stats, hists = _diagnose(net, ds, activation)
        self.result.diag_epochs.append(0)
        self.result.diagnostics.append(stats)
        self.result.histograms["start"] = hists
        with np.errstate(**_QUIET):
            row0 = _log_row(net, opt, self.scores, np.full(net.replicas, np.nan))
        self.history.add(0, row0)  # the untrained net: where every curve starts (not an early-stopping candidate)
        self.bar = _progress_bar(cfg)

    def epochs(self) -> None:
        """The hot loop. Per-step work is the maths plus a few cheap checks (benchmarks/bench.py "core" measures
        it against a plain NumPy loop): the full batch is not re-yielded by a generator, a constant schedule is
        applied once, and the (R,) finiteness test is one sum unless something is off."""
        net, opt, schedule, ds, cfg = self.net, self.opt, self.schedule, self.ds, self.cfg
        reps, bar = self.reps, self.bar
        active = reps.active
        full_batch = cfg.batch_size is None or cfg.batch_size >= ds.X_train.shape[0]
        const_lr = type(schedule) in (Schedule, Constant)
        all_active = True
        epoch = done = 0
        try:
            for epoch in range(1, cfg.epochs + 1):
                if epoch == 1 or not const_lr:
                    opt.lr = schedule(self.lr0, epoch - 1)
                grad_norm = None
                batches = ((ds.X_train, ds.y_train),) if full_batch else _batches(ds, net, cfg, epoch, self.rngs)
                for Xb, yb in batches:
                    loss, grads = net.loss_and_grads(Xb, yb)
                    # a NaN/inf anywhere makes the sum non-finite
                    if not math.isfinite(loss.sum()) and reps.diverge(~np.isfinite(loss), epoch, epoch - 1):
                        all_active = False
                    if cfg.clip_value is not None:
                        grad_norm = clipping.clip_by_value(grads, cfg.clip_value)
                    if cfg.clip_norm is not None:
                        grad_norm = clipping.clip_by_norm(grads, cfg.clip_norm)
                    opt.update(net.params, grads, mask=None if all_active else active)
                done = epoch
                if bar is not None:
                    bar.update(1)
                last = epoch == cfg.epochs
                if epoch % cfg.log_every == 0 or last:
                    all_active = self.log_point(epoch, last, grads, grad_norm)
                if not all_active and not active.any():
                    break
        finally:
            self.epoch = epoch
            reps.finish(done)

    def log_point(self, epoch: int, last: bool, grads: dict[str, np.ndarray], grad_norm: np.ndarray | None) -> bool:
        """Every `log_every` epochs: divergence by gradient, evaluation, history, early stopping, diagnostics,
        progress. Returns whether every replica is still active."""
        reps = self.reps
        if grad_norm is None:
            grad_norm = clipping.global_norm(grads)
        if not math.isfinite(grad_norm.sum()):  # a finite loss with non-finite grads is rare: caught here
            reps.diverge(~np.isfinite(grad_norm), epoch, epoch)
        row = _log_row(self.net, self.opt, self.scores, grad_norm)
        self.history.add(epoch, row, reps.diverged)
        stop = self.stopper.observe(row["val_loss"], reps.active, epoch, self.net)
        if stop is not None:
            reps.stop(stop, epoch)
        all_active = bool(reps.active.all())
        if epoch % self.diag_every == 0 or last:
            stats, _ = _diagnose(self.net, self.ds, self.activation, hists=False)
            self.result.diag_epochs.append(epoch)
            self.result.diagnostics.append(stats)
        if self.on_log is not None:
            self.on_log(epoch, row)
        if self.bar is not None:
            self.bar.set_postfix(val_loss=float(np.nanmean(row["val_loss"])), active=int(reps.active.sum()),
                                 refresh=False)
        return all_active

    def finish(self) -> FitResult:
        """Restore the best weights, evaluate every split, diagnose the final net, assemble the result."""
        result, net, ds, diverged = self.result, self.net, self.ds, self.reps.diverged
        self.stopper.restore(net)
        with np.errstate(**_QUIET):
            for split in SPLITS:
                loss, acc = _evaluate(net, ds, split)
                result.final[f"{split}_loss"] = np.where(diverged, np.nan, loss)
                # A diverged replica's frozen weights say nothing about the method: it counts in diverged_fraction,
                # not in the accuracy mean (NaN is left out of every mean and CI).
                result.final[f"{split}_acc"] = np.where(diverged, np.nan, acc)
            if not result.interrupted:
                stats, hists = _diagnose(net, ds, self.activation)
                if not result.diag_epochs or result.diag_epochs[-1] != self.epoch:
                    result.diag_epochs.append(self.epoch)
                    result.diagnostics.append(stats)
                result.histograms["end"] = hists
        n = min(len(result.diag_epochs), len(result.diagnostics))  # an interrupt between the two appends
        del result.diag_epochs[n:], result.diagnostics[n:]
        result.epochs, result.history = self.history.arrays()
        result.wall_time = time.perf_counter() - self.t0
        return result


def _progress_bar(cfg: LoopConfig) -> Any:
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.epochs, desc="epochs", unit="ep", leave=False, mininterval=0.5)
