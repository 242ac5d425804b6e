"""S2: activation and gradient statistics of deep nets, no training (`python -m src.studies s2_activations`).

SPEC S2 (Glorot & Bengio 2010; He et al. 2015; the book's ch. 6 histograms). A random input ``randn(1000, n)``
goes through untrained nets built by ``src.nn.MLP`` and every hidden layer is measured with
``src.nn.diagnostics``: mean, std, saturated fraction (sigmoid a<0.01 or >0.99, tanh |a|>0.99), dead-ReLU
fraction. Three nets of the articles (5×100 sigmoid, 5×100 ReLU, 10×500 tanh) under four initialisations
(N(0,1), N(0,0.01²), Xavier ``xavier_normal`` = ``1/sqrt(n)`` here since fan_in = fan_out, He ``he_normal``).
Each number is a mean ± 95% CI over R replicas (independent weights AND input per replica, i.e. seeds).

The backward pass (SPEC S2/S4): per-layer gradient norms ‖∂L/∂W_l‖ from ``loss_and_grads(..., taps=True)`` on
random labels, for the same nets and for deep (10-layer) sigmoid vs ReLU+He nets: through a sigmoid the backward
signal is multiplied by σ' ≤ 0.25 per layer, so the norms fall geometrically toward the input; ReLU+He keeps them.

Why the MLP and not a hand-written loop: the study then measures the very layers the training runs use. The
articles' nets have no bias; ours start with zero biases, which is the same function at init. The MLP needs an
output layer: an extra dense layer to 10 softmax units is appended and is not reported among the hidden layers.

Outputs (in ``--out``, the DVC stage ``s2_activations``): ``layer_stats.csv`` (one row per net × init × hidden
layer), ``grad_norms.csv`` (deep nets), ``metrics.json`` (headline numbers for ``dvc metrics show`` and the
verdict), ``histograms_<net>.png`` (layers across, inits down, as in the articles' figures) and ``grad_norms.png``.
This module also holds the claim, its verdict rule and the study's report section.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src import cli_args
from src.files import atomic_write_text
from src.lab.results import write_measured
from src.lab.stats import summary
from src.studies.base import Section, Study, Table, Verdict, metric, missing, tally
from src.studies.sections import copy_figure, fmt, read_csv, read_metrics

HEADLINE = ("tanh_std001_last_std", "tanh_std1_saturated_mean", "tanh_xavier_last_std", "relu_he_last_over_first_std",
            "deep_sigmoid_xavier_grad_first_over_last")  # metrics.json: what `dvc metrics show` prints

# name -> (activation, hidden layers, width)
NETS: dict[str, tuple[str, int, int]] = {
    "sigmoid_5x100": ("sigmoid", 5, 100),
    "relu_5x100": ("relu", 5, 100),
    "tanh_10x500": ("tanh", 10, 500),
}
# label -> (initializer name, kwargs)
INITS: dict[str, tuple[str, dict[str, float]]] = {
    "std=1": ("normal", {"std": 1.0}),
    "std=0.01": ("normal", {"std": 0.01}),
    "xavier": ("xavier_normal", {}),
    "he": ("he_normal", {}),
}
# the backward-pass comparison: deep nets (>= 8 layers)
DEEP: dict[str, tuple[str, str, dict[str, float]]] = {
    "sigmoid+xavier": ("sigmoid", "xavier_normal", {}),
    "sigmoid+std=1": ("sigmoid", "normal", {"std": 1.0}),
    "tanh+xavier": ("tanh", "xavier_normal", {}),
    "relu+he": ("relu", "he_normal", {}),
}
DEEP_LAYERS, DEEP_WIDTH = 10, 100
N_CLASSES = 10
SAMPLES = 1000
# Peak bytes per replica per input row: the widest net (10 tanh layers of 500) keeps ~3 float64 arrays per layer.
PEAK_BYTES_PER_REPLICA_ROW = 10 * 500 * 8 * 3

STAT_KEYS = ("act_mean", "act_std", "saturated", "dead", "grad_norm", "dz_norm")


def _summary(values: np.ndarray) -> tuple[float, float]:
    s = summary(values)
    return s["mean"], s["ci95"]


def measure(activation: str, layers: int, width: int, init: str, init_kwargs: dict[str, float], *,
            replicas: int = 5, samples: int = SAMPLES, seed: int = 0, grads: bool = True,
            hist_range: tuple[float, float] | None = None, bins: int = 30) -> dict[str, Any]:
    """Forward AND backward statistics of one untrained net on random inputs and random labels.

    Returns ``{"stats": {layer -> {stat -> (R,) array}}, "hists": [(counts (R, bins), edges)] per hidden layer}``
    and ``"taps"`` (the hidden layers' forward taps). With `grads`, ``grad_norm`` is ‖∂L/∂W_l‖ and ``dz_norm``
    the norm of the gradient at the layer's pre-activation times sqrt(m) (the loss is a mean over m samples, so
    this is the per-sample scale), both from one ``loss_and_grads`` on random labels.
    """
    from src.nn import MLP, diagnostics

    sizes = [width] * (layers + 1) + [N_CLASSES]
    net = MLP(sizes, activation=activation, init=init, init_kwargs=init_kwargs, replicas=replicas, seed=seed)
    rng = np.random.default_rng([seed, 2])
    X = rng.standard_normal((replicas, samples, width))
    y = rng.integers(0, N_CLASSES, size=(replicas, samples))
    with np.errstate(all="ignore"):
        # The activations the articles histogram. With `grads`, from the forward pass of `loss_and_grads` itself:
        # these nets have no dropout nor batch norm, so that pass is the eval-mode one `probe` would repeat (the
        # same floats; a second forward through 10 layers of 500 was a quarter of the study's time).
        if grads:
            _, _, taps = net.loss_and_grads(X, y, taps=True)
        else:
            taps = net.probe(X)  # forward only, eval mode
        stats = diagnostics.layer_stats(taps, activation)  # all L taps: the last is the output layer
        out: dict[int, dict[str, np.ndarray]] = {}
        for layer in range(1, layers + 1):
            k = f"layer{layer}"
            out[layer] = {s: stats[f"{k}/{s}"] for s in ("act_mean", "act_std", "saturated", "dead")}
            if grads:
                dz = np.asarray(taps[layer - 1]["dz"]).reshape(replicas, -1)
                out[layer]["grad_norm"] = stats[f"{k}/grad_norm"]
                out[layer]["dz_norm"] = np.sqrt(np.einsum("ri,ri->r", dz, dz)) * np.sqrt(samples)
    hidden = taps[:layers]
    hists = diagnostics.histograms(hidden, bins=bins, range=hist_range) if hist_range else None
    return {"stats": out, "hists": hists, "taps": hidden}


def _hist_range(activation: str) -> tuple[float, float] | None:
    return {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(activation)


def activation_study(replicas: int = 5, samples: int = SAMPLES, seed: int = 0,
                     nets: dict[str, tuple[str, int, int]] | None = None
                     ) -> tuple[list[dict[str, Any]], dict[str, dict[str, list]]]:
    """Rows (net, init, layer, stat means and CIs) and, per net and init, replica 0's activations per layer
    (flattened, for the histogram grid)."""
    rows: list[dict[str, Any]] = []
    samples_for_hist: dict[str, dict[str, list]] = {}
    for net_name, (act, layers, width) in (nets or NETS).items():
        samples_for_hist[net_name] = {}
        for init_label, (init, kw) in INITS.items():
            res = measure(act, layers, width, init, kw, replicas=replicas, samples=samples, seed=seed)
            # copies (flatten): a view of replica 0 kept every replica's activations alive (~800 MB for 10x500 tanh)
            samples_for_hist[net_name][init_label] = [np.asarray(t["a"][0]).flatten() for t in res["taps"]]
            for layer, st in res["stats"].items():
                row: dict[str, Any] = {"net": net_name, "activation": act, "layers": layers, "width": width,
                                       "init": init_label, "layer": layer, "replicas": replicas}
                for key in STAT_KEYS:
                    row[key], row[f"{key}_ci95"] = _summary(st[key]) if key in st else (float("nan"),) * 2
                rows.append(row)
            del res  # its taps (~0.7 GB for 10x500 tanh, R=5): freed before the next net's are made, not after
    return rows, samples_for_hist


def gradient_study(replicas: int = 5, samples: int = SAMPLES, seed: int = 0, layers: int = DEEP_LAYERS,
                   width: int = DEEP_WIDTH) -> list[dict[str, Any]]:
    """Per-layer gradient norms of deep nets (sigmoid vs ReLU+He, ...) on random inputs and labels."""
    rows = []
    for name, (act, init, kw) in DEEP.items():
        res = measure(act, layers, width, init, kw, replicas=replicas, samples=samples, seed=seed)
        for layer, st in res["stats"].items():
            row: dict[str, Any] = {"net": name, "activation": act, "init": init, "layers": layers, "width": width,
                                   "layer": layer, "replicas": replicas}
            for key in ("grad_norm", "dz_norm", "act_std"):
                row[key], row[f"{key}_ci95"] = _summary(st[key])
            rows.append(row)
    return rows


def per_layer_factor(values: list[float]) -> float:
    """Geometric mean of value[l]/value[l+1] over consecutive layers (the factor lost per layer going DOWN
    toward the input): < 1 means the gradient shrinks toward the input."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        return float("nan")
    return float((v[0] / v[-1]) ** (1.0 / (v.size - 1)))


