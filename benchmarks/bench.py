"""nnlab's speed benchmarks: every figure is a RATIO against a baseline measured in the same run.

    python -m benchmarks.bench                      # sections core, replicas, public_api, minibatch, pack_size,
                                                    # vectorize, overhead, memory, tracking, tuning
    python -m benchmarks.bench --only public_api --ab-ref <commit>   # + the same children against an older src/
    python -m benchmarks.bench --dvc                # + the default `dvc repro` in a scratch copy (minutes)
    python -m benchmarks.bench --quick              # seconds: tiny sizes, to check the script works

Prints a Markdown table and writes `benchmarks/results.json` (`--out` to change).

Why ratios and CPU time: the machine is shared (2 cores, other people's tests), so absolute wall times swing by
2x from one minute to the next. Each in-process figure is the median over interleaved rounds (baseline and
candidate alternate, so a busy minute hits both) of the process CPU time (`time.process_time`, which a
neighbour's load barely moves; BLAS is capped at one thread so CPU time is the work done). Wall time is
recorded too. Subprocess figures (Hydra/MLflow jobs, `dvc repro`) are wall time: that is what a user waits for.

Sections (README "Speed"):
  core       course net [2,10,5,1] relu/relu/sigmoid on circles, full batch, SGD: nnlab vs a plain NumPy loop of
             the same maths (the floor for one replica) and vs scikit-learn's MLPClassifier (sgd, momentum 0).
  replicas   R = 1, 8, 32, 128 replicas of that job: CPU time per replica-iteration, with the FLOPs and bytes
             moved per iteration (what bounds it).
  public_api the same through the public src.nn API alone (MLP + optimizers.get, loss_and_grads + update) in fresh
             processes that never tune glibc's malloc, alternated with ones that do (mallopt): full batch and
             mini-batches of 64, float64 and float32 (issue 11 goal 1: R=32 >= 3.5x cheaper per model than R=1).
  minibatch  a packed mini-batch fit shaped like s3_optim's tuning fits (R=24, batches of 64) through loop.fit, vs the
             same fit with its batches gathered by fancy indexing X[idx] (the baseline), and the batches alone.
  pack_size  per replica-step cost at R = 1 ... 48 for s6_bn's wide mini-batch BN net (float32) and the course net:
             where more replicas per net stops paying (why s6_bn packs 12 replicas per job).
  vectorize  the default grid (conf/experiment/default.yaml) as 48 Hydra jobs (`hydra/sweeper=basic`) vs packed by
             `hydra/sweeper=vectorized`, the default (one job per group of configs differing only in per-replica
             scalars).
  overhead   per-job cost of a Hydra multirun with MLflow tracking for jobs that train nothing (1 epoch).
  memory     peak RSS of one worker: the default preset's job, and the same at R=128.
  tracking   runs/s and metric points/s into SQLite, an SQLite-backed and a PostgreSQL-backed `mlflow server`, by
             one and by four writers at once (benchmarks/tracking.py).
  tuning     learning-rate tuning's cost: the s3_optim sweep tuned over 7 lrs vs the same sweep untuned (wall), and
             the fits alone for one pack of s3_optim and of the default grid (CPU).
  dvc        (--dvc) the default `dvc repro` in a scratch copy, stage by stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = [2, 10, 5, 1]
LR = 0.01


# ---------------------------------------------------------------------------------------------------- helpers


def _limit_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # the jobs do the same (src/lab/job.py); tiny matrices


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def interleaved(cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Run every case once per round, alternating; return the median cpu/wall seconds per case."""
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    wall: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            c, w = _timed(fn)
            cpu[k].append(c)
            wall[k].append(w)
    return {k: {"cpu": statistics.median(cpu[k]), "wall": statistics.median(wall[k]), "rounds": rounds}
            for k in cases}


def _course_data() -> Any:
    from src import data

    return data.make("circles_course")


def plain_numpy_loop(X: np.ndarray, y: np.ndarray, iters: int, seed: int = 0) -> float:
    """The floor for one replica: the same maths (He init, relu/relu/sigmoid, BCE, SGD) as straight NumPy code
    with 2-D arrays, no replica axis, no checks, no function calls per layer. Returns the final loss."""
    rng = np.random.default_rng(seed)
    W1, b1 = rng.standard_normal((2, 10)) * np.sqrt(2 / 2), np.zeros(10)
    W2, b2 = rng.standard_normal((10, 5)) * np.sqrt(2 / 10), np.zeros(5)
    W3, b3 = rng.standard_normal((5, 1)) * np.sqrt(2 / 5), np.zeros(1)
    m = X.shape[0]
    Y = y.reshape(-1, 1).astype(np.float64)
    loss = np.nan
    for _ in range(iters):
        z1 = X @ W1 + b1
        a1 = np.maximum(z1, 0)
        z2 = a1 @ W2 + b2
        a2 = np.maximum(z2, 0)
        z3 = a2 @ W3 + b3
        a3 = 1 / (1 + np.exp(-z3))
        loss = np.mean(np.maximum(z3, 0) - z3 * Y + np.log1p(np.exp(-np.abs(z3))))
        dz3 = (a3 - Y) / m
        dW3, db3 = a2.T @ dz3, dz3.sum(0)
        dz2 = (dz3 @ W3.T) * (z2 > 0)
        dW2, db2 = a1.T @ dz2, dz2.sum(0)
        dz1 = (dz2 @ W2.T) * (z1 > 0)
        dW1, db1 = X.T @ dz1, dz1.sum(0)
        W1 -= LR * dW1
        b1 -= LR * db1
        W2 -= LR * dW2
        b2 -= LR * db2
        W3 -= LR * dW3
        b3 -= LR * db3
    return float(loss)


def nnlab_steps(X: np.ndarray, y: np.ndarray, iters: int, replicas: int = 1) -> float:
    """src.nn alone: `MLP.loss_and_grads` + `SGD.update`, the maths of one training step."""
    from src.nn import MLP, optimizers

    net = MLP(SIZES, activation="relu", init="he_normal", replicas=replicas, seed=0)
    opt = optimizers.get("sgd", lr=LR)
    loss = np.zeros(replicas)
    for _ in range(iters):
        loss, grads = net.loss_and_grads(X, y)
        opt.update(net.params, grads)
    return float(loss.mean())


def nnlab_fit(ds: Any, iters: int, replicas: int = 1, log_every: int = 10) -> Any:
    """What a job runs: `src.lab.loop.fit` (evaluation on train+val every `log_every` epochs, diagnostics)."""
    from src.lab.loop import LoopConfig, fit
    from src.nn import MLP, optimizers, schedules

    net = MLP(SIZES, activation="relu", init="he_normal", replicas=replicas, seed=0)
    opt = optimizers.get("sgd", lr=LR)
    return fit(net, opt, schedules.get("constant"), ds, LoopConfig(epochs=iters, log_every=log_every),
               activation="relu")


