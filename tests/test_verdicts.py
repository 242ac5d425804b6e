"""Each study's verdict rule (src/studies/<study>.py): every outcome (confirmed / refuted / nuanced / no data) from
synthetic rows or metrics, and the row helpers of src/studies/base.py."""

from __future__ import annotations

import pytest

from src.studies import (
    all_studies,
    get,
    s1_course,
    s1_init,
    s2_activations,
    s3_course,
    s3_decay,
    s3_optim,
    s4_clip,
    s5_early,
    s6_bn,
    s6_preproc,
    s6_reg,
    s7_gradcheck,
    toys,
)
from src.studies import base as v
from src.studies.base import CONFIRMED, NO_DATA, NUANCED, REFUTED


def row(name: str, acc: float, ci: float = 0.01, **kw: float | str) -> dict:
    return {"name": name, "status": kw.pop("status", "finished"), "test_acc": acc, "test_acc_ci95": ci,
            "train_acc": kw.pop("train_acc", acc), "epochs_used": kw.pop("epochs_used", 100.0),
            "diverged_fraction": kw.pop("diverged_fraction", 0.0), **kw}


def test_parse_name_respects_brackets_and_order() -> None:
    assert v.parse_name("init.std=0.01,model.batchnorm=true") == {"init.std": "0.01", "model.batchnorm": "true"}
    assert v.parse_name("model.hidden=[10,5],+x=1") == {"model.hidden": "[10,5]", "x": "1"}
    assert v.parse_name("") == {}


def test_better_needs_non_overlapping_cis() -> None:
    assert v.better(row("a", 0.9, 0.01), row("b", 0.8, 0.01))
    assert not v.better(row("a", 0.9, 0.06), row("b", 0.8, 0.06))
    assert not v.better(row("a", 0.9, status="failed"), row("b", 0.5))


@pytest.mark.parametrize(("rows", "expected"), [
    ([row("init=zeros", 0.5, 0.0), row("init=he_normal", 0.96), row("init=randn_x10", 0.7, 0.05)], CONFIRMED),
    ([row("init=zeros", 0.5, 0.0), row("init=he_normal", 0.96), row("init=randn_x10", 0.95)], NUANCED),
    ([row("init=zeros", 0.5, 0.0), row("init=he_normal", 0.51, 0.05)], REFUTED),
    ([row("init=he_normal", 0.9)], NO_DATA),
])
def test_s1_init(rows: list, expected: str) -> None:
    assert s1_init.verdict(rows).verdict == expected


@pytest.mark.parametrize(("accs", "expected"), [
    ((0.5, 0.86, 0.96), CONFIRMED), ((0.5, 0.9, 0.8), NUANCED), ((0.7, 0.6, 0.6), REFUTED)])
def test_s1_course(accs: tuple, expected: str) -> None:
    rows = [row(f"init={n}", a, 0.0) for n, a in zip(("zeros", "randn_x10", "he_normal"), accs, strict=True)]
    assert s1_course.verdict(rows).verdict == expected


@pytest.mark.parametrize(("adam", "sgd", "mom", "expected"), [
    (0.95, 0.80, 0.80, CONFIRMED), (0.95, 0.80, 0.945, NUANCED), (0.80, 0.95, 0.95, REFUTED)])
def test_s3_optim_and_course(adam: float, sgd: float, mom: float, expected: str) -> None:
    rows = [row("optimizer=adam", adam), row("optimizer=sgd", sgd), row("optimizer=momentum", mom)]
    assert s3_optim.verdict(rows).verdict == expected
    course = [row("optimizer=adam", adam), row("optimizer=sgd", sgd), row("optimizer=momentum_course", mom)]
    assert s3_course.verdict(course).verdict == expected
    assert s3_optim.verdict([row("optimizer=sgd", 0.9)]).verdict == NO_DATA


@pytest.mark.parametrize(("d_none", "d_clip", "expected"), [
    (1.0, 0.0, CONFIRMED), (0.4, 0.0, NUANCED), (0.0, 0.0, REFUTED), (1.0, 1.0, REFUTED)])