def _get(rows: list[dict[str, Any]], key: str, **match: Any) -> list[float]:
    sel = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return [float(r[key]) for r in sorted(sel, key=lambda r: r["layer"])]


def headline(act_rows: list[dict[str, Any]], grad_rows: list[dict[str, Any]]) -> dict[str, float]:
    """The numbers SPEC S2 quotes, measured (keys stable: `dvc metrics show` and the report read them)."""
    m: dict[str, float] = {}
    tanh_small = _get(act_rows, "act_std", net="tanh_10x500", init="std=0.01")
    if tanh_small:
        m["tanh_std001_layer1_std"] = tanh_small[0]
        m["tanh_std001_last_std"] = tanh_small[-1]
        m["tanh_std001_shrink_per_layer"] = per_layer_factor(tanh_small)
    sat = _get(act_rows, "saturated", net="tanh_10x500", init="std=1")
    if sat:
        m["tanh_std1_saturated_mean"] = float(np.mean(sat))
    xav = _get(act_rows, "act_std", net="tanh_10x500", init="xavier")
    if xav:
        m["tanh_xavier_layer1_std"] = xav[0]
        m["tanh_xavier_last_std"] = xav[-1]
    for init in ("he", "xavier", "std=0.01"):
        relu = _get(act_rows, "act_std", net="relu_5x100", init=init)
        if relu:
            m[f"relu_{init.replace('=', '').replace('.', '')}_last_over_first_std"] = relu[-1] / relu[0]
    sig = _get(act_rows, "saturated", net="sigmoid_5x100", init="std=1")
    if sig:
        m["sigmoid_std1_saturated_mean"] = float(np.mean(sig))
    for net in DEEP:
        g = _get(grad_rows, "grad_norm", net=net)
        if g:
            key = net.replace("+", "_").replace("=", "").replace(".", "")
            m[f"deep_{key}_grad_first_over_last"] = g[0] / g[-1] if g[-1] > 0 else float("nan")
            # backward factor per layer from the pre-activation gradients (excludes the input's own scale)
            dz = _get(grad_rows, "dz_norm", net=net)
            m[f"deep_{key}_grad_factor_per_layer"] = per_layer_factor(dz)
    # `dvc metrics show` rounds to 5 decimals: the tiny ones are also given as log10
    for key in ("tanh_std001_last_std", "relu_std001_last_over_first_std", "deep_sigmoid_xavier_grad_first_over_last"):
        if key in m and m[key] > 0:
            m[f"log10_{key}"] = float(np.log10(m[key]))
    return {k: float(v) for k, v in m.items()}


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def run(out: Path, replicas: int = 5, samples: int = SAMPLES, seed: int = 0, figures: bool = True) -> dict[str, Any]:
    """Measure everything and write the files of the study; return the headline metrics."""
    out.mkdir(parents=True, exist_ok=True)
    act_rows, acts = activation_study(replicas, samples, seed)
    grad_rows = gradient_study(replicas, samples, seed)
    atomic_write_text(out / "layer_stats.csv", _csv(act_rows))
    atomic_write_text(out / "grad_norms.csv", _csv(grad_rows))
    metrics = headline(act_rows, grad_rows)
    write_measured(out, metrics, HEADLINE)
    if figures:
        from src.plots import activations as plots

        for net, (act, _, _) in NETS.items():
            stats = {(r["init"], r["layer"]): r for r in act_rows if r["net"] == net}
            plots.activation_grid(acts[net], out / f"histograms_{net}.png", value_range=_hist_range(act),
                                  title=f"{net}: activations per layer (replica 0), random input",
                                  stats=stats)
        plots.grad_norms_by_layer(grad_rows, out / "grad_norms.png")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """The study's CLI: measure, write the files into --out, print the headline metrics."""
    ap = cli_args.Parser(prog="python -m src.studies s2_activations",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=cli_args.output_dir, default=Path("results/s2_activations"), help="output folder")
    ap.add_argument("--replicas", type=cli_args.count(10_000), default=5, help="seeds per configuration (error bars)")
    ap.add_argument("--samples", type=cli_args.count(10_000_000), default=SAMPLES, help="rows of the random input")
    ap.add_argument("--seed", type=cli_args.seed, default=0, help="first seed")
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error("argument --samples: valid: an integer >= 2")
    need = args.replicas * args.samples * PEAK_BYTES_PER_REPLICA_ROW
    if need > cli_args.MEMORY_LIMIT_BYTES:
        ap.error(f"--replicas {args.replicas} x --samples {args.samples} needs about {need / 1e9:.3g} GB of memory "
                 f"(limit {cli_args.MEMORY_LIMIT_BYTES / 1e9:g} GB); use fewer")
    metrics = run(args.out, args.replicas, args.samples, args.seed)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