def sklearn_mlp(X: np.ndarray, y: np.ndarray, iters: int) -> int:
    """scikit-learn's MLPClassifier on the same net: relu hidden layers, logistic output, full-batch SGD,
    momentum 0, no L2, no early stopping / convergence test, no shuffling."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(10, 5), activation="relu", solver="sgd", batch_size=X.shape[0],
                        learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False, alpha=0.0, max_iter=iters,
                        shuffle=False, tol=0.0, n_iter_no_change=iters + 1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return int(clf.n_iter_)


# ------------------------------------------------------------------------------------------------- sections


def bench_core(iters: int, rounds: int) -> dict[str, Any]:
    _limit_blas()
    ds = _course_data()
    X, y = ds.X_train, ds.y_train
    import sklearn.neural_network  # noqa: F401 - import cost outside the timed region

    cases = {
        "plain_numpy": lambda: plain_numpy_loop(X, y, iters),
        "nnlab_step": lambda: nnlab_steps(X, y, iters),
        "nnlab_fit": lambda: nnlab_fit(ds, iters),
        "sklearn": lambda: sklearn_mlp(X, y, iters),
    }
    med = interleaved(cases, rounds)
    per_it = {k: {"cpu_us": v["cpu"] / iters * 1e6, "wall_us": v["wall"] / iters * 1e6} for k, v in med.items()}
    base, sk = med["plain_numpy"]["cpu"], med["sklearn"]["cpu"]
    out: dict[str, Any] = {"iters": iters, "rounds": rounds, "per_iteration": per_it}
    for k in ("nnlab_step", "nnlab_fit"):
        out[f"{k}_vs_plain"] = med[k]["cpu"] / base
        out[f"sklearn_vs_{k}"] = sk / med[k]["cpu"]
    fit, skl = out["nnlab_fit_vs_plain"], out["sklearn_vs_nnlab_fit"]  # issue 11, goal 6 (R = 1)
    out["goals"] = {"fit <= 1.3x the plain NumPy loop": {"goal": 1.3, "measured": fit, "met": fit <= 1.3},
                    "scikit-learn >= 1.5x slower than fit": {"goal": 1.5, "measured": skl, "met": skl >= 1.5}}
    return out


def _flops_bytes(R: int, m: int) -> tuple[float, float]:
    """Per training iteration of the [2,10,5,1] net on m samples: multiply-add FLOPs of the matrix products
    (forward x@W, backward dW and dx: 3 products of 2·m·din·dout) and a lower bound on the bytes the element-wise
    passes move (each (R, m, d) activation-sized array is written once and read about twice: ~12 passes per
    hidden layer forward+backward, 8 bytes each)."""
    pairs = list(zip(SIZES[:-1], SIZES[1:], strict=True))
    flops = 3 * sum(2 * m * a * b for a, b in pairs) * R
    elems = sum(m * b for _, b in pairs) * R
    return float(flops), float(elems * 12 * 8)


def bench_replicas(iters: int, rounds: int, Rs: tuple[int, ...] = (1, 8, 32, 128)) -> dict[str, Any]:
    _limit_blas()
    ds = _course_data()
    X, y = ds.X_train, ds.y_train
    cases: dict[str, Callable[[], Any]] = {}
    for R in Rs:
        cases[f"step_R{R}"] = lambda R=R: nnlab_steps(X, y, iters, replicas=R)
        cases[f"fit_R{R}"] = lambda R=R: nnlab_fit(ds, iters, replicas=R)
    med = interleaved(cases, rounds)
    m = X.shape[0]
    rows = []
    for R in Rs:
        flops, nbytes = _flops_bytes(R, m)
        step, fitc = med[f"step_R{R}"]["cpu"] / iters, med[f"fit_R{R}"]["cpu"] / iters
        rows.append({"R": R, "step_us_per_replica_iter": step / R * 1e6, "fit_us_per_replica_iter": fitc / R * 1e6,
                     "gflops_per_s": flops / step / 1e9, "gbytes_per_s_lower_bound": nbytes / step / 1e9,
                     "flops_per_iter": flops, "bytes_per_iter": nbytes})
    r1 = rows[0]
    for row in rows:
        row["fit_cheaper_than_R1"] = r1["fit_us_per_replica_iter"] / row["fit_us_per_replica_iter"]
        row["step_cheaper_than_R1"] = r1["step_us_per_replica_iter"] / row["step_us_per_replica_iter"]
    out: dict[str, Any] = {"iters": iters, "rounds": rounds, "rows": rows}
    return out


def bench_pack_size(steps: int, rounds: int, Rs: tuple[int, ...] = (1, 3, 6, 12, 24, 48)) -> dict[str, Any]:
    """Per replica, a training step (`loss_and_grads` + SGD `update`) at R = 1 ... 48 replicas, for s6_bn's wide
    mini-batch net (64 inputs, five ReLU layers of 100 with batch norm, 10 classes, float32, batches of 100) and
    for the course's small full-batch net ([2, 10, 5, 1] on circles, float64). Why: more replicas per net is
    not always cheaper per replica; the wide net's per-replica step got dearer past ~12 replicas (its preset
    packs 12 per job, conf/experiment/s6_bn.yaml), the small net's did not. Figures: CPU µs per replica-step at
    each R, the cheapest R, and R=max's cost over the cheapest's."""
    _limit_blas()
    from src.nn import MLP, optimizers

    rng = np.random.default_rng(0)
    ds = _course_data()
    out: dict[str, Any] = {"steps": steps, "rounds": rounds, "Rs": list(Rs), "nets": {}}
    nets = {"s6_bn_wide_batchnorm_float32": ([64, 100, 100, 100, 100, 100, 10], True, "float32"),
            "course_full_batch_float64": ([2, 10, 5, 1], False, "float64")}
    for name, (sizes, bn, dtype) in nets.items():
        cases: dict[str, Callable[[], Any]] = {}
        per_call: dict[str, int] = {}
        for R in Rs:
            net = MLP(sizes, activation="relu", init="he_normal", replicas=R, seed=0, dtype=dtype, batchnorm=bn)
            opt = optimizers.get("sgd", lr=0.01)
            if bn:  # a fresh batch of 100 rows per replica (s6_bn: digits, 64 pixels, 10 classes)
                X, y = rng.standard_normal((R, 100, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], (R, 100))
            else:  # the course data, shared by the replicas (as a packed full-batch fit sees it)
                X, y = ds.X_train.astype(dtype), ds.y_train
            n = max(2, steps // R)

            def run(net: Any = net, opt: Any = opt, X: np.ndarray = X, y: np.ndarray = y, n: int = n) -> None:
                for _ in range(n):
                    _, grads = net.loss_and_grads(X, y)
                    opt.update(net.params, grads)

            run()  # warm-up: first-step allocations are not what is measured
            cases[str(R)], per_call[str(R)] = run, n * R
        med = interleaved(cases, rounds)
        us = {k: med[k]["cpu"] / per_call[k] * 1e6 for k in cases}
        best = min(us, key=us.__getitem__)
        out["nets"][name] = {"us_per_replica_step": us, "cheapest_R": int(best),
                             "largest_R_vs_cheapest": us[str(Rs[-1])] / us[best]}
    return out


def bench_inplace(calls: int, rounds: int, R: int = 32) -> dict[str, Any]:
    """The three changes that made the training step's element-wise passes cheaper at large R, each against what
    it replaced, on the course net's arrays (R replicas x 300 rows, widths 10 and 5, float64): ReLU's forward
    written into z (`inplace=True`, against a new array and kept zeros), ReLU's backward written into da (against
    a kept dz), and `dense_backward`, whose dx = dout Wᵀ now goes through a kept contiguous copy of Wᵀ (against
    the same three products with the transposed view of W handed to BLAS). Why they pay: a pass over three
    768 KB arrays does not fit a core's L2 cache where a pass over two does, and OpenBLAS's transposed-operand
    kernel is slower on these shapes. Figures: CPU µs per call and each baseline's cost over its replacement
    (> 1: the change is faster)."""
    _limit_blas()
    from src.nn.layers import activation_backward, activation_forward, dense_backward
    from src.nn.workspace import Workspace

    g = np.random.default_rng(0)
    z, da, dout = g.standard_normal((R, 300, 10)), g.standard_normal((R, 300, 10)), g.standard_normal((R, 300, 5))
    W, x = g.standard_normal((R, 10, 5)), g.standard_normal((R, 300, 10))
    ws_new, ws_kept, ws_dense = Workspace(), Workspace(), Workspace()
    dW, db, dx = np.empty_like(W), np.empty((R, 5)), np.empty_like(x)
    ones = np.ones(300)

    def dense_backward_before(dout: np.ndarray, x: np.ndarray, W: np.ndarray) -> None:
        """`dense_backward` as it was: the same three products, dx against the transposed view of W."""
        np.matmul(x.swapaxes(-1, -2), dout, out=dW)
        np.matmul(ones, dout, out=db)
        np.matmul(dout, W.swapaxes(-1, -2), out=dx)

    def repeat(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn()
        return run

    # z is not restored between calls: after the first in-place one it holds ReLU(z), and the ReLU of that is the
    # same work (NumPy's max and compare have no branch per element)
    _, cache = activation_forward("relu", z, ws=ws_kept)
    cases = {
        "relu_forward_new_array": repeat(lambda: activation_forward("relu", z, ws=ws_new)),
        "relu_forward_inplace": repeat(lambda: activation_forward("relu", z, ws=ws_kept, inplace=True)),
        "relu_backward_kept_dz": repeat(lambda: activation_backward("relu", da, cache, ws=ws_new)),
        "relu_backward_into_da": repeat(lambda: activation_backward("relu", da, cache, ws=ws_kept, inplace=True)),
        "dense_backward_transposed_view": repeat(lambda: dense_backward_before(dout, x, W)),
        "dense_backward_contiguous_copy": repeat(lambda: dense_backward(dout, (x, W), ws=ws_dense)),
    }
    for fn in cases.values():
        fn()  # warm-up: the kept arrays exist before anything is timed
    med = interleaved(cases, rounds)
    us = {k: med[k]["cpu"] / calls * 1e6 for k in cases}
    return {"calls": calls, "rounds": rounds, "R": R, "us_per_call": us,
            "relu_forward_gain": us["relu_forward_new_array"] / us["relu_forward_inplace"],
            "relu_backward_gain": us["relu_backward_kept_dz"] / us["relu_backward_into_da"],
            "dense_backward_gain": us["dense_backward_transposed_view"] / us["dense_backward_contiguous_copy"]}


def _fancy_batches(ds: Any, net: Any, cfg: Any, epoch: int, rngs: list[np.random.Generator]) -> Any:
    """`loop._batches`' per-replica random shuffling as it was before np.take: the rows gathered by `X[idx]`."""
    X, y, m, bs = ds.X_train, ds.y_train, ds.X_train.shape[0], cfg.batch_size
    perms = np.stack([rng.permutation(m) for rng in rngs])
    for s in range(0, m, bs):
        idx = perms[:, s:s + bs]
        yield X[idx], y[idx]


