"""Each study's claim and the rule that turns its numbers into a verdict: confirmed, refuted or nuanced.

Why rules in code: a report that says "confirmed" because someone looked at a plot is not reproducible. Each rule
here is a small pure function over the rows of ``results/<study>/runs.csv`` (one dict per job, means over
replicas and the 95% CI half-width of the test accuracy) or over a study's ``metrics.json``; it returns a
:class:`Verdict` whose ``reason`` quotes the numbers the decision used. "Significantly better" means the 95%
confidence intervals of the two means do not overlap (a conservative test: no claim on overlapping intervals).

Job names are the comma-joined sweep overrides (``init.std=0.01,model.batchnorm=true``); :func:`parse_name`
splits them (brackets respected) so rules never depend on the order of the overrides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIRMED, REFUTED, NUANCED, NO_DATA = "confirmed", "refuted", "nuanced", "no data"
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str  # one of CONFIRMED, REFUTED, NUANCED, NO_DATA
    reason: str


# --------------------------------------------------------------------------------------------------- helpers


def parse_name(name: str) -> dict[str, str]:
    """``"a=1,b=[2,3]"`` -> ``{"a": "1", "b": "[2,3]"}`` (commas inside brackets or quotes do not split)."""
    out: dict[str, str] = {}
    depth, quote, cur = 0, "", ""
    parts: list[str] = []
    for ch in str(name or ""):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip().lstrip("+~")] = v.strip()
    return out


def _f(row: Row | None, key: str) -> float:
    if row is None:
        return math.nan
    try:
        return float(row.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def _ok(row: Row | None) -> bool:
    return row is not None and str(row.get("status", "finished")) != "failed" and math.isfinite(_f(row, "test_acc"))


def better(a: Row | None, b: Row | None, key: str = "test_acc") -> bool:
    """a's mean is above b's and their 95% CIs do not overlap."""
    if not (_ok(a) and _ok(b)):
        return False
    ci_a = _f(a, f"{key}_ci95") if math.isfinite(_f(a, f"{key}_ci95")) else 0.0
    ci_b = _f(b, f"{key}_ci95") if math.isfinite(_f(b, f"{key}_ci95")) else 0.0
    return _f(a, key) - ci_a > _f(b, key) + ci_b


def find(rows: Sequence[Row], **match: str | Sequence[str]) -> Row | None:
    """The first row whose parsed name has every `key=value` (a value may be a list of accepted values).
    Keys use ``__`` for dots (``train__patience="null"``)."""
    for r in rows:
        ov = parse_name(str(r.get("name", "")))
        if all(ov.get(k.replace("__", ".")) in ([v] if isinstance(v, str) else list(v)) for k, v in match.items()):
            return r
    return None


def _acc(row: Row | None) -> str:
    if row is None:
        return "n/a"
    ci = _f(row, "test_acc_ci95")
    return f"{_f(row, 'test_acc'):.3f} ± {ci:.3f}" if math.isfinite(ci) else f"{_f(row, 'test_acc'):.3f}"


def _missing(claim: str, what: str) -> Verdict:
    return Verdict(claim, NO_DATA, f"no usable job for {what}")


_NULL = ("null", "none", "None", "~", "")


# ------------------------------------------------------------------------------------------- training studies


def s1_init(rows: Sequence[Row]) -> Verdict:
    claim = ("Zero init never breaks symmetry (chance accuracy), a too-large init (randn*10) trains worse, "
             "and He init trains best of the three.")
    zeros, he, big = find(rows, init="zeros"), find(rows, init=("he_normal", "he")), find(rows, init="randn_x10")
    if not (_ok(zeros) and _ok(he)):
        return _missing(claim, "init=zeros and init=he_normal")
    nums = f"zeros {_acc(zeros)}, he_normal {_acc(he)}, randn_x10 {_acc(big)}"
    if not better(he, zeros):
        return Verdict(claim, REFUTED, f"He is not significantly better than zeros: {nums}")
    if _f(zeros, "test_acc") <= 0.6 and (big is None or better(he, big)):
        return Verdict(claim, CONFIRMED, f"zeros at chance, He significantly above zeros and randn*10: {nums}")
    return Verdict(claim, NUANCED, f"He beats zeros, but not every part holds (zeros > 0.6 or He ≈ randn*10): {nums}")


def s1_course(rows: Sequence[Row]) -> Verdict:
    claim = ("The course's table: zeros 0.50, randn*10 ≈ 0.86, He ≈ 0.96 test accuracy on circles "
             "(He > randn*10 > zeros).")
    zeros, he, big = find(rows, init="zeros"), find(rows, init=("he_normal", "he")), find(rows, init="randn_x10")
    if not (_ok(zeros) and _ok(he) and _ok(big)):
        return _missing(claim, "init=zeros, randn_x10 and he_normal")
    z, b, h = (_f(r, "test_acc") for r in (zeros, big, he))
    nums = f"zeros {_acc(zeros)}, randn_x10 {_acc(big)}, he_normal {_acc(he)}"
    if h > b > z and abs(z - 0.5) <= 0.05 and abs(h - 0.96) <= 0.04:
        return Verdict(claim, CONFIRMED, f"order and levels reproduced: {nums}")
    if z >= h:
        return Verdict(claim, REFUTED, f"zeros is not below He: {nums}")
    return Verdict(claim, NUANCED, f"He beats zeros but the order or the levels differ from the course: {nums}")


def _adam_vs_sgd(rows: Sequence[Row], claim: str, others: Sequence[str]) -> Verdict:
    adam = find(rows, optimizer="adam")
    if not _ok(adam):
        return _missing(claim, "optimizer=adam")
    rivals = {o: find(rows, optimizer=o) for o in others}
    rivals = {o: r for o, r in rivals.items() if _ok(r)}
    if not rivals:
        return _missing(claim, "/".join(others))
    nums = ", ".join([f"adam {_acc(adam)}", *(f"{o} {_acc(r)}" for o, r in rivals.items())])
    if all(better(adam, r) for r in rivals.values()):
        return Verdict(claim, CONFIRMED, f"Adam significantly above each: {nums}")
    if any(better(r, adam) for r in rivals.values()) or all(_f(r, "test_acc") >= _f(adam, "test_acc")
                                                              for r in rivals.values()):
        return Verdict(claim, REFUTED, f"Adam is not ahead: {nums}")
    return Verdict(claim, NUANCED, f"Adam ahead of some, within the CI of others: {nums}")


def s3_optim(rows: Sequence[Row]) -> Verdict:
    return _adam_vs_sgd(rows, "Adam reaches a higher test accuracy than plain SGD and momentum at the same budget.",
                        ("sgd", "momentum"))


def s3_course(rows: Sequence[Row]) -> Verdict:
    return _adam_vs_sgd(rows, "On moons at lr 0.0007 (the course), Adam reaches ≈0.94 while GD and Momentum stay "
                        "≈0.80.", ("sgd", "momentum_course", "momentum"))


S3_DECAY_COURSE = {("sgd", "0.1"): 0.9467, ("momentum_course", "0.1"): 0.9567, ("adam", "0.01"): 0.94}


def s3_decay(rows: Sequence[Row]) -> Verdict:
    claim = ("With the course's scheduled decay lr0/(1 + floor(epoch/1000)) GD and Momentum (lr 0.1) catch up with "
             "Adam (lr 0.01): train accuracy ≈0.947 / 0.957 / 0.94.")
    found = {k: find(rows, optimizer=k[0], train__lr=k[1]) for k in S3_DECAY_COURSE}
    if not all(_ok(r) for r in found.values()):
        return _missing(claim, "optimizer=sgd|momentum_course,train.lr=0.1 and optimizer=adam,train.lr=0.01")
    accs = {k: _f(r, "train_acc") for k, r in found.items()}
    nums = ", ".join(f"{k[0]} lr {k[1]}: train {accs[k]:.3f} (course {ref})" for k, ref in S3_DECAY_COURSE.items())
    if all(abs(accs[k] - ref) <= 0.02 for k, ref in S3_DECAY_COURSE.items()):
        return Verdict(claim, CONFIRMED, nums)
    if min(accs.values()) < 0.85:
        return Verdict(claim, REFUTED, f"one optimizer stays far below the course: {nums}")
    return Verdict(claim, NUANCED, f"all train, but not every number within 0.02 of the course: {nums}")


def _clip_label(row: Row) -> tuple[bool, str]:
    """(unclipped?, label) from the overrides: `clip=none|value_1|...` or `train.clip_value/clip_norm=...`."""
    ov = parse_name(str(row.get("name", "")))
    vals = {k: v for k, v in ov.items() if "clip" in k}
    if not vals:
        return True, "none"
    return all(v in _NULL for v in vals.values()), ",".join(f"{k}={v}" for k, v in vals.items())


def s4_clip(rows: Sequence[Row]) -> Verdict:
    claim = "In an unstable setting (large init, large lr) unclipped runs diverge; with gradient clipping they train."
    ok = [r for r in rows if str(r.get("status")) != "failed"]
    none = [r for r in ok if _clip_label(r)[0]]
    clipped = [r for r in ok if not _clip_label(r)[0]]
    if not none or not clipped:
        return _missing(claim, "an unclipped job and a clipped job")
    d_none = max(_f(r, "diverged_fraction") for r in none)
    best = min(clipped, key=lambda r: (_f(r, "diverged_fraction"), -_f(r, "test_acc")))
    d_best = _f(best, "diverged_fraction")
    nums = (f"unclipped diverged fraction {d_none:.2f}; best clipped ({_clip_label(best)[1]}) {d_best:.2f}, "
            f"test {_acc(best)}")
    if d_none >= 0.5 and d_best == 0.0:
        return Verdict(claim, CONFIRMED, nums)
    if d_none == 0.0 or d_best >= d_none:
        return Verdict(claim, REFUTED, ("the unclipped runs did not diverge: " if d_none == 0.0 else
                                        "clipping did not reduce divergence: ") + nums)
    return Verdict(claim, NUANCED, f"clipping reduces but does not remove divergence, or few unclipped runs "
                   f"diverge: {nums}")


def s5_early(rows: Sequence[Row]) -> Verdict:
    claim = "Early stopping (patience on validation loss) saves epochs at no significant cost in test accuracy."
    none = find(rows, train__patience=_NULL)
    pats = [r for r in rows if _ok(r) and parse_name(str(r.get("name", ""))).get("train.patience") not in _NULL
            and "train.patience" in parse_name(str(r.get("name", "")))]
    if not _ok(none) or not pats:
        return _missing(claim, "train.patience=null and a patience job")
    e0 = _f(none, "epochs_used")
    saving = [r for r in pats if _f(r, "epochs_used") <= 0.9 * e0]
    free = [r for r in saving if not better(none, r)]
    nums = (f"no patience: {e0:.0f} epochs, test {_acc(none)}; " +
            "; ".join(f"{r['name']}: {_f(r, 'epochs_used'):.0f} epochs, test {_acc(r)}" for r in pats))
    if free:
        return Verdict(claim, CONFIRMED, nums)
    if saving:
        return Verdict(claim, NUANCED, f"epochs saved but at a significant accuracy cost: {nums}")
    return Verdict(claim, REFUTED, f"no patience setting saved ≥ 10% of the epochs: {nums}")


def _truthy(v: str | None) -> bool | None:
    if v is None:
        return None
    return v.lower() in ("true", "1", "yes", "on")


def s6_bn(rows: Sequence[Row]) -> Verdict:
    claim = "With batch norm, training succeeds across init scales (logspace(0,-4,16)); without it, it fails at most."
    ok = [r for r in rows if _ok(r)]
    by: dict[bool, list[Row]] = {True: [], False: []}
    for r in ok:
        bn = _truthy(parse_name(str(r.get("name", ""))).get("model.batchnorm"))
        if bn is not None:
            by[bn].append(r)
    if not by[True] or not by[False]:
        return _missing(claim, "model.batchnorm=true and false")
    top = max(_f(r, "test_acc") for r in ok)
    level = 0.8 * top  # "succeeds": within 20% of the best accuracy of the study

    def frac(rs: list[Row]) -> float:
        return sum(_f(r, "test_acc") >= level for r in rs) / len(rs)

    f_bn, f_no = frac(by[True]), frac(by[False])
    pairs: dict[str, dict[bool, Row]] = {}
    for bn, rs in by.items():
        for r in rs:
            pairs.setdefault(parse_name(str(r.get("name", ""))).get("init.std", "?"), {})[bn] = r
    both = [p for p in pairs.values() if len(p) == 2]
    n_better = sum(better(p[True], p[False]) for p in both)
    n_worse = sum(better(p[False], p[True]) for p in both)
    nums = (f"success (test acc ≥ {level:.3f}, 80% of the best) at {f_bn:.0%} of {len(by[True])} scales with BN, "
            f"{f_no:.0%} of {len(by[False])} without; BN significantly better at {n_better} and worse at {n_worse} "
            f"of {len(both)} scales")
    if f_bn >= 0.75 and f_no <= 0.5:
        return Verdict(claim, CONFIRMED, nums)
    if f_bn <= f_no:
        return Verdict(claim, REFUTED, nums)
    return Verdict(claim, NUANCED, nums)


def s6_reg(rows: Sequence[Row]) -> Verdict:
    claim = "L2 and dropout shrink the train-test gap of an overfitting net without lowering test accuracy."

    def reg(r: Row) -> bool:
        ov = parse_name(str(r.get("name", "")))
        return any(_num(ov.get(k)) > 0 for k in ("model.l2", "model.dropout"))

    ok = [r for r in rows if _ok(r)]
    base = [r for r in ok if not reg(r)]
    regs = [r for r in ok if reg(r)]
    if not base or not regs:
        return _missing(claim, "an unregularised job and a regularised one")
    b = base[0]
    gap = _f(b, "train_acc") - _f(b, "test_acc")
    good = [r for r in regs if _f(r, "train_acc") - _f(r, "test_acc") < gap and not better(b, r)]
    best = max(regs, key=lambda r: _f(r, "test_acc"))
    nums = (f"baseline gap {gap:.3f} (test {_acc(b)}); best regularised {best['name']}: gap "
            f"{_f(best, 'train_acc') - _f(best, 'test_acc'):.3f}, test {_acc(best)}")
    if good and _f(best, "test_acc") >= _f(b, "test_acc"):
        return Verdict(claim, CONFIRMED, nums)
    if not good:
        return Verdict(claim, REFUTED, f"no regularised job has a smaller gap without losing accuracy: {nums}")
    return Verdict(claim, NUANCED, f"gap shrinks but test accuracy does not improve: {nums}")


def _num(v: str | None) -> float:
    try:
        return float(v) if v is not None else 0.0
    except ValueError:
        return 0.0


def _std_key(ov: Mapping[str, str]) -> str | None:
    return next((k for k in ov if k.startswith("data") and any(w in k.lower() for w in ("standardi", "preproc",
                                                                                       "normali"))), None)


def _is_raw(row: Row) -> bool:
    """Raw input: `data.standardize=false` (or a similar key), else a data override naming raw/unscaled data."""
    ov = parse_name(str(row.get("name", "")))
    key = _std_key(ov)
    if key is not None:
        return _truthy(ov[key]) is False
    return any(w in f"{k}={v}".lower() for k, v in ov.items() if k.startswith("data") for w in ("raw", "unscaled"))


def s6_preproc(rows: Sequence[Row]) -> Verdict:
    claim = ("Standardised inputs (fit on train) train better than raw inputs when the features are shifted or "
             "scaled, at the same budget.")
    ok = [r for r in rows if _ok(r)]
    # pair each raw job with the standardised job of the same other data settings (shift, scale, dataset)
    groups: dict[tuple, dict[bool, Row]] = {}
    for r in ok:
        ov = parse_name(str(r.get("name", "")))
        key = _std_key(ov)
        rest = tuple(sorted((k, v.replace("_raw", "").replace("_unscaled", "")) for k, v in ov.items()
                            if k != key and k.startswith("data")))
        groups.setdefault(rest, {})[_is_raw(r)] = r
    pairs = {k: g for k, g in groups.items() if True in g and False in g}
    if not pairs:
        return _missing(claim, "a raw-input job and a standardised one with the same other settings")
    trivial = {k for k in pairs if dict(k).get("data.shift", "0") in ("0", "0.0")
               and dict(k).get("data.scale", "1") in ("1", "1.0")}
    hard = {k: g for k, g in pairs.items() if k not in trivial} or pairs
    wins = [k for k, g in hard.items() if better(g[False], g[True])]
    losses = [k for k, g in hard.items() if better(g[True], g[False])]

    def label(k: tuple) -> str:
        return ",".join(f"{a}={b}" for a, b in k) or "(as generated)"

    nums = "; ".join(f"{label(k)}: standardised {_acc(g[False])} vs raw {_acc(g[True])}" for k, g in hard.items())
    if len(wins) == len(hard):
        return Verdict(claim, CONFIRMED, nums)
    if not wins:
        return Verdict(claim, REFUTED, f"standardising never helps significantly: {nums}")
    return Verdict(claim, NUANCED, f"standardising helps significantly in {len(wins)} of {len(hard)} settings"
                   f"{f' and hurts in {len(losses)}' if losses else ''}: {nums}")


# ---------------------------------------------------------------------------------- studies without a grid


def s2_activations(m: Mapping[str, Any]) -> Verdict:
    claim = ("Small init (0.01) collapses deep activations, large init (1) saturates tanh, Xavier keeps tanh spread "
             "(≈0.63 at layer 1), He keeps ReLU stable, and deep sigmoid gradients vanish (≤0.25 per layer).")
    checks = {
        "tanh std 0.01: layer-10 std < 1e-4": _g(m, "tanh_std001_last_std") < 1e-4,
        "tanh std 1: > 70% saturated": _g(m, "tanh_std1_saturated_mean") > 0.7,
        "tanh Xavier: layer-1 std 0.63 ± 0.05": abs(_g(m, "tanh_xavier_layer1_std") - 0.63) <= 0.05,
        "ReLU He: last/first std within 2×": 0.5 <= _g(m, "relu_he_last_over_first_std") <= 2.0,
        "deep sigmoid: gradient factor per layer ≤ 0.3": _g(m, "deep_sigmoid_xavier_grad_factor_per_layer") <= 0.3,
        "deep ReLU He: gradient factor per layer in [0.5, 2]":
            0.5 <= _g(m, "deep_relu_he_grad_factor_per_layer") <= 2.0,
    }
    if all(math.isnan(_g(m, k)) for k in ("tanh_std001_last_std", "tanh_std1_saturated_mean")):
        return _missing(claim, "the probe's metrics")
    return _tally(claim, checks)


def _g(m: Mapping[str, Any], key: str) -> float:
    try:
        return float(m.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def _tally(claim: str, checks: Mapping[str, bool]) -> Verdict:
    passed = [k for k, v in checks.items() if v]
    failed = [k for k, v in checks.items() if not v]
    text = f"{len(passed)}/{len(checks)} checks hold" + (f"; failing: {'; '.join(failed)}" if failed else "")
    if not failed:
        return Verdict(claim, CONFIRMED, text)
    if len(passed) <= len(checks) / 2:
        return Verdict(claim, REFUTED, text)
    return Verdict(claim, NUANCED, text)


def toys_s3(m: Mapping[str, Any]) -> Verdict:
    claim = ("On the valley x²/20 + y² (30 steps, the book's learning rates) Momentum, AdaGrad and Adam end closer to "
             "the optimum than SGD.")
    sgd = _g(m, "s3_sgd_final_distance")
    others = {k: _g(m, f"s3_{k}_final_distance") for k in ("momentum", "adagrad", "adam")}
    if math.isnan(sgd) or any(math.isnan(v) for v in others.values()):
        return _missing(claim, "the toy's final distances")
    closer = [k for k, v in others.items() if v < sgd]
    nums = f"final distance SGD {sgd:.3g}, " + ", ".join(f"{k} {v:.3g}" for k, v in others.items())
    if len(closer) == len(others):
        return Verdict(claim, CONFIRMED, nums)
    if not closer:
        return Verdict(claim, REFUTED, nums)
    return Verdict(claim, NUANCED, f"only {', '.join(closer)} end closer than SGD: {nums}")


def toys_s4(m: Mapping[str, Any]) -> Verdict:
    claim = "Loss x⁴ from x = 10, lr 0.1: one unclipped step lands at −390 and the loss explodes; clipping by value " \
            "at 100 steps to exactly 0."
    x1, xc = _g(m, "s4_noclip_x_after_1_step"), _g(m, "s4_clipvalue100_x_after_1_step")
    if math.isnan(x1) or math.isnan(xc):
        return _missing(claim, "the clipping toy's metrics")
    exploded = _g(m, "s4_noclip_overflow_step") > 0
    checks = {"unclipped first step = −390": x1 == -390.0, "unclipped loss overflows": exploded,
              "clipped first step = 0": xc == 0.0, "clipped final loss = 0": _g(m, "s4_clipvalue100_final_loss") == 0}
    return _tally(claim, checks)


def s7_gradcheck(m: Mapping[str, Any]) -> Verdict:
    claim = "Backprop matches centred differences (relative error < 1e-7) for every layer and loss, with BN, " \
            "dropout (fixed mask) and L2, in float64."
    worst, failed = _g(m, "max_rel_error"), _g(m, "nets_failed")
    thr = _g(m, "threshold") if math.isfinite(_g(m, "threshold")) else 1e-7
    if math.isnan(worst):
        return _missing(claim, "the gradient check's metrics")
    nums = f"max relative error {worst:.2e} over the nets checked at eps 1e-7; {failed:.0f} nets above their threshold"
    if worst < thr and failed == 0:
        return Verdict(claim, CONFIRMED, nums)
    if worst >= thr:
        return Verdict(claim, REFUTED, nums)
    return Verdict(claim, NUANCED, nums)


# ------------------------------------------------------------------------------------------------ registry

ROW_RULES: dict[str, Callable[[Sequence[Row]], Verdict]] = {
    "s1_init": s1_init,
    "s1_course": s1_course,
    "s3_optim": s3_optim,
    "s3_course": s3_course,
    "s3_decay": s3_decay,
    "s4_clip": s4_clip,
    "s5_early": s5_early,
    "s6_bn": s6_bn,
    "s6_reg": s6_reg,
    "s6_preproc": s6_preproc,
}
METRIC_RULES: dict[str, list[Callable[[Mapping[str, Any]], Verdict]]] = {
    "s2_activations": [s2_activations],
    "toys": [toys_s3, toys_s4],
    "s7_gradcheck": [s7_gradcheck],
}


def judge(study: str, rows: Sequence[Row] | None, metrics: Mapping[str, Any] | None) -> list[Verdict]:
    """The verdicts of one study (empty when no rule is registered for it, e.g. `default`, `smoke`)."""
    if study in ROW_RULES:
        return [ROW_RULES[study](list(rows or []))]
    if study in METRIC_RULES:
        return [rule(dict(metrics or {})) for rule in METRIC_RULES[study]]
    return []


__all__ = ["CONFIRMED", "NO_DATA", "NUANCED", "REFUTED", "Verdict", "better", "find", "judge", "parse_name"]