# --------------------------------------------------------------------------------------------- claim and report


def verdict(m: Mapping[str, Any]) -> Verdict:
    """Six checks on the probe's metrics (untrained nets, no test: numbers against the articles' values): tanh
    std 0.01 layer-10 std < 1e-4; tanh std 1 > 70% saturated; tanh Xavier layer-1 std within 0.05 of 0.63; ReLU He
    last/first std within 2×; deep sigmoid gradient factor per layer ≤ 0.3; deep ReLU He factor in [0.5, 2].
    Confirmed when all hold, refuted when at most half do, nuanced otherwise."""
    claim = ("Small init (0.01) collapses deep activations, large init (1) saturates tanh, Xavier keeps tanh spread "
             "(≈0.63 at layer 1), He keeps ReLU stable, and deep sigmoid gradients vanish (≤0.25 per layer).")
    checks = {
        "tanh std 0.01: layer-10 std < 1e-4": metric(m, "tanh_std001_last_std") < 1e-4,
        "tanh std 1: > 70% saturated": metric(m, "tanh_std1_saturated_mean") > 0.7,
        "tanh Xavier: layer-1 std 0.63 ± 0.05": abs(metric(m, "tanh_xavier_layer1_std") - 0.63) <= 0.05,
        "ReLU He: last/first std within 2×": 0.5 <= metric(m, "relu_he_last_over_first_std") <= 2.0,
        "deep sigmoid: gradient factor per layer ≤ 0.3": metric(m, "deep_sigmoid_xavier_grad_factor_per_layer") <= 0.3,
        "deep ReLU He: gradient factor per layer in [0.5, 2]":
            0.5 <= metric(m, "deep_relu_he_grad_factor_per_layer") <= 2.0,
    }
    if all(math.isnan(metric(m, k)) for k in ("tanh_std001_last_std", "tanh_std1_saturated_mean")):
        return missing(claim, "the probe's metrics")
    return tally(claim, checks)