def bench_minibatch(epochs: int, rounds: int, replicas: int = 24) -> dict[str, Any]:
    """A packed mini-batch fit shaped like one of s3_optim's tuning fits (moons, the `tiny` net [2,5,2,1] ReLU,
    batches of 64, R = 8 lrs x 3 seeds, SGD) through `loop.fit`, alternated with the same fit whose batches are
    gathered by fancy indexing (`X[idx]`, the baseline: how `loop._batches` gathered them before `np.take`), and
    the batches alone (drawing the per-replica permutations and gathering, no training). The same batches either
    way (tests/test_benchmarks_smoke.py; each replica's own permutation: tests/test_vectorize.py)."""
    _limit_blas()
    from src import data
    from src.lab import loop
    from src.nn import MLP, optimizers, schedules

    ds = data.make("moons")
    cfg = loop.LoopConfig(epochs=epochs, batch_size=64, log_every=10)

    def run() -> Any:
        net = MLP([2, 5, 2, 1], activation="relu", init="he_normal", replicas=replicas, seed=0)
        return loop.fit(net, optimizers.get("sgd", lr=0.01), schedules.get("constant"), ds, cfg)

    def fancy() -> Any:
        saved, loop._batches = loop._batches, _fancy_batches
        try:
            return run()
        finally:
            loop._batches = saved

    def draw_only() -> None:
        rngs = [np.random.default_rng(r) for r in range(replicas)]
        for e in range(epochs):
            for _ in loop._batches(ds, None, cfg, e, rngs):  # type: ignore[arg-type]
                pass

    med = interleaved({"fit_take": run, "fit_fancy_index": fancy, "batches_only": draw_only}, rounds)
    cpu = {k: v["cpu"] for k, v in med.items()}
    return {"epochs": epochs, "rounds": rounds, "replicas": replicas, "train_rows": int(ds.X_train.shape[0]),
            "cpu_s": cpu, "fancy_index_vs_take": cpu["fit_fancy_index"] / cpu["fit_take"],
            "batches_share_of_fit": cpu["batches_only"] / cpu["fit_take"]}


