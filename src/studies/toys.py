"""S3/S4 toys: the two toy problems of SPEC S3 and S4, run with the library's rules (`python -m src.studies toys`).

S3 (the book, *Deep Learning from Scratch* ch. 6, figure 6-8): ``f(x, y) = x²/20 + y²`` from (−7, 2), 30 steps of
SGD lr 0.95, Momentum lr 0.1 (momentum 0.9), AdaGrad lr 1.5 and Adam lr 0.3 (the book's settings). The valley is
20× steeper in y than in x: SGD zig-zags across it, Momentum rolls along it, AdaGrad/Adam rescale each coordinate.

S4 (seed 004; Pascanu et al. 2013): loss ``x⁴`` from ``x = 10`` with lr 0.1. The gradient ``4x³ = 4000`` throws
plain gradient descent to ``10 − 400 = −390`` and the loss overflows a few steps later; clipping the gradient by
value at 100 makes the first step ``10 − 0.1·100 = 0``, exactly the minimum. Clipping by norm at 100 is the same in
1-D up to torch's ``eps`` in ``max_norm/(‖g‖ + 1e-6)``, so it lands at 2.5e-9 instead of 0.

Why a module of its own and not a notebook: the update rules are ``src.nn.optimizers`` and
``src.nn.clipping`` themselves (a params dict with a replica axis of 1, the same call the training loop makes),
so these pictures are evidence about the code the lab trains with, not about a re-implementation.

Outputs (in ``--out``, the DVC stage ``toys``): ``trajectories.csv`` (optimizer, step, x, y, f),
``trajectories.png`` (contours and paths, 2×2 like the book), ``clip.csv`` (setting, step, x, loss, grad),
``clip.png``, ``metrics.json``. This module also holds the two claims, their verdict rules and the report section.
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
from src.studies.base import CONFIRMED, NUANCED, REFUTED, Section, Study, Table, Verdict, metric, missing, tally
from src.studies.sections import copy_figure, fmt, read_metrics

# metrics.json: what `dvc metrics show` prints (summary.json has every number)
HEADLINE = ("s3_sgd_final_f", "s3_adam_final_f", "s4_noclip_overflow_step", "s4_clipvalue100_final_loss")

START = (-7.0, 2.0)
STEPS = 30
# the book's figure 6-8: name -> (src.nn.optimizers name, kwargs)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "SGD": ("sgd", {"lr": 0.95}),
    "Momentum": ("momentum", {"lr": 0.1, "momentum": 0.9}),
    "AdaGrad": ("adagrad", {"lr": 1.5}),
    "Adam": ("adam", {"lr": 0.3}),
}

CLIP_X0, CLIP_LR, CLIP_STEPS = 10.0, 0.1, 8
CLIP_SETTINGS: dict[str, tuple[str | None, float | None]] = {
    "no clipping": (None, None),
    "clip by value 100": ("value", 100.0),
    "clip by norm 100": ("norm", 100.0),
}


def f_valley(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The book's ``x²/20 + y²``."""
    return x**2 / 20.0 + y**2


def grad_valley(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}


def trajectory(name: str, kwargs: dict[str, Any], start: tuple[float, float] = START,
               steps: int = STEPS) -> np.ndarray:
    """Positions (steps+1, 2) of ``src.nn.optimizers.get(name, **kwargs)`` on the valley, start included."""
    from src.nn import optimizers

    opt = optimizers.get(name, **kwargs)
    params = {"x": np.array([start[0]]), "y": np.array([start[1]])}  # leading replica axis, R = 1
    path = [(start[0], start[1])]
    for _ in range(steps):
        opt.update(params, grad_valley(params))
        path.append((float(params["x"][0]), float(params["y"][0])))
    return np.array(path)


def clip_run(mode: str | None, threshold: float | None, x0: float = CLIP_X0, lr: float = CLIP_LR,
             steps: int = CLIP_STEPS) -> dict[str, np.ndarray]:
    """Plain gradient descent on ``x⁴`` with optional clipping; x, loss and the (pre-clip) gradient per step."""
    from src.nn import clipping, optimizers

    opt = optimizers.get("sgd", lr=lr)
    params = {"x": np.array([x0])}
    xs, losses, gs = [x0], [x0**4], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            grads = {"x": 4.0 * params["x"] ** 3}
            gs.append(float(grads["x"][0]))
            if mode == "value":
                clipping.clip_by_value(grads, threshold)
            elif mode == "norm":
                clipping.clip_by_norm(grads, threshold)
            opt.update(params, grads)
            x = float(params["x"][0])
            xs.append(x)
            losses.append(x**4 if np.isfinite(x) and abs(x) < 1e77 else float("inf"))
    gs.append(float("nan"))
    return {"x": np.array(xs), "loss": np.array(losses), "grad": np.array(gs)}


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def run(out: Path, figures: bool = True) -> dict[str, float]:
    """Run both toys, write their files, return the headline metrics."""
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    paths = {label: trajectory(name, kw) for label, (name, kw) in OPTIMIZERS.items()}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["optimizer", "step", "x", "y", "f"])
    for label, p in paths.items():
        for step, (x, y) in enumerate(p):
            w.writerow([label, step, _fmt(x), _fmt(y), _fmt(float(f_valley(x, y)))])
        metrics[f"s3_{label.lower()}_final_distance"] = float(np.hypot(*p[-1]))
        metrics[f"s3_{label.lower()}_final_f"] = float(f_valley(*p[-1]))
    atomic_write_text(out / "trajectories.csv", buf.getvalue())

    runs = {label: clip_run(mode, thr) for label, (mode, thr) in CLIP_SETTINGS.items()}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["setting", "step", "x", "loss", "grad"])
    for label, r in runs.items():
        for step in range(len(r["x"])):
            w.writerow([label, step, _fmt(r["x"][step]), _fmt(r["loss"][step]), _fmt(r["grad"][step])])
    atomic_write_text(out / "clip.csv", buf.getvalue())
    for label, key in (("no clipping", "noclip"), ("clip by value 100", "clipvalue100"),
                       ("clip by norm 100", "clipnorm100")):
        r = runs[label]
        finite = np.isfinite(r["loss"])
        metrics[f"s4_{key}_x_after_1_step"] = float(r["x"][1])
        metrics[f"s4_{key}_final_loss"] = float(r["loss"][-1]) if finite[-1] else float("inf")
        bad = np.flatnonzero(~finite)
        metrics[f"s4_{key}_overflow_step"] = float(bad[0]) if bad.size else -1.0
    write_measured(out, {k: (v if np.isfinite(v) else str(v)) for k, v in metrics.items()}, HEADLINE)
    if figures:
        from src.plots import toys as plots

        plots.toy_trajectories(paths, f_valley, out / "trajectories.png")
        plots.clip_toy(runs, out / "clip.png")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """The study's CLI: run both toys, write the files into --out, print the headline metrics."""
    ap = cli_args.Parser(prog="python -m src.studies toys", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=cli_args.output_dir, default=Path("results/toys"), help="output folder")
    args = ap.parse_args(argv)
    metrics = run(args.out)
    print(json.dumps({k: (v if np.isfinite(v) else str(v)) for k, v in metrics.items()}, indent=2, sort_keys=True))
    return 0