S2_REFERENCE = [
    ("tanh 10×500, std 0.01: std at layer 1", "tanh_std001_layer1_std", "≈0.22 (tanh of N(0, 0.22²))"),
    ("tanh 10×500, std 0.01: std at layer 10", "tanh_std001_last_std", "≈3e-7"),
    ("tanh 10×500, std 0.01: shrink factor per layer", "tanh_std001_shrink_per_layer", "≈4.5"),
    ("tanh 10×500, std 1: saturated fraction (|a|>0.99)", "tanh_std1_saturated_mean", "≈0.9"),
    ("tanh 10×500, Xavier: std at layer 1", "tanh_xavier_layer1_std", "≈0.63"),
    ("tanh 10×500, Xavier: std at layer 10", "tanh_xavier_last_std", "≈0.22"),
    ("ReLU 5×100, He: std layer 5 / layer 1", "relu_he_last_over_first_std", "≈1 (stable)"),
    ("ReLU 5×100, Xavier: std layer 5 / layer 1", "relu_xavier_last_over_first_std", "< 1 (shrinks)"),
    ("ReLU 5×100, std 0.01: std layer 5 / layer 1", "relu_std001_last_over_first_std", "≈0 (collapse)"),
    ("sigmoid 5×100, std 1: saturated fraction", "sigmoid_std1_saturated_mean", "large (piles at 0 and 1)"),
    ("deep sigmoid + Xavier: gradient factor per layer", "deep_sigmoid_xavier_grad_factor_per_layer", "≤ 0.25"),
    ("deep sigmoid + Xavier: ‖∂L/∂W₁‖ / ‖∂L/∂W₁₀‖", "deep_sigmoid_xavier_grad_first_over_last", "≪ 1"),
    ("deep ReLU + He: gradient factor per layer", "deep_relu_he_grad_factor_per_layer", "≈1"),
    ("deep tanh + Xavier: gradient factor per layer", "deep_tanh_xavier_grad_factor_per_layer", "—"),
    ("deep sigmoid + std 1: gradient factor per layer", "deep_sigmoid_std1_grad_factor_per_layer", "—"),
]


