"""`python -m src.gradcheck`: passes on the configured default net, fails loudly (exit 1) on a broken backward."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src import gradcheck
from src.nn import MLP
from src.studies import s7_gradcheck

ROOT = Path(__file__).resolve().parents[1]


def test_default_net_passes_and_prints_the_table(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gradcheck.main([f"data.dir={data_dir}"]) == 0
    out = capsys.readouterr().out
    assert "sizes=[2, 10, 5, 1]" in out and "float64" in out
    for name in ("W1", "b1", "W2", "b2", "W3", "b3"):
        assert any(line.startswith(name + " ") and line.rstrip().endswith("ok") for line in out.splitlines())
    assert "PASS" in out


def test_bn_dropout_l2_multiclass_passes(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"data.dir={data_dir}", "data=digits", "model.batchnorm=true", "model.dropout=0.2", "model.l2=0.1",
            "model.activation=tanh", "model.hidden=[6,4]"]
    assert gradcheck.main(argv) == 0
    out = capsys.readouterr().out
    assert "gamma1" in out and "sizes=[64, 6, 4, 10]" in out


def test_a_broken_backward_exits_non_zero(data_dir: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = MLP.loss_and_grads

    def broken(self: MLP, *args: object, **kwargs: object) -> object:
        loss, grads, *rest = real(self, *args, **kwargs)
        grads["W2"] = grads["W2"] * 1.01  # a 1% bug in one layer's gradient; the loss itself is right
        return (loss, grads, *rest)

    monkeypatch.setattr(MLP, "loss_and_grads", broken)
    assert gradcheck.main([f"data.dir={data_dir}"]) == 1
    out = capsys.readouterr().out
    w2 = next(line for line in out.splitlines() if line.startswith("W2 "))
    assert w2.rstrip().endswith("FAIL")
    assert float(w2.split()[2]) == pytest.approx(0.01 / 2.01, rel=0.01)  # |0.01 g| / (|1.01 g| + |g|)
    assert "FAIL: 1 of 6" in out


def test_threshold_option(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gradcheck.main([f"data.dir={data_dir}", "--threshold", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_override_is_one_line_exit_2(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gradcheck.main([f"data.dir={data_dir}", "init=bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnlab: error:") and "'bogus'" in err and "\n" not in err


def test_suite_writes_csv_and_metrics(tmp_path: Path, data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s7_gradcheck, "SUITE", [
        ("relu", [f"data.dir={data_dir}"], None, None),
        ("digits tanh", [f"data.dir={data_dir}", "data=digits", "model.activation=tanh", "model.hidden=[4]"],
         None, None),
        ("loose", [f"data.dir={data_dir}", "model.activation=sigmoid"], 1e-5, 1e-5),
    ])
    assert s7_gradcheck.main(["--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "summary.json").read_text())
    headline = json.loads((tmp_path / "metrics.json").read_text())
    assert headline["max_rel_error"] == f"{m['max_rel_error']:.3g}"  # a string: DVC would print 0.0
    assert m["nets_checked"] == 3 and m["nets_failed"] == 0 and 0 < m["max_rel_error"] < 1e-7
    assert set(m) >= {"log10_max_rel_error_by_net/relu", "log10_max_rel_error_by_net/digits_tanh"}
    assert -12 < m["log10_max_rel_error"] < -7
    lines = (tmp_path / "gradcheck.csv").read_text().splitlines()
    assert lines[0] == "net,overrides,param,shape,rel_error,eps,threshold,passed"
    assert all(line.endswith(",1") for line in lines[1:])
    assert np.isfinite(m["max_rel_error"])


def test_help_is_fast() -> None:
    out = subprocess.run([sys.executable, "-m", "src.gradcheck", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "--threshold" in out.stdout and "override" in out.stdout


def test_missing_dataset_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gradcheck.main([f"data.dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnlab: error:") and "\n" not in err and "dvc repro" in err


def test_the_suite_is_composed_once_per_group_choice_as_hydra_composes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from src.lab import gradcheck as lab_gradcheck
    from src.lab import preflight
    from src.lab.config import validate

    suite = [ov for _, ov, _, _ in s7_gradcheck.SUITE]
    composed: list[list[str]] = []
    real = preflight._composer

    def counting() -> object:
        c = real()
        full = c.full
        c.full = lambda ov: composed.append(ov) or full(ov)
        return c

    monkeypatch.setattr(preflight, "_composer", counting)
    got = lab_gradcheck.compose_all(suite)
    # one composition per distinct set of group choices: default, init=xavier, data=circles, data=digits,
    # model=deep_sigmoid+init=xavier; the rest are value overrides applied to a copy
    assert len(composed) == len({tuple(o for o in ov if "." not in o.split("=")[0]) for ov in suite}) < len(suite)
    for ov, cfg in zip(suite, got, strict=True):
        want = preflight.compose(ov)  # Hydra's own composition, one per net
        validate(want)
        mine, hydras = OmegaConf.to_container(cfg), OmegaConf.to_container(want)
        # the hydra node records the overrides it was given (`hydra.overrides.task`); the check never reads it
        assert mine.pop("hydra")["runtime"]["choices"] == hydras.pop("hydra")["runtime"]["choices"], ov
        assert mine == hydras, ov
    with pytest.raises(lab_gradcheck.GradcheckError, match="init='nope' is not a known choice; valid: ") as info:
        lab_gradcheck.compose_all([[], ["init=nope"]])
    assert "\n" not in str(info.value)
