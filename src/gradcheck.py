"""`python -m src.gradcheck [overrides...]`: check backprop of any configured net against finite differences.

SPEC S7 (the course's "Gradient Checking"): the net that ``python -m src.train <overrides>`` would train is built
(same Hydra config, same ``src.lab.build.build_net``) in float64, and on a small batch of the configured dataset every
parameter's gradient from ``loss_and_grads`` is compared with centred differences (``src.nn.gradcheck.check_mlp``:
ε = 1e-7, dropout masks drawn once and held fixed, batch norm in train mode, the L2 term included). The relative
error ``‖g − n‖₂ / (‖g‖₂ + ‖n‖₂)`` is printed per parameter; above ``--threshold`` (default 1e-7, the course's
bound) the exit code is 1.

    python -m src.gradcheck                                    # the default net (moons, [10,5] ReLU, He)
    python -m src.gradcheck data=digits model.batchnorm=true model.dropout=0.2 model.l2=0.1
    python -m src.gradcheck --suite --out results/s7_gradcheck # the DVC stage: a list of configured nets

Why the threshold may need raising for ReLU: a finite difference straddling the kink at 0 (a pre-activation within
ε of 0) sees a slope of 1/2 where backprop sees 0 or 1; on a real batch that is rare but not impossible, and it is
a property of the check, not a bug of backprop. Such a case shows one parameter with an error of ~1e-4..1e-2 while
the same net with tanh passes; re-run with another ``--seed`` (batch and masks) or ``--threshold 1e-5``. Very
small gradients (deep sigmoid nets) hit the rounding floor ``ulp(f)/ε`` of the difference itself: ``--eps 1e-6``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD = 1e-7
# The nets of the DVC stage: (label, overrides, eps, threshold); None = the command line's value.
# Small widths keep the O(#params) finite differences quick.
SUITE: list[tuple[str, list[str], float | None, float | None]] = [
    ("relu (default net)", [], None, None),
    ("sigmoid + xavier", ["model.activation=sigmoid", "init=xavier"], None, None),
    ("tanh + xavier", ["model.activation=tanh", "init=xavier"], None, None),
    ("leaky_relu + he", ["model.activation=leaky_relu"], None, None),
    ("batch norm", ["model.batchnorm=true", "model.activation=tanh"], None, None),
    ("dropout 0.3", ["model.dropout=0.3", "model.activation=tanh"], None, None),
    ("L2 0.7", ["model.l2=0.7"], None, None),
    ("BN + dropout + L2", ["model.batchnorm=true", "model.dropout=0.2", "model.l2=0.1", "model.activation=tanh"],
     None, None),
    ("binary: circles", ["data=circles", "model.activation=tanh"], None, None),
    ("multi-class: digits", ["data=digits", "model.activation=tanh"], None, None),
    ("digits + BN + dropout + L2", ["data=digits", "model.batchnorm=true", "model.dropout=0.2", "model.l2=0.1"],
     None, None),
    # The 8-layer sigmoid net's first-layer gradients are ~1e-8 of the loss (the vanishing of S4): below what a
    # float64 centred difference resolves to 1e-7 at ANY eps (1e-7: 6e-5, 1e-5: 6e-6, 1e-4: 5e-7). Checked at
    # eps 1e-4 against 1e-6, and said so, rather than hidden.
    ("deep sigmoid 8x32 (vanishing)", ["model=deep_sigmoid", "init=xavier"], 1e-4, 1e-6),
]


class GradcheckError(ValueError):
    """A configuration or data problem; the message is one line."""


def compose(overrides: list[str]) -> Any:
    """The validated config ``python -m src.train <overrides>`` would run (one-line error otherwise)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.lab.config import ConfigError, validate
    from src.lab.preflight import _compose, one_line

    try:
        cfg = _compose(list(overrides))
    except Exception as exc:  # noqa: BLE001 - every composition error becomes one line
        raise GradcheckError(one_line(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    try:
        validate(cfg)
    except ConfigError as exc:
        raise GradcheckError(str(exc)) from exc
    return cfg


def check_config(overrides: list[str], *, batch: int = 16, replicas: int = 2, eps: float = 1e-7,
                 seed: int = 0) -> tuple[list[dict[str, Any]], str]:
    """Build the configured net in float64 and check it on `batch` training rows.

    Returns one row per parameter (name, shape, rel_error) and a one-line description of the net checked.
    """
    from src.data import DatasetError
    from src.lab.build import build_net, load_dataset
    from src.nn import gradcheck

    cfg = compose(overrides)
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


def run_suite(out: Path, *, threshold: float, batch: int, replicas: int, eps: float, seed: int) -> int:
    """Check every net of :data:`SUITE`; write ``gradcheck.csv`` and ``metrics.json``; return #failed nets."""
    from src.files import atomic_write_json, atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["net", "overrides", "param", "shape", "rel_error", "eps", "threshold", "passed"])
    worst: dict[str, float] = {}
    failed = 0
    metrics: dict[str, Any] = {}
    for label, ov, net_eps, net_thr in SUITE:
        e = eps if net_eps is None else net_eps
        thr = threshold if net_thr is None else net_thr
        rows, desc = check_config(ov, batch=batch, replicas=replicas, eps=e, seed=seed)
        worst[label] = max(r["rel_error"] for r in rows)
        failed += worst[label] > thr
        print(f"\n== {label}: {desc}\n{table(rows, thr)}", flush=True)
        for r in rows:
            w.writerow([label, " ".join(ov), r["param"], r["shape"], f"{r['rel_error']:.3e}", f"{e:g}", f"{thr:g}",
                        int(r["rel_error"] <= thr)])
        slug = re.sub(r"[^0-9a-zA-Z]+", "_", label.split(" (")[0]).strip("_")
        # log10: `dvc metrics show` rounds to 5 decimals, which would print every error here as 0.0
        metrics[f"log10_max_rel_error_by_net/{slug}"] = round(math.log10(max(worst[label], 1e-300)), 3)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "gradcheck.csv", buf.getvalue())
    standard = [worst[label] for label, _, e, t in SUITE if e is None and t is None]
    metrics.update({
        "max_rel_error": max(standard),
        "log10_max_rel_error": round(math.log10(max(max(standard), 1e-300)), 3),
        "threshold": threshold,
        "eps": eps,
        "nets_checked": len(worst),
        "nets_failed": failed,
    })
    atomic_write_json(out / "metrics.json", metrics)
    print(f"\n{len(worst) - failed}/{len(worst)} nets pass (max relative error at eps {eps:g}: {max(standard):.2e}, "
          f"threshold {threshold:g})")
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m src.gradcheck", description=__doc__.splitlines()[0],
        epilog="Any other argument is a Hydra override, as for `python -m src.train` (e.g. model=bn init=xavier).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=THRESHOLD,
                    help="largest relative error that passes (default 1e-7; ReLU kinks may need 1e-5, see above)")
    ap.add_argument("--eps", type=float, default=1e-7, help="finite-difference step (default 1e-7)")
    ap.add_argument("--batch", type=int, default=16, help="training rows used (default 16)")
    ap.add_argument("--replicas", type=int, default=2, help="replicas (seeds) checked at once (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights, the batch and the dropout masks")
    ap.add_argument("--suite", action="store_true", help="check the stage's list of nets instead of one config")
    ap.add_argument("--out", type=Path, default=Path("results/s7_gradcheck"), help="output folder for --suite")
    args, overrides = ap.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        ap.error(f"unknown option {bad[0]}")
    if not (args.threshold > 0 and args.eps > 0 and args.batch >= 1 and args.replicas >= 1):
        ap.error("--threshold and --eps must be > 0, --batch and --replicas >= 1")
    try:
        if args.suite:
            if overrides:
                ap.error("--suite takes no overrides (its nets are listed in src/gradcheck.py SUITE)")
            return 1 if run_suite(args.out, threshold=args.threshold, batch=args.batch, replicas=args.replicas,
                                  eps=args.eps, seed=args.seed) else 0
        rows, desc = check_config(overrides, batch=args.batch, replicas=args.replicas, eps=args.eps,
                                  seed=args.seed)
    except GradcheckError as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 2
    print(desc)
    print(table(rows, args.threshold))
    worst = max(r["rel_error"] for r in rows)
    n_bad = sum(r["rel_error"] > args.threshold for r in rows)
    if n_bad:
        print(f"FAIL: {n_bad} of {len(rows)} parameters above {args.threshold:g} (max {worst:.2e})")
        return 1
    print(f"PASS: all {len(rows)} parameters below {args.threshold:g} (max {worst:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