def test_s4_clip(d_none: float, d_clip: float, expected: str) -> None:
    rows = [row("clip=none", 0.5, diverged_fraction=d_none), row("clip=value_1", 0.9, diverged_fraction=d_clip),
            row("clip=norm_5", 0.85, diverged_fraction=min(1.0, d_clip + 0.2))]
    assert s4_clip.verdict(rows).verdict == expected


def test_s4_clip_with_train_keys() -> None:
    rows = [row("train.clip_value=null,train.clip_norm=null", 0.5, diverged_fraction=1.0),
            row("train.clip_norm=1.0,train.clip_value=null", 0.9)]
    assert s4_clip.verdict(rows).verdict == CONFIRMED
    assert s4_clip.verdict(rows[:1]).verdict == NO_DATA


@pytest.mark.parametrize(("epochs", "acc", "expected"), [
    (300.0, 0.90, CONFIRMED), (300.0, 0.70, NUANCED), (1000.0, 0.90, REFUTED)])
def test_s5_early(epochs: float, acc: float, expected: str) -> None:
    rows = [row("train.patience=null", 0.9, epochs_used=1000.0), row("train.patience=20", acc, epochs_used=epochs)]
    assert s5_early.verdict(rows).verdict == expected


def _bn_rows(bn_ok: int, nobn_ok: int, n: int = 8) -> list:
    rows = []
    for i in range(n):
        std = 10 ** (-4 * i / (n - 1))
        rows.append(row(f"model.batchnorm=true,init.std={std:g}", 0.95 if i < bn_ok else 0.1))
        rows.append(row(f"init.std={std:g},model.batchnorm=false", 0.95 if i < nobn_ok else 0.1))
    return rows


@pytest.mark.parametrize(("bn_ok", "nobn_ok", "expected"), [(8, 2, CONFIRMED), (5, 2, NUANCED), (2, 6, REFUTED)])
def test_s6_bn_in_any_override_order(bn_ok: int, nobn_ok: int, expected: str) -> None:
    assert s6_bn.verdict(_bn_rows(bn_ok, nobn_ok)).verdict == expected


@pytest.mark.parametrize(("reg_train", "reg_test", "expected"), [
    (0.93, 0.93, CONFIRMED), (0.93, 0.899, NUANCED), (1.0, 0.85, REFUTED)])
def test_s6_reg(reg_train: float, reg_test: float, expected: str) -> None:
    rows = [row("model.l2=0,model.dropout=0", 0.90, train_acc=1.0),
            row("model.l2=0.7,model.dropout=0", reg_test, train_acc=reg_train)]
    assert s6_reg.verdict(rows).verdict == expected


@pytest.mark.parametrize(("pre", "raw", "expected"), [(0.95, 0.7, CONFIRMED), (0.9, 0.9, REFUTED),
                                                      (0.6, 0.9, REFUTED)])
def test_s6_preproc(pre: float, raw: float, expected: str) -> None:
    rows = [row("data=moons", pre), row("data=moons_raw", raw)]
    assert s6_preproc.verdict(rows).verdict == expected
    grid = []
    for shift in ("0", "10"):
        for scale in ("1", "100"):
            hard = shift != "0" or scale != "1"
            grid.append(row(f"data.standardize=True,data.shift={shift},data.scale={scale}", pre if hard else 0.9))
            grid.append(row(f"data.scale={scale},data.standardize=False,data.shift={shift}", raw if hard else 0.9))
    assert s6_preproc.verdict(grid).verdict == expected


def test_s6_preproc_nuanced_and_missing() -> None:
    rows = [row("data.standardize=true,data.shift=10", 0.95), row("data.standardize=false,data.shift=10", 0.7),
            row("data.standardize=true,data.scale=100", 0.9), row("data.standardize=false,data.scale=100", 0.9)]
    assert s6_preproc.verdict(rows).verdict == NUANCED
    assert s6_preproc.verdict(rows[:1]).verdict == NO_DATA


