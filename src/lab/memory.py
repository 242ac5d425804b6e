"""How much memory a configured run needs, estimated before any work, and the refusal above a limit.

Why: `train.seeds=100000000` (or `model.hidden=[100000,100000]`) used to start training and grow until the machine
ran out of memory or a MemoryError traceback came minutes later. The estimate counts what :func:`src.lab.loop.fit`
holds at its peak: the weights of R replicas with their gradients, optimizer state and best-weights copy; the
activations of the forward/backward passes whose buffers the net keeps (the mini-batch and each split's evaluation,
one set per input shape); and the
history (one (R,) row per metric per log point). The constants are calibrated against `tracemalloc` peaks of real
fits (tests/test_robustness_hostile.py checks the estimate stays within [1x, 3x] of the measured peak), so it errs
on the safe side without refusing what fits. `train.max_memory_gb` is the limit (raise it for a bigger machine).
"""

from __future__ import annotations

from typing import Any

OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 2, "adam": 2, "adamw": 2}
ACTIVATION_COPIES = 7  # per unit per row of a kept pass: z (the activation overwrites it), dz, da, BN/dropout, temps
PARAM_COPIES = 4  # weights, gradients, update temporaries, the diagnostics' weight-gradient taps
HISTORY_METRICS = 6  # lr, grad_norm, train/val loss and accuracy
ROW_OVERHEAD = 112  # bytes of one small NumPy array object (a history row) besides its data


class MemoryLimitError(ValueError):
    """The configured run would need more memory than `train.max_memory_gb`; the message is one line."""


def estimate_bytes(cfg: Any, sizes: list[int], rows: dict[str, int]) -> int:
    """Peak bytes of `fit` for `cfg` on a net of layer `sizes` (input..output) and splits of `rows` rows."""
    t, m = cfg.train, cfg.model
    R = int(t.seeds)
    item = 4 if str(t.dtype) == "float32" else 8
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    if m.batchnorm:
        n_params += 4 * sum(sizes[1:-1])  # gamma, beta, running mean and variance
    states = OPTIMIZER_STATES.get(str(cfg.optimizer.name), 2) + (1 if cfg.optimizer.get("amsgrad") else 0)
    copies = PARAM_COPIES + states + (1 if t.patience is not None else 0)
    weights = R * n_params * item * copies
    batch = rows["train"] if t.batch_size is None else min(int(t.batch_size), rows["train"])
    activations = R * sum(_kept_pass_rows(R, sizes, item, batch, rows)) * sum(sizes) * item * ACTIVATION_COPIES
    activations += (rows["train"] + rows["val"]) * sizes[0] * item  # train and val stacked once (TrainVal)
    if t.batch_size is not None and t.shuffle == "random":
        activations += R * batch * (sizes[0] + 1) * 8  # each replica's own shuffled copy of the batch
    log_points = int(t.epochs) // int(t.log_every) + 2
    history = 2 * log_points * HISTORY_METRICS * (R * 8 + ROW_OVERHEAD)  # the rows, then their stacked copy
    return int(weights + activations + history)


def _kept_pass_rows(R: int, sizes: list[int], item: int, batch: int, rows: dict[str, int]) -> set[int]:
    """Row counts of the passes whose buffers the net keeps (src/nn/workspace.py: one set per input shape): the
    mini-batch, the last partial batch, the log points' train + val pass (src/lab/loop.py `TrainVal`) and each
    split's final evaluation (a pass larger than an eval slice goes in slices of `rows_per_slice`, whose buffers
    are counted once)."""
    from src.nn.mlp import MLP

    rows_per_slice = max(256, MLP.EVAL_CHUNK_BYTES // (R * max(sizes) * item))
    kept = {batch, rows["train"] % batch or batch}
    kept |= {min(n, rows_per_slice) for n in (*rows.values(), rows["train"] + rows["val"])}
    return set(sorted(kept, reverse=True)[:MLP.MAX_WORKSPACES])


def check(cfg: Any, sizes: list[int], rows: dict[str, int]) -> int:
    """Raise :class:`MemoryLimitError` when the estimate exceeds `train.max_memory_gb`; return the estimate."""
    need = estimate_bytes(cfg, sizes, rows)
    limit_gb = float(cfg.train.max_memory_gb)
    if need > limit_gb * 1e9:
        raise MemoryLimitError(
            f"this run needs about {_gb(need)} of memory (train.seeds={int(cfg.train.seeds)}, layer sizes {sizes}, "
            f"{int(cfg.train.epochs) // int(cfg.train.log_every) + 1} log points), above train.max_memory_gb="
            f"{limit_gb:g}: make it smaller, or raise train.max_memory_gb if the machine has the memory")
    return need


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"