def section(study: Study, study_dir: Path, figdir: Path) -> Section:
    """Measured vs SPEC, per net and init (first -> last hidden layer), the histogram grids, gradient norms."""
    sec = Section(study.name, study.title)
    m = read_metrics(study_dir)
    sec.verdicts = study.judge(None, m)
    sec.tables.append(("Measured vs SPEC", Table(
        ["quantity", "SPEC / articles", "measured (mean over replicas)"],
        [[label, ref, fmt(m[key])] for label, key, ref in S2_REFERENCE if key in m])))
    stats_path = study_dir / "layer_stats.csv"
    if stats_path.exists():
        rows = read_csv(stats_path)
        groups: dict[tuple[str, str], list[dict[str, str]]] = {}
        for r in rows:
            groups.setdefault((r["net"], r["init"]), []).append(r)
        out = []
        for (net, init), rs in groups.items():
            rs = sorted(rs, key=lambda r: int(r["layer"]))
            sat = sum(float(r["saturated"]) for r in rs) / len(rs)
            dead = sum(float(r["dead"]) for r in rs) / len(rs)
            out.append([net, init, fmt(float(rs[0]["act_std"])), fmt(float(rs[-1]["act_std"])),
                        fmt(float(rs[-1]["act_mean"])), f"{sat:.2f}", f"{dead:.2f}",
                        fmt(float(rs[0]["grad_norm"])), fmt(float(rs[-1]["grad_norm"]))])
        sec.tables.append(("Per net and init (first → last hidden layer; full per-layer table in layer_stats.csv)",
                           Table(["net", "init", "std L1", "std last", "mean last", "saturated (avg)",
                                  "dead (avg)", "‖∂L/∂W‖ L1", "‖∂L/∂W‖ last"], out)))
    for png in sorted(study_dir.glob("histograms_*.png")):
        sec.figures.append((f"Activation histograms: {png.stem.removeprefix('histograms_')} (layers across, "
                            "inits down)", copy_figure(png, figdir, study.name)))
    if (study_dir / "grad_norms.png").exists():
        sec.figures.append(("Gradient norm by layer, deep nets", copy_figure(study_dir / "grad_norms.png", figdir,
                                                                                study.name)))
    return sec


STUDY = Study("s2_activations", "S2 Activation and gradient statistics in deep nets (no training)", order=20,
              rules=(verdict,), measure=main, section=section)
