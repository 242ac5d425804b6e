"""Backprop of a configured net against centred differences: the check behind `python -m src.gradcheck` and S7.

The net that ``python -m src.train <overrides>`` would train is built (same Hydra config, same builder,
``src.lab.build``) in float64, and on a small batch of its dataset every parameter's gradient from
``loss_and_grads`` is compared with centred differences (``src.nn.gradcheck.check_mlp``: dropout masks drawn once
and held fixed, batch norm in train mode, the L2 term included). The relative error is
``‖g − n‖₂ / (‖g‖₂ + ‖n‖₂)`` per parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD = 1e-7  # the course's bound


class GradcheckError(ValueError):
    """A configuration or data problem; the message is one line."""


def compose(overrides: list[str]) -> Any:
    """The validated config ``python -m src.train <overrides>`` would run (one-line error otherwise)."""
    return compose_all([overrides])[0]


def compose_all(override_lists: Sequence[Sequence[str]]) -> list[Any]:
    """:func:`compose` of each override list, with one Hydra composition per distinct set of group choices
    (`data=digits`, `init=xavier`; the pre-flight's Composer): S7's 12 nets need 5 (~0.15 s each)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.lab.config import ConfigError, validate
    from src.lab.preflight import composing, one_line

    cfgs = []
    try:
        with composing() as composer:
            for overrides in override_lists:
                try:
                    cfg = composer.config(list(overrides))
                except Exception as exc:  # noqa: BLE001 - every composition error becomes one line
                    raise GradcheckError(one_line(exc)) from exc
                try:
                    validate(cfg)
                except ConfigError as exc:
                    raise GradcheckError(str(exc)) from exc
                cfgs.append(cfg)
    finally:
        GlobalHydra.instance().clear()
    return cfgs


def check_config(overrides: list[str], *, batch: int = 16, replicas: int = 2, eps: float = 1e-7,
                 seed: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Build the net ``python -m src.train <overrides>`` would train in float64 and check it on `batch` training rows.

    Returns one row per parameter (name, shape, rel_error) and a one-line description of the net checked.
    """
    return check_composed(compose(overrides), batch=batch, replicas=replicas, eps=eps, seed=seed)


def check_composed(cfg: Any, *, batch: int = 16, replicas: int = 2, eps: float = 1e-7,
                   seed: int = 0) -> tuple[list[dict[str, Any]], str]:
    """:func:`check_config` of a config from :func:`compose_all` (changed in place: float64, the replicas)."""
    from src.data import DatasetError
    from src.lab.build import build_net, load_dataset
    from src.nn import gradcheck

    cfg.train.dtype = "float64"
    cfg.train.seeds = int(replicas)
    cfg.train.seed = int(seed)
    try:
        ds = load_dataset(cfg)
    except DatasetError as exc:
        raise GradcheckError(str(exc)) from exc
    net = build_net(cfg, ds)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.y_train), size=min(batch, len(ds.y_train)), replace=False)
    X, y = np.asarray(ds.X_train[idx], dtype=np.float64), np.asarray(ds.y_train[idx])
    errors = gradcheck.check_mlp(net, X, y, eps=eps, seed=seed)
    rows = [{"param": k, "shape": "x".join(str(s) for s in net.params[k].shape), "rel_error": float(v)}
            for k, v in errors.items()]
    m = cfg.model
    desc = (f"data={cfg.data.name} sizes={net.sizes} activation={m.activation} init={cfg.init.name} "
            f"batchnorm={bool(m.batchnorm)} dropout={float(m.dropout)} l2={float(m.l2)} float64 "
            f"batch={len(y)} replicas={net.replicas} eps={eps:g}")
    return rows, desc


def table(rows: list[dict[str, Any]], threshold: float) -> str:
    """A fixed-width table: parameter, shape (R x ...), relative error, ok/FAIL."""
    lines = [f"{'param':<12} {'shape (R, ...)':<16} {'rel. error':>11}  result"]
    for r in rows:
        ok = r["rel_error"] <= threshold
        lines.append(f"{r['param']:<12} {r['shape']:<16} {r['rel_error']:>11.2e}  {'ok' if ok else 'FAIL'}")
    return "\n".join(lines)