# One training job through the public src.nn API only (MLP + optimizers.get + loss_and_grads/update), run in a FRESH
# interpreter so that nothing (loop.fit, another benchmark) has tuned glibc's allocator in it: what a notebook,
# macOS or musl user gets. argv[1] is a JSON dict: Rs, model_iters (per case: R x steps), rounds, mallopt,
# batch (None = full batch), dtype. Prints {"R": cpu µs per model-iteration (median over rounds)} as JSON.
# Self-contained (it may run against another checkout of src/ for an A/B comparison, see bench_public_api).
_PUBLIC_API_CHILD = r"""
import json, statistics, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, '.')
from threadpoolctl import threadpool_limits
threadpool_limits(limits=1, user_api='blas')
import numpy as np
if cfg['mallopt']:  # what src/speed.py used to do: keep freed blocks in the heap instead of mmap/munmap
    import ctypes
    mallopt = ctypes.CDLL('libc.so.6').mallopt
    assert mallopt(-3, 32 * 1024 * 1024) and mallopt(-1, 512 * 1024 * 1024), 'mallopt failed'
from src.data import make
from src.nn import MLP, optimizers
ds = make('circles_course')
X, y = ds.X_train.astype(cfg['dtype']), ds.y_train
m, bs = X.shape[0], cfg['batch']
cases = {}
for R in cfg['Rs']:
    net = MLP([2, 10, 5, 1], activation='relu', init='he_normal', replicas=R, seed=0, dtype=cfg['dtype'])
    opt = optimizers.get('sgd', lr=0.01)
    if bs is None:
        batches = [(X, y)]
    else:  # two epochs of per-replica shuffled mini-batches (the last one partial), as src/loop.py draws them
        rng = np.random.default_rng(R)
        batches = []
        for _ in range(2):
            perm = np.stack([rng.permutation(m) for _ in range(R)])
            batches += [(X[perm[:, s:s + bs]], y[perm[:, s:s + bs]]) for s in range(0, m, bs)]
    steps = max(cfg['model_iters'] // R, len(batches))
    def run(net=net, opt=opt, batches=batches, steps=steps):
        nb = len(batches)
        for i in range(steps):
            Xb, yb = batches[i % nb]
            loss, grads = net.loss_and_grads(Xb, yb)
            opt.update(net.params, grads)
    run()  # warm-up: first-step allocations are not what is measured
    cases[R] = (run, steps * R)
cpu = {R: [] for R in cases}
for _ in range(cfg['rounds']):
    for R, (fn, n) in cases.items():
        c0 = time.process_time()
        fn()
        cpu[R].append((time.process_time() - c0) / n * 1e6)
print(json.dumps({str(R): statistics.median(v) for R, v in cpu.items()}))
"""


def _public_api_child(tree: Path, **cfg: Any) -> dict[int, float]:
    """Run `_PUBLIC_API_CHILD` in a fresh interpreter against the `src/` of `tree`; µs per model-iteration by R."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PUBLIC_API_CHILD, json.dumps(cfg)], cwd=tree, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"public-API benchmark child failed:\n{out.stderr[-3000:]}")
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def _checkout(ref: str, dest: Path) -> Path:
    """The `src/` of git ref `ref` exported into `dest` (for an A/B run against an earlier version)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def bench_public_api(model_iters: int, rounds: int, child_rounds: int, Rs: tuple[int, ...] = (1, 8, 32, 128),
                     variants: tuple[tuple[int | None, str], ...] = ((None, "float64"), (64, "float64"),
                                                                     (None, "float32"), (64, "float32")),
                     ab_ref: str | None = None) -> dict[str, Any]:
    """R replicas through the public `src.nn` API, per model-iteration, in fresh subprocesses that never call
    mallopt (issue 11, goal 1: replicas must pay off without glibc tricks) and, alternated with them, in ones
    that do (`src.speed.tune_malloc`: if reused buffers made it useless, the two agree). Full batch and
    mini-batches of 64, float64 and float32; one BLAS thread. With `ab_ref` (a git ref, e.g. the commit before a
    change) the same children also run against that version's `src/`, alternated, for a same-run comparison.

    Each child interleaves the R values over `rounds` and reports medians; children alternate over
    `child_rounds` and the figure is the median over children."""
    trees: dict[str, Path] = {"now": ROOT}
    tmp = None
    if ab_ref:
        tmp = tempfile.TemporaryDirectory(prefix="nnlab-bench-ab-")
        trees[ab_ref] = _checkout(ab_ref, Path(tmp.name))
        if (ROOT / "data").exists() and not (trees[ab_ref] / "data").exists():
            (trees[ab_ref] / "data").symlink_to(ROOT / "data")
    out: dict[str, Any] = {"model_iters": model_iters, "rounds": rounds, "child_rounds": child_rounds,
                           "Rs": list(Rs), "ab_ref": ab_ref, "variants": {}}
    try:
        for batch, dtype in variants:
            runs: dict[str, list[dict[int, float]]] = {}
            for _ in range(child_rounds):
                for tree_name, tree in trees.items():
                    for mallopt in (False, True):
                        key = f"{tree_name}_{'mallopt' if mallopt else 'plain'}"
                        runs.setdefault(key, []).append(_public_api_child(
                            tree, Rs=list(Rs), model_iters=model_iters, rounds=rounds, mallopt=mallopt,
                            batch=batch, dtype=dtype))
            med = {k: {R: statistics.median(r[R] for r in v) for R in Rs} for k, v in runs.items()}
            name = f"{'full' if batch is None else f'batch{batch}'}_{dtype}"
            v: dict[str, Any] = {"us_per_model_iter": {k: {str(R): x for R, x in d.items()} for k, d in med.items()}}
            for k, d in med.items():
                v[f"{k}_cheaper_than_R1"] = {str(R): d[Rs[0]] / d[R] for R in Rs}
            v["mallopt_gain"] = {str(R): med["now_plain"][R] / med["now_mallopt"][R] for R in Rs}
            if ab_ref:
                v[f"vs_{ab_ref}_mallopt"] = {str(R): med[f"{ab_ref}_mallopt"][R] / med["now_plain"][R] for R in Rs}
            out["variants"][name] = v
    finally:
        if tmp is not None:
            tmp.cleanup()
    full = out["variants"].get("full_float64")
    if full and 32 in Rs and 1 in Rs:
        r32 = full["now_plain_cheaper_than_R1"]["32"]
        goals = {"R=32 >= 3.5x cheaper per model than R=1, public API, no mallopt": {
            "goal": 3.5, "measured": r32, "met": r32 >= 3.5}}
        if ab_ref:
            ratio = full[f"vs_{ab_ref}_mallopt"]["32"]  # > 1: today's without mallopt is faster than before with it
            goals[f"R=32 no mallopt no slower than {ab_ref} with mallopt"] = {
                "goal": 1.0, "measured": ratio, "met": ratio >= 0.97}
        out["goals"] = goals
    return out


# -------------------------------------------------------------------------------------- subprocess sections


def _scratch_project(tmp: Path, studies: tuple[str, ...] = ("default",), data_from: Path | None = None) -> Path:
    """A throw-away copy of the project (tests/e2e_utils.make_project) with the datasets copied in."""
    sys.path.insert(0, str(ROOT / "tests"))
    from e2e_utils import make_project

    repo = make_project(tmp / "repo", studies=studies, git=False)
    src = data_from or ROOT / "data"
    if src.exists():
        shutil.copytree(src, repo / "data")
    else:
        subprocess.run([sys.executable, "-m", "src.data", "generate", "--out", "data"], cwd=repo, check=True,
                       env=_env(repo), capture_output=True)
    return repo


