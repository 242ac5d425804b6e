"""Bad input fails before any work, in one line naming the bad value and the valid choices."""

from __future__ import annotations

import sys

import pytest
from e2e_utils import ROOT, run

from src import data
from src.lab.preflight import PreflightError, check


def _err(argv: list[str]) -> str:
    with pytest.raises(Exception) as info:
        check(argv)
    msg = str(info.value)
    assert "\n" not in msg.strip(), msg
    return msg


@pytest.mark.parametrize(
    ("argv", "must_contain"),
    [
        (["init=bogus"], ["'bogus'", "he_normal", "xavier"]),
        (["optimizer=adamm"], ["'adamm'", "adam", "rmsprop"]),
        (["data=nope"], ["'nope'", "moons", "flower"]),
        (["train.lr=-1"], ["train.lr", "-1", "> 0"]),
        (["train.lr=abc"], ["train.lr", "abc"]),
        (["train.patience=-2"], ["train.patience", "-2"]),
        (["model.dropout=1.0"], ["model.dropout", "[0, 1)"]),
        (["train.clip_norm=0"], ["train.clip_norm", "> 0"]),
        (["train.seeds=0"], ["train.seeds", ">= 1"]),
        (["model.hidden=[3,0]"], ["model.hidden", "[3, 0]"]),
        (["model.depth=3"], ["model.depth", "hidden", "activation"]),
        (["model.activation=swish"], ["swish", "relu", "tanh"]),
        (["-m", "train.lr=0.1,abc"], ["train.lr", "abc"]),
        (["-m", "init=he,bogus"], ["'bogus'", "he_normal"]),
        (["init=he,xavier"], ["-m"]),
        (["+foo=1"], ["foo", "train"]),
    ],
)
def test_bad_input_is_one_line(argv: list[str], must_contain: list[str], data_dir: str) -> None:
    msg = _err([*argv, f"data.dir={data_dir}"])
    for s in must_contain:
        assert s in msg, (s, msg)


def test_good_sweep_counts_jobs(data_dir: str) -> None:
    assert check(["-m", "init=zeros,xavier,he", "optimizer=sgd,adam", f"data.dir={data_dir}"]) == 6
    assert check([f"data.dir={data_dir}"]) == 1


def test_preset_grid_values_are_checked(data_dir: str) -> None:
    # experiment=smoke sweeps init=zeros,xavier,he from its own hydra.sweeper.params
    assert check(["-m", "experiment=smoke", f"data.dir={data_dir}"]) == 3


def test_missing_dataset_names_the_fix(tmp_path) -> None:
    with pytest.raises(data.DatasetError) as info:
        check([f"data.dir={tmp_path}"])
    assert "dvc repro generate" in str(info.value)


def test_unreachable_tracking_server(data_dir: str) -> None:
    with pytest.raises(Exception) as info:
        check([f"data.dir={data_dir}", "tracking.uri=http://127.0.0.1:9"])
    assert "127.0.0.1:9" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.e2e
def test_cli_exit_code_and_single_line() -> None:
    proc = run([sys.executable, "-m", "src.train", "init=bogus"], ROOT, check=False, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("nnlab: error:") and "bogus" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_full_error_shows_traceback() -> None:
    proc = run([sys.executable, "-m", "src.train", "train.lr=-1"], ROOT, check=False, timeout=120,
               HYDRA_FULL_ERROR="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_preflight_error_type() -> None:
    assert issubclass(PreflightError, ValueError)