# -------------------------------------------------------------------------------------------- claims and report


def verdict_s3(m: Mapping[str, Any]) -> Verdict:
    """Final distance to the optimum after 30 steps (deterministic: no seeds, no test): confirmed when Momentum,
    AdaGrad and Adam each end closer than SGD, refuted when none does, nuanced otherwise."""
    claim = ("On the valley x²/20 + y² (30 steps, the book's learning rates) Momentum, AdaGrad and Adam end closer to "
             "the optimum than SGD.")
    sgd = metric(m, "s3_sgd_final_distance")
    others = {k: metric(m, f"s3_{k}_final_distance") for k in ("momentum", "adagrad", "adam")}
    if math.isnan(sgd) or any(math.isnan(v) for v in others.values()):
        return missing(claim, "the toy's final distances")
    closer = [k for k, v in others.items() if v < sgd]
    nums = f"final distance SGD {sgd:.3g}, " + ", ".join(f"{k} {v:.3g}" for k, v in others.items())
    if len(closer) == len(others):
        return Verdict(claim, CONFIRMED, nums)
    if not closer:
        return Verdict(claim, REFUTED, nums)
    return Verdict(claim, NUANCED, f"only {', '.join(closer)} end closer than SGD: {nums}")


def verdict_s4(m: Mapping[str, Any]) -> Verdict:
    """Four exact checks of the deterministic toy: the unclipped first step lands at −390, its loss overflows, the
    clipped first step lands at 0 and the clipped final loss is 0. Confirmed when all hold, refuted when at most
    half do, nuanced otherwise."""
    claim = "Loss x⁴ from x = 10, lr 0.1: one unclipped step lands at −390 and the loss explodes; clipping by value " \
            "at 100 steps to exactly 0."
    x1, xc = metric(m, "s4_noclip_x_after_1_step"), metric(m, "s4_clipvalue100_x_after_1_step")
    if math.isnan(x1) or math.isnan(xc):
        return missing(claim, "the clipping toy's metrics")
    exploded = metric(m, "s4_noclip_overflow_step") > 0
    checks = {"unclipped first step = −390": x1 == -390.0, "unclipped loss overflows": exploded,
              "clipped first step = 0": xc == 0.0,
              "clipped final loss = 0": metric(m, "s4_clipvalue100_final_loss") == 0}
    return tally(claim, checks)


def section(study: Study, study_dir: Path, figdir: Path) -> Section:
    """The valley's final distances, the x⁴ toy per clipping setting, and both figures."""
    sec = Section(study.name, study.title)
    m = read_metrics(study_dir)
    sec.verdicts = study.judge(None, m)
    names = ("sgd", "momentum", "adagrad", "adam")
    sec.tables.append(("S3 valley x²/20 + y² from (−7, 2), 30 steps (the book's learning rates)", Table(
        ["optimizer", "final distance to (0, 0)", "final f"],
        [[n, fmt(_num(m.get(f"s3_{n}_final_distance"))), fmt(_num(m.get(f"s3_{n}_final_f")))]
         for n in names if f"s3_{n}_final_distance" in m])))
    sec.tables.append(("S4 loss x⁴ from x = 10, lr 0.1", Table(
        ["setting", "x after 1 step", "final loss", "loss overflows at step"],
        [[label, fmt(_num(m.get(f"s4_{k}_x_after_1_step")), 10), fmt(_num(m.get(f"s4_{k}_final_loss"))),
          "never" if _num(m.get(f"s4_{k}_overflow_step")) < 0 else fmt(_num(m.get(f"s4_{k}_overflow_step")), 0)]
         for label, k in (("no clipping", "noclip"), ("clip by value 100", "clipvalue100"),
                          ("clip by norm 100", "clipnorm100")) if f"s4_{k}_x_after_1_step" in m])))
    for name, caption in (("trajectories.png", "Optimizer trajectories on x²/20 + y²"),
                          ("clip.png", "Clipping toy: x and loss per step")):
        if (study_dir / name).exists():
            sec.figures.append((caption, copy_figure(study_dir / name, figdir, study.name)))
    return sec


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


STUDY = Study("toys", "S3/S4 Toy problems: optimizer trajectories and gradient clipping", order=30,
              rules=(verdict_s3, verdict_s4), measure=main, section=section)