def _env(repo: Path, **extra: str) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from e2e_utils import env_for

    return env_for(repo, **extra)


def _run(cmd: list[str], repo: Path, **extra: str) -> dict[str, float]:
    """Wall time and peak RSS (MB) of one child process (os.wait4 gives that child's own rusage)."""
    t0 = time.perf_counter()
    with open(repo / "bench.log", "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        p = subprocess.Popen(cmd, cwd=repo, env=_env(repo, **extra), stdout=log, stderr=log)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (repo / "bench.log").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{tail}")
    return {"wall_s": wall, "maxrss_mb": ru.ru_maxrss / 1024.0}


# ru_maxrss survives exec, so a child forked from this (big) process would report at least our own RSS; the
# kernel's VmHWM is reset by exec. The child writes its own VmHWM at exit.
_PEAK = ("import atexit, runpy, sys\n"
         "out, mod = sys.argv.pop(1), sys.argv.pop(1)\n"
         "def _hwm():\n"
         "    kb = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]\n"
         "    open(out, 'w').write(kb)\n"
         "atexit.register(_hwm)\n"
         "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n")


def _train(repo: Path, args: list[str], peak: bool = False, **extra: str) -> dict[str, float]:
    if not peak or not Path("/proc/self/status").exists():
        return _run([sys.executable, "-m", "src.train", *args], repo, **extra)
    hwm = repo / ".peak_kb"
    res = _run([sys.executable, "-c", _PEAK, str(hwm), "src.train", *args], repo, **extra)
    res["maxrss_mb"] = int(hwm.read_text()) / 1024.0
    return res