S2_GOOD = {"tanh_std001_last_std": 3e-7, "tanh_std1_saturated_mean": 0.9, "tanh_xavier_layer1_std": 0.63,
           "relu_he_last_over_first_std": 1.0, "deep_sigmoid_xavier_grad_factor_per_layer": 0.23,
           "deep_relu_he_grad_factor_per_layer": 1.0}


def test_s2_activations() -> None:
    assert s2_activations.verdict(S2_GOOD).verdict == CONFIRMED
    assert s2_activations.verdict({**S2_GOOD, "tanh_xavier_layer1_std": 0.5}).verdict == NUANCED
    bad = {**S2_GOOD, "tanh_std001_last_std": 0.1, "tanh_std1_saturated_mean": 0.1, "tanh_xavier_layer1_std": 0.1}
    assert s2_activations.verdict(bad).verdict == REFUTED
    assert s2_activations.verdict({}).verdict == NO_DATA


def test_toys() -> None:
    m = {"s3_sgd_final_distance": 0.36, "s3_momentum_final_distance": 0.1, "s3_adagrad_final_distance": 0.1,
         "s3_adam_final_distance": 0.1}
    assert toys.verdict_s3(m).verdict == CONFIRMED
    assert toys.verdict_s3({**m, "s3_momentum_final_distance": 0.9}).verdict == NUANCED
    assert toys.verdict_s3({**m, **{f"s3_{k}_final_distance": 1.0 for k in ("momentum", "adagrad", "adam")}}).verdict \
        == REFUTED
    assert toys.verdict_s3({}).verdict == NO_DATA
    c = {"s4_noclip_x_after_1_step": -390.0, "s4_noclip_overflow_step": 5.0, "s4_clipvalue100_x_after_1_step": 0.0,
         "s4_clipvalue100_final_loss": 0.0}
    assert toys.verdict_s4(c).verdict == CONFIRMED
    assert toys.verdict_s4({**c, "s4_clipvalue100_final_loss": 1.0}).verdict == NUANCED
    assert toys.verdict_s4({}).verdict == NO_DATA


def test_s7_gradcheck() -> None:
    assert s7_gradcheck.verdict({"max_rel_error": 3e-9, "nets_failed": 0, "threshold": 1e-7}).verdict == CONFIRMED
    assert s7_gradcheck.verdict({"max_rel_error": 3e-9, "nets_failed": 1, "threshold": 1e-7}).verdict == NUANCED
    assert s7_gradcheck.verdict({"max_rel_error": 3e-3, "nets_failed": 1, "threshold": 1e-7}).verdict == REFUTED
    assert s7_gradcheck.verdict({}).verdict == NO_DATA


def test_judge_dispatch() -> None:
    assert "smoke" not in all_studies()  # a test preset, not a study: the report shows its numbers only
    assert get("default").judge([row("init=he", 0.9)], {}) == []  # a study without a claim
    assert len(get("toys").judge(None, {})) == 2  # a measured study: its rules read metrics.json
    assert get("s1_init").judge([], None)[0].verdict == NO_DATA
    with pytest.raises(KeyError, match="registered: s1_init"):
        get("s9_nope")


@pytest.mark.parametrize(("accs", "expected"), [((0.947, 0.957, 0.94), CONFIRMED), ((0.92, 0.957, 0.94), NUANCED),
                                                ((0.80, 0.957, 0.94), REFUTED)])
def test_s3_decay(accs: tuple, expected: str) -> None:
    names = ("optimizer=sgd,train.lr=0.1", "train.lr=0.1,optimizer=momentum_course", "optimizer=adam,train.lr=0.01")
    rows = [row(n, a, train_acc=a) for n, a in zip(names, accs, strict=True)]
    rows.append(row("optimizer=adam,train.lr=0.1", 0.5))
    assert s3_decay.verdict(rows).verdict == expected
    assert s3_decay.verdict(rows[:2]).verdict == NO_DATA