def bench_overhead(n_jobs: int, rounds: int) -> dict[str, Any]:
    """Per-job overhead of a multirun with MLflow tracking: (T(n+1 jobs) - T(1 job)) / n, jobs of 1 epoch.

    The difference removes the process start, imports and store creation, i.e. it is the cost of a job once
    the worker is warm. Measured one job per config (`hydra/sweeper=basic`: a Hydra composition and launch per
    job) with the basic launcher (jobs in the launching process) and joblib n_jobs=2 (loky workers), and with the
    default sweeper, which packs the n+1 configs into one job (what a config then adds is its own MLflow run and
    files), and with the default sweeper one config per job (`hydra.sweeper.max_replicas=1`); each with and
    without artifacts (the figures of `tracking.figures`, CSVs, weights)."""
    out: dict[str, Any] = {"n_jobs": n_jobs, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-") as tmp:
        repo = _scratch_project(Path(tmp))
        seeds = ",".join(str(i) for i in range(n_jobs + 1))
        common = ["-m", "study=overhead", "data=moons", "train.epochs=1", "train.seeds=1", "train.progress=false"]
        basic = ["hydra/sweeper=basic"]
        variants = {
            "basic": basic,
            "basic_no_artifacts": [*basic, "tracking.artifacts=false"],
            "joblib2": [*basic, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            "joblib2_no_artifacts": [*basic, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                     "tracking.artifacts=false"],
            # the default sweeper: the n+1 configs (seeds) are one packed job; what each adds is its recording
            "vectorized": [],
            "vectorized_no_artifacts": ["tracking.artifacts=false"],
            # the default sweeper, one job per config (what configs that cannot share a pack get): one Hydra
            # composition per job (the launcher's), where Hydra's basic sweeper makes two (it validates first)
            "vectorized_one_per_job": ["hydra.sweeper.max_replicas=1"],
            "vectorized_one_per_job_no_artifacts": ["hydra.sweeper.max_replicas=1", "tracking.artifacts=false"],
        }
        _train(repo, [*common, "train.seed=0"])  # creates the store once (first creation is not what we measure)
        times: dict[str, dict[str, list[float]]] = {k: {"one": [], "many": []} for k in variants}
        for _ in range(rounds):
            for k, extra in variants.items():
                times[k]["one"].append(_train(repo, [*common, *extra, "train.seed=0"])["wall_s"])
                times[k]["many"].append(_train(repo, [*common, *extra, f"train.seed={seeds}"])["wall_s"])
        for k in variants:
            one, many = statistics.median(times[k]["one"]), statistics.median(times[k]["many"])
            out[k] = {"one_job_s": one, f"{n_jobs + 1}_jobs_s": many, "per_warm_job_s": (many - one) / n_jobs}
    b = out["basic_no_artifacts"]["per_warm_job_s"]
    out["goals"] = {"<= 0.2 s per warm job (basic, no artifacts)": b <= 0.2,
                    "<= 0.4 s per warm job (basic, artifacts)": out["basic"]["per_warm_job_s"] <= 0.4}
    return out


def bench_memory() -> dict[str, Any]:
    """Peak RSS of one worker process: one job of the default preset (R=5), and the same job at R=128."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-") as tmp:
        repo = _scratch_project(Path(tmp))
        base = ["experiment=default", "data=moons", "init=he", "optimizer=adam", "train.progress=false"]
        _train(repo, [*base, "train.epochs=1"])  # store creation outside the measurement
        out["default_R5"] = _train(repo, base, peak=True)
        out["default_R128"] = _train(repo, [*base, "train.seeds=128"], peak=True)
    out["goals"] = {"R=128 worker < 500 MB": out["default_R128"]["maxrss_mb"] < 500}
    return out


def bench_vectorize(rounds: int, epochs: int | None = None, extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """The default grid (48 jobs) run as-is vs packed by the vectorized sweeper; both with MLflow tracking."""
    out: dict[str, Any] = {"rounds": rounds, "extra_args": list(extra_args)}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-") as tmp:
        repo = _scratch_project(Path(tmp))
        extra = [f"train.epochs={epochs}"] if epochs else []
        extra += list(extra_args)
        _train(repo, ["study=default", "train.epochs=1", "train.seeds=1", "train.progress=false"])
        t: dict[str, list[float]] = {"per_job": [], "vectorized": []}
        for _ in range(rounds):
            t["per_job"].append(_train(repo, ["-m", "experiment=default", "hydra/sweeper=basic", *extra])["wall_s"])
            t["vectorized"].append(_train(repo, ["-m", "experiment=default", "hydra/sweeper=vectorized", *extra])
                                   ["wall_s"])
        out["per_job_s"] = statistics.median(t["per_job"])
        out["vectorized_s"] = statistics.median(t["vectorized"])
        out["speedup"] = out["per_job_s"] / out["vectorized_s"]
        out["epochs"] = epochs or "preset"
    return out


_PACK_FIT = re.compile(r"packed job: .*, ([0-9.]+)s$", re.MULTILINE)


def _fit_seconds(log: str) -> float:
    """The summed fit time of a sweep's packed jobs, from their `packed job: ..., <t>s` lines."""
    return sum(float(m) for m in _PACK_FIT.findall(log))


def bench_bookkeeping(quick: bool = False) -> dict[str, Any]:
    """Issue 11 goal 2: the card's default grid exactly as its preset runs it (48 configs, tuning, MLflow child
    runs with curves, figures and models): wall time / the summed time of its packed fits. One round: the ratio
    is taken inside one run, so machine load scales both sides."""
    extra = ["train.epochs=20"] if quick else []
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-book-") as tmp:
        repo = _scratch_project(Path(tmp))
        _train(repo, ["study=default", "train.epochs=1", "train.seeds=1", "train.progress=false"])  # the store
        log = repo / "bench.log"
        start = log.stat().st_size
        res = _train(repo, ["-m", "experiment=default", *extra])
        fits = _fit_seconds(log.read_text()[start:])
    ratio = res["wall_s"] / fits if fits else float("nan")
    return {"wall_s": res["wall_s"], "fits_s": fits, "ratio": ratio, "quick": quick,
            "goals": {"default grid wall <= 2x its fits": {"goal": 2.0, "measured": ratio, "met": ratio <= 2.0}}}


SCALE_INITS = ("zeros", "normal", "randn_div10", "randn_x10", "uniform", "xavier", "xavier_normal", "he",
               "he_uniform", "lecun_normal")
SCALE_LRS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SCALE_CLIPS = ("none", "norm_1", "norm_5", "value_1", "value_10")


def scale_preset(epochs: int = 100, lrs: tuple[float, ...] = SCALE_LRS, inits: tuple[str, ...] = SCALE_INITS,
                 clips: tuple[str, ...] = SCALE_CLIPS) -> str:
    """The 1,000-config grid of issue 11 goal 5 as a preset: 10 lrs x 10 inits x 2 optimizers x 5 clip settings,
    5 seeds each, moons, every config an MLflow child run with its params, curves and final metrics (no figures
    or model files: those cost per config whatever the grid, see the overhead section)."""
    return ("# @package _global_\nstudy: scale\n"
            f"train:\n  epochs: {epochs}\n  seeds: 5\n  log_every: 10\n  progress: false\n"
            "tracking:\n  artifacts: false\n  model: false\n"
            "hydra:\n  sweeper:\n    params:\n"
            f"      train.lr: {','.join(map(str, lrs))}\n      init: {','.join(inits)}\n"
            f"      optimizer: sgd,adam\n      clip: {','.join(clips)}\n")


def bench_scale(quick: bool = False) -> dict[str, Any]:
    """Issue 11 goal 5: the 1,000-config grid with the basic launcher (every job in the launching process) and
    with joblib on both cores (two packs at a time: one fits while the other records); wall time, peak RSS of
    the launching process (basic) and what the console shows at the end."""
    out: dict[str, Any] = {}
    for name, launcher in (("basic", []), ("joblib2", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])):
        out[name] = _scale_run(quick, launcher)
    best = min(out.values(), key=lambda v: v["wall_s"])
    out["goals"] = {"1,000-config grid <= 180 s": {"goal": 180, "measured": best["wall_s"],
                                                   "met": best["wall_s"] <= 180},
                    "peak RSS <= 1 GB": {"goal": 1024, "measured": out["basic"]["maxrss_mb"],
                                         "met": out["basic"]["maxrss_mb"] <= 1024}}
    return out


def _scale_run(quick: bool, launcher: list[str]) -> dict[str, Any]:
    if quick:
        preset = scale_preset(epochs=5, lrs=(0.01, 0.1), inits=("he", "xavier"), clips=("none", "norm_1"))
    else:
        preset = scale_preset()
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-scale-") as tmp:
        repo = _scratch_project(Path(tmp))
        (repo / "conf" / "experiment" / "scale.yaml").write_text(preset)
        _train(repo, ["study=scale", "train.epochs=1", "train.seeds=1", "train.progress=false"])  # the store
        log = repo / "bench.log"
        start = log.stat().st_size
        res = _train(repo, ["-m", "experiment=scale", *launcher], peak=not launcher)
        text = log.read_text()[start:]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
        exp = client.get_experiment_by_name("scale")
        runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    configs = int(re.search(r"\[vectorized\] (\d+) configs packed into (\d+) jobs", text).group(1))
    tail = text[text.rfind("| # |"):] if "| # |" in text else ""
    out = {"configs": configs, "child_runs": len(children), "finished": sum(r.info.status == "FINISHED"
                                                                           for r in children),
           "wall_s": res["wall_s"], "maxrss_mb": res["maxrss_mb"], "fits_s": _fit_seconds(text),
           "console_lines_at_end": len(tail.splitlines()), "launcher": " ".join(launcher) or "basic"}
    print(f"[bench] scale ({out['launcher']}): {out['configs']} configs, {out['wall_s']:.0f} s, "
          f"{out['maxrss_mb']:.0f} MB", file=sys.stderr, flush=True)
    return out


# The figure is for 7 learning rates (the default tune.lrs); the presets add a value where a best lr sat at
# the grid's end, so the benchmark states the grid itself.
SEVEN_LRS = "tune.lrs=[0.001,0.003,0.01,0.03,0.1,0.3,1.0]"


def _tuning_fits(study: str, quick: bool) -> dict[str, Callable[[], Any]]:
    """In-process fits of one pack of `study`'s preset: untuned (its configs on the report seeds, one fit) and tuned
    (src/lab/tuning.py: lrs × tuning seeds + report seeds, then the chosen lrs: two fits)."""
    from src import data
    from src.lab.build import build_packed
    from src.lab.job import train
    from src.lab.preflight import compose
    from src.lab.tuning import fit_tuned

    grids = {"s3_optim": [["optimizer=sgd"]],
             "default": [[f"init={i}", f"train.clip_norm={c}", "data=moons", "optimizer=sgd", "train.patience=null"]
                         for i in ("zeros", "xavier", "he") for c in ("null", "1.0")]}
    extra = ["tracking.enabled=false", SEVEN_LRS] + (["train.epochs=20"] if quick else [])
    cfgs = [compose([f"experiment={study}", *ov, *extra]) for ov in grids[study]]
    ds = data.make(str(cfgs[0].data.name))  # the generate stage's recipe and seed, in memory
    return {"untuned": lambda: train(build_packed(cfgs, ds)), "tuned": lambda: fit_tuned(cfgs, ds, train)}


def bench_tuning(rounds: int, quick: bool = False) -> dict[str, Any]:
    """The cost of tuning 7 learning rates: the same grid (same configs, same report seeds) tuned vs untuned.

    Two measurements, each alternated over `rounds`: (1) the whole sweep as a user runs it, `python -m src.train -m
    experiment=s3_optim` with MLflow and the preset's artifacts, with `tune.enabled=false` as the baseline (wall
    time: what the user waits for); (2) the fits alone, in process, for one pack of s3_optim (one optimizer,
    mini-batches) and one of the default grid (six arms, full batch): CPU time, BLAS on one thread."""
    out: dict[str, Any] = {"rounds": rounds}
    for study in ("s3_optim", "default"):
        t = interleaved(_tuning_fits(study, quick), rounds)
        out[f"fits_{study}"] = {**t, "ratio_cpu": t["tuned"]["cpu"] / t["untuned"]["cpu"]}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-tune-") as tmp:
        repo = _scratch_project(Path(tmp), studies=("s3_optim",))
        extra = [SEVEN_LRS] + (["train.epochs=20"] if quick else [])
        _train(repo, ["study=s3_optim", "train.epochs=1", "train.seeds=1"])  # the store exists before timing
        w: dict[str, list[float]] = {"untuned": [], "tuned": []}
        for _ in range(rounds):
            w["untuned"].append(_train(repo, ["-m", "experiment=s3_optim", "tune.enabled=false", *extra])["wall_s"])
            w["tuned"].append(_train(repo, ["-m", "experiment=s3_optim", *extra])["wall_s"])
        out["sweep_s3_optim"] = {k: statistics.median(v) for k, v in w.items()}
        out["sweep_s3_optim"]["ratio_wall"] = out["sweep_s3_optim"]["tuned"] / out["sweep_s3_optim"]["untuned"]
    out["goals"] = {"tuned sweep <= 2x untuned (wall)": out["sweep_s3_optim"]["ratio_wall"] <= 2.0}
    return out


def bench_dvc() -> dict[str, Any]:
    """The default `dvc repro` in a scratch git+DVC copy (all studies of dvc.yaml), timed stage by stage."""
    import yaml

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    studies = tuple(spec["stages"]["train"]["foreach"])
    out: dict[str, Any] = {"studies": list(studies), "stages": {}}
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-dvc-") as tmp:
        sys.path.insert(0, str(ROOT / "tests"))
        from e2e_utils import make_project

        repo = make_project(Path(tmp) / "repo", studies=studies, git=False, keep_stages=tuple(spec["stages"]))
        for cmd in (["git", "init", "-q", "-b", "main"], [sys.executable, "-m", "dvc", "init", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=repo, env=_env(repo), check=True, capture_output=True)
        order = ["generate"] + [f"train@{s}" for s in studies] + [s for s in spec["stages"]
                                                                  if s not in ("generate", "train")]
        for stage in order:
            out["stages"][stage] = _run([sys.executable, "-m", "dvc", "repro", "-s", stage], repo)["wall_s"]
        out["noop_repro_s"] = _run([sys.executable, "-m", "dvc", "repro"], repo)["wall_s"]
    out["total_s"] = sum(out["stages"].values())
    out["goals"] = {"dvc repro <= 120 s": out["total_s"] <= 120}
    return out


# ------------------------------------------------------------------------------------------------- reporting


def table(res: dict[str, Any]) -> str:
    lines = ["| figure | measured | goal | met |", "|---|---|---|---|"]

    def row(fig: str, val: str, goal: str, ok: bool | None) -> None:
        lines.append(f"| {fig} | {val} | {goal} | {'—' if ok is None else ('yes' if ok else 'no')} |")

    c = res.get("core")
    if c:
        p, g = c["per_iteration"], c["goals"]
        row("plain NumPy loop, R=1 (baseline)", f"{p['plain_numpy']['cpu_us']:.0f} µs/iter", "", None)
        fit, skl = g["fit <= 1.3x the plain NumPy loop"], g["scikit-learn >= 1.5x slower than fit"]
        row("nnlab `fit` / plain loop (R=1)", f"{fit['measured']:.2f}×", "≤ 1.3×", fit["met"])
        row("nnlab `MLP` step+update / plain loop (R=1)", f"{c['nnlab_step_vs_plain']:.2f}×", "", None)
        row("scikit-learn MLPClassifier / nnlab fit (R=1)", f"{skl['measured']:.2f}× slower", "≥ 1.5×", skl["met"])
    r = res.get("replicas")
    if r:
        for x in r["rows"]:
            row(f"R={x['R']}: cost per replica-iteration vs R=1 (`fit`)",
                f"{x['fit_cheaper_than_R1']:.1f}× cheaper ({x['fit_us_per_replica_iter']:.1f} µs; "
                f"{x['gflops_per_s']:.2f} GFLOP/s, ≥{x['gbytes_per_s_lower_bound']:.1f} GB/s)", "", None)
    pa = res.get("public_api")
    if pa:
        for name, v in pa["variants"].items():
            cheap, mal, us = v["now_plain_cheaper_than_R1"], v["mallopt_gain"], v["us_per_model_iter"]["now_plain"]
            for R in pa["Rs"][1:]:
                goal = name == "full_float64" and R == 32
                row(f"public API, fresh process, no mallopt, {name}: R={R} per model vs R=1",
                    f"{cheap[str(R)]:.1f}× cheaper ({us[str(R)]:.1f} vs {us[str(pa['Rs'][0])]:.1f} µs); "
                    f"mallopt would gain {mal[str(R)]:.2f}×", "≥ 3.5×" if goal else "",
                    cheap[str(R)] >= 3.5 if goal else None)
        for k, gl in pa.get("goals", {}).items():
            if "no slower" in k:
                row(k, f"{gl['measured']:.2f}× (>1: faster)", "≥ 1.0×", gl["met"])
    for key, what in (("vectorize", ""), ("vectorize_no_artifacts", ", tracking.artifacts=false")):
        v = res.get(key)
        if v:
            row(f"default grid{what}: 48 jobs / vectorized (packed) jobs", f"{v['speedup']:.1f}× faster "
                f"({v['per_job_s']:.0f} s → {v['vectorized_s']:.0f} s)", "", None)
    ps = res.get("pack_size")
    if ps:
        for name, v in ps["nets"].items():
            us = ", ".join(f"R={R}: {x:.0f}" for R, x in v["us_per_replica_step"].items())
            row(f"pack size, {name}: CPU µs per replica-step", f"{us}; R={ps['Rs'][-1]} "
                f"{v['largest_R_vs_cheapest']:.2f}× the cheapest (R={v['cheapest_R']})", "", None)
    ip = res.get("inplace")
    if ip:
        row(f"element-wise passes at R={ip['R']} (course net): replaced / in place, ReLU forward, backward; "
            "dense_backward with Wᵀ viewed / copied",
            f"{ip['relu_forward_gain']:.2f}×, {ip['relu_backward_gain']:.2f}×; {ip['dense_backward_gain']:.2f}×",
            "", None)
    mb = res.get("minibatch")
    if mb:
        row(f"mini-batch fit (R={mb['replicas']}, batches of 64): batches gathered by X[idx] / by np.take",
            f"{mb['fancy_index_vs_take']:.2f}× (the batches: {mb['batches_share_of_fit']:.0%} of the fit)", "", None)
    o = res.get("overhead")
    if o:
        for k in ("basic_no_artifacts", "basic", "joblib2_no_artifacts", "joblib2", "vectorized_no_artifacts",
                  "vectorized", "vectorized_one_per_job_no_artifacts", "vectorized_one_per_job"):
            if k in o:
                limit = {"basic_no_artifacts": 0.2, "basic": 0.4}.get(k)
                row(f"warm job overhead, {k}", f"{o[k]['per_warm_job_s']:.2f} s/job",
                    f"≤ {limit} s" if limit else "", o[k]["per_warm_job_s"] <= limit if limit else None)
    m = res.get("memory")
    if m:
        row("peak RSS, default job (R=5)", f"{m['default_R5']['maxrss_mb']:.0f} MB", "", None)
        row("peak RSS, R=128", f"{m['default_R128']['maxrss_mb']:.0f} MB", "< 500 MB",
            m["default_R128"]["maxrss_mb"] < 500)
    if res.get("tracking"):
        from benchmarks import tracking

        for fig, val in tracking.rows(res["tracking"]):
            row(fig, val, "", None)
    tu = res.get("tuning")
    if tu:
        sw = tu["sweep_s3_optim"]
        row("s3_optim sweep (7 optimizers, MLflow + artifacts): tuned over 7 lrs / untuned, same report seeds",
            f"{sw['ratio_wall']:.2f}× ({sw['untuned']:.0f} s → {sw['tuned']:.0f} s)", "≤ 2×",
            tu["goals"]["tuned sweep <= 2x untuned (wall)"])
        for study, what in (("s3_optim", "one s3_optim pack (1 optimizer, mini-batch)"),
                            ("default", "one default pack (6 arms, full batch)")):
            f = tu[f"fits_{study}"]
            row(f"fits only, {what}: tuned / untuned", f"{f['ratio_cpu']:.2f}× CPU ({f['untuned']['cpu']:.1f} s → "
                f"{f['tuned']['cpu']:.1f} s)", "", None)
    b = res.get("bookkeeping")
    if b:
        gl = b["goals"]["default grid wall <= 2x its fits"]
        row("default grid as its preset runs it (48 configs, tuning, MLflow runs, figures, models): wall / its fits",
            f"{b['ratio']:.2f}× ({b['wall_s']:.0f} s / {b['fits_s']:.0f} s)", "≤ 2×", gl["met"])
    sc = res.get("scale")
    if sc:
        for name in ("basic", "joblib2"):
            v = sc[name]
            row(f"{v['configs']}-config grid, 5 seeds, every config an MLflow child run ({v['child_runs']} runs, "
                f"{v['finished']} finished), {v['launcher']}", f"{v['wall_s']:.0f} s (fits {v['fits_s']:.0f} s)",
                "≤ 180 s", v["wall_s"] <= 180)
        row("same, peak RSS (basic launcher: every job in one process)", f"{sc['basic']['maxrss_mb']:.0f} MB",
            "≤ 1 GB", sc["goals"]["peak RSS <= 1 GB"]["met"])
    d = res.get("dvc")
    if d:
        split = ", ".join(f"{k} {s:.0f} s" for k, s in d["stages"].items())
        row("default `dvc repro` (2 cores)", f"{d['total_s']:.0f} s ({split})", "≤ 120 s", d["total_s"] <= 120)
    return "\n".join(lines)


def _tracking() -> Any:
    from benchmarks import tracking

    return tracking


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script works (seconds)")
    ap.add_argument("--only", default="core,replicas,public_api,minibatch,inplace,pack_size,vectorize,overhead,memory,"
                                      "tracking,tuning",
                    help="comma-separated sections (core, replicas, public_api, minibatch, inplace, pack_size, "
                         "vectorize, vectorize_no_artifacts, overhead, memory, tracking, tuning, bookkeeping, "
                         "scale, dvc); bookkeeping, scale and "
                         "dvc take minutes and run only when named")
    ap.add_argument("--ab-ref", default=None, help="public_api: also run the src/ of this git ref (e.g. the commit "
                    "before a change), alternated with the current one, with and without mallopt")
    ap.add_argument("--dvc", action="store_true", help="also run the default `dvc repro` (minutes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.dvc and "dvc" not in sections:
        sections.append("dvc")
    q = args.quick
    res: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "numpy": np.__version__, "load_avg_start": os.getloadavg()},
                           "quick": q}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "core": lambda: bench_core(200 if q else 15000, 1 if q else 3),
        "replicas": lambda: bench_replicas(50 if q else 1000, 1 if q else 3, (1, 8) if q else (1, 8, 32, 128)),
        "minibatch": lambda: bench_minibatch(2 if q else 60, 1 if q else 5),
        "inplace": lambda: bench_inplace(5 if q else 400, 1 if q else 5, 4 if q else 32),
        "pack_size": lambda: bench_pack_size(8 if q else 960, 1 if q else 3, (1, 3) if q else (1, 3, 6, 12, 24, 48)),
        "public_api": lambda: bench_public_api(
            256 if q else 9600, 1 if q else 3, 1 if q else 3, (1, 8) if q else (1, 8, 32, 128),
            ((None, "float64"),) if q else ((None, "float64"), (64, "float64"), (None, "float32"), (64, "float32")),
            ab_ref=args.ab_ref),
        "vectorize": lambda: bench_vectorize(1, epochs=20 if q else None),
        "vectorize_no_artifacts": lambda: bench_vectorize(1, epochs=20 if q else None,
                                                          extra_args=("tracking.artifacts=false",)),
        "overhead": lambda: bench_overhead(2 if q else 8, 1 if q else 2),
        "memory": bench_memory,
        "tracking": lambda: _tracking().bench_tracking(3 if q else 20, 1 if q else 3, (1, 2) if q else (1, 4)),
        "tuning": lambda: bench_tuning(1 if q else 3, quick=q),
        "bookkeeping": lambda: bench_bookkeeping(quick=q),
        "scale": lambda: bench_scale(quick=q),
        "dvc": bench_dvc,
    }
    for s in sections:
        if s not in runners:
            ap.error(f"unknown section {s!r}; valid: {', '.join(runners)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    for s in sections:
        t0 = time.perf_counter()
        print(f"[bench] {s} ...", file=sys.stderr, flush=True)
        try:
            res[s] = runners[s]()
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the minutes the others took
            failed.append(s)
            res[s] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[bench] {s} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        res[s]["section_wall_s"] = time.perf_counter() - t0
        _write(out, res)  # after every section: an interrupted or failing run keeps what it measured
    res["machine"]["load_avg_end"] = os.getloadavg()
    _write(out, res)
    print(table({k: v for k, v in res.items() if not (isinstance(v, dict) and "error" in v)}))
    print(f"\n(wrote {args.out})", file=sys.stderr)
    if failed:
        print(f"[bench] failed sections: {', '.join(failed)} (their errors are in {args.out})", file=sys.stderr)
        return 1
    return 0


def _write(out: Path, res: dict[str, Any]) -> None:
    """Write the results so far, atomically (a reader, or a later interrupt, never sees half a file)."""
    from src.files import atomic_write_text

    atomic_write_text(out, json.dumps(res, indent=2, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
