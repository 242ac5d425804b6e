"""Robustness, bad input: every input either runs or fails before any work, in one line naming the bad value.

Checked against the real pre-flight (`src.lab.preflight.check`: Hydra composition, the schema, `config.validate`,
`data.load`, `tracking.check_reachable`) and, for accepted inputs, the real job (`src.lab.job.run_job`).
A property-based test (hypothesis) draws random override lists over the whole config surface.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from e2e_utils import ROOT, run
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from src import data
from src.data import DatasetError
from src.data.dataset import digest
from src.lab.config import ConfigError
from src.lab.preflight import check
from src.lab.tracking import TrackingError

DATASETS = ("moons", "circles", "xor")
ERRORS = (ConfigError, DatasetError, TrackingError)


@pytest.fixture(autouse=True)
def _no_env_tracking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _one_line_error(argv: list[str]) -> str:
    with pytest.raises(ERRORS) as info:
        check(argv)
    msg = str(info.value)
    assert msg.strip() and "\n" not in msg.strip(), msg
    return msg


# --- the list, one by one --------------------------------------------------------------------------

BAD = [
    # (overrides, strings the message must contain: the bad value and some valid choices)
    (["init=bogus"], ["'bogus'", "valid", "xavier"]),
    (["optimizer=adamm"], ["'adamm'", "valid", "rmsprop"]),
    (["schedule=linear"], ["'linear'", "valid", "cosine"]),
    (["model=huge"], ["'huge'", "valid", "mlp"]),
    (["data=mnist"], ["'mnist'", "valid", "moons"]),
    (["model.depth=3"], ["model.depth", "valid", "hidden"]),
    (["train.lrate=0.1"], ["train.lrate", "valid", "lr"]),
    (["+foo=1"], ["foo", "valid", "train"]),
    (["train.lr=abc"], ["train.lr", "abc"]),
    (["train.seeds=1.5"], ["train.seeds", "1.5"]),
    (["train.epochs=many"], ["train.epochs", "many"]),
    (["model.hidden=abc"], ["model.hidden"]),
    (["model.hidden=[a,b]"], ["model.hidden", "a"]),
    (["train.lr=0"], ["train.lr=0.0", "> 0"]),
    (["train.lr=-1"], ["train.lr=-1.0", "> 0"]),
    (["train.lr=nan"], ["train.lr=nan", "finite"]),
    (["train.lr=inf"], ["train.lr=inf", "finite"]),
    (["train.patience=-1"], ["train.patience=-1", ">= 0"]),
    (["model.dropout=1.0"], ["model.dropout=1.0", "[0, 1)"]),
    (["model.dropout=-0.1"], ["model.dropout=-0.1", "[0, 1)"]),
    (["model.dropout=2"], ["model.dropout=2.0", "[0, 1)"]),
    (["train.clip_norm=0"], ["train.clip_norm=0.0", "> 0"]),
    (["train.clip_value=-5"], ["train.clip_value=-5.0", "> 0"]),
    (["train.seeds=0"], ["train.seeds=0", ">= 1"]),
    (["train.seeds=-3"], ["train.seeds=-3", ">= 1"]),
    (["model.hidden=[0]"], ["model.hidden=[0]", ">= 1"]),
    (["model.hidden=[10,0,5]"], ["model.hidden=[10, 0, 5]", ">= 1"]),
    (["model.hidden=[-4]"], ["model.hidden=[-4]", ">= 1"]),
    (["train.epochs=0"], ["train.epochs=0", ">= 1"]),
    (["train.batch_size=0"], ["train.batch_size=0", ">= 1"]),
    (["train.log_every=0"], ["train.log_every=0", ">= 1"]),
    (["model.l2=-1"], ["model.l2=-1.0", ">= 0"]),
    (["model.activation=swish"], ["'swish'", "relu"]),
    (["train.shuffle=sometimes"], ["'sometimes'", "random"]),
    (["tracking.figures=[boundary,loss]"], ["tracking.figures='loss'", "histograms", "curves"]),
    (["-m", "train.lr=0.1,0.2,-3"], ["train.lr=-3.0"]),  # a bad value late in a sweep list
    (["-m", "init=he,xavier,bogus"], ["'bogus'"]),
    (["init=he,xavier"], ["-m"]),  # a sweep without --multirun
    # found by these tests: each used to pass the pre-flight and fail inside the job, after work had started
    (["train.seed=-1"], ["train.seed=-1", ">= 0"]),
    (["study="], ["study=''", "1-100 letters"]),
    (["resume=maybe"], ["resume", "'maybe'", "bool"]),
    (["+resume=true"], ["resume=true", "drop the '+'"]),  # the spelling before resume was in the schema
]


@pytest.mark.parametrize(("argv", "must"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_one_line(argv: list[str], must: list[str], data_dir: Path) -> None:
    msg = _one_line_error([*argv, f"data.dir={data_dir}"])
    for s in must:
        assert s in msg, (s, msg)


def test_preflight_composes_once_per_group_choice_as_hydra_does(data_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-flight checks every swept value but composes with Hydra once per distinct set of group choices
    (values go onto a copy: a 21-seed sweep composed 21 times, ~0.3 s each); each config it checks equals Hydra's
    own composition, and so does what the pre-flight reads of the `hydra` node (launcher, output folders)."""
    from omegaconf import OmegaConf

    from src.lab import preflight

    checked: list[tuple[list[str], object]] = []
    calls: list[list[str]] = []
    real_composer, real_check_one = preflight._composer, preflight._check_one

    def composer():  # noqa: ANN202
        c = real_composer()
        full = c.full
        c.full = lambda ov: (calls.append(list(ov)), full(ov))[1]
        return c

    def check_one(overrides, seen, multirun, comp):  # noqa: ANN001, ANN202
        cfg = real_check_one(overrides, seen, multirun, comp)
        checked.append((list(overrides), cfg))
        return cfg

    monkeypatch.setattr(preflight, "_composer", composer)
    monkeypatch.setattr(preflight, "_check_one", check_one)
    argv = ["-m", "train.seed=range(0,12)", "train.lr=0.1,0.3", "init=he,xavier", "study=pre", f"data.dir={data_dir}"]
    assert preflight.check(argv) == 48
    assert len(checked) == 1 + 11 + 1 + 1 and len(calls) == 2, "one composition per init, values on copies"
    for overrides, cfg in checked[::5]:
        want = preflight.compose(overrides)
        assert OmegaConf.to_container(cfg, resolve=False) == {**OmegaConf.to_container(want, resolve=False),
                                                              "hydra": OmegaConf.to_container(cfg.hydra)}
        for node in ("sweep", "run", "launcher"):  # what the pre-flight reads of `hydra` (folders unresolved: ${now:})
            assert OmegaConf.to_container(cfg.hydra[node]) == OmegaConf.to_container(want.hydra[node]), node



def test_output_folders_and_hydras_job_node(data_dir: Path, tmp_path: Path) -> None:
    """A single run's folder may use `${hydra:job.name}` (Hydra resolves it with the job's node): the pre-flight
    raised "HydraConfig was not set" with a traceback. A sweep's folder cannot (Hydra names it before any job
    exists and fails with that traceback): one line saying so; so is an interpolation that resolves nowhere."""
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    assert check(["hydra.run.dir=" + str(tmp_path) + "/${hydra:job.name}", f"data.dir={data_dir}"]) == 1
    assert HydraConfig.instance().cfg is before, "the caller's Hydra node is left as it was (a later job reads it)"
    msg = _one_line_error(["-m", "train.seed=0,1", f"hydra.sweep.dir={tmp_path}/" + "${hydra:job.override_dirname}",
                           f"data.dir={data_dir}"])
    assert "hydra.sweep.dir=" in msg and "hydra.sweep.subdir" in msg
    msg = _one_line_error(["-m", "train.seed=0,1", f"hydra.sweep.dir={tmp_path}/" + "${no_such_key}",
                           f"data.dir={data_dir}"])
    assert "no_such_key" in msg


def test_empty_hidden_list_is_logistic_regression(data_dir: Path, compose) -> None:  # noqa: ANN001
    """Decision: `model.hidden=[]` is a valid net (no hidden layer = logistic regression), not an empty size."""
    assert check(["model.hidden=[]", f"data.dir={data_dir}"]) == 1
    from src.lab.build import build_net

    cfg = compose(["model.hidden=[]", f"data.dir={data_dir}"])
    net = build_net(cfg, data.load("moons", data_dir))
    assert [k for k in net.params if k.startswith("W")] == ["W1"]


# --- dataset files --------------------------------------------------------------------------------------------

def _copy_moons(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in ("npz", "json"):
        (dst / f"moons.{ext}").write_bytes((src / f"moons.{ext}").read_bytes())
    return dst


def _rewrite(d: Path, edit) -> None:
    """Replace moons' arrays by `edit(arrays)` and re-sign the card, so only the content check can object."""
    with np.load(d / "moons.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays = edit(arrays)
    np.savez_compressed(d / "moons.npz", **arrays)
    card = json.loads((d / "moons.json").read_text())
    if all(k in arrays for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")):
        card["sha256"] = digest(arrays)
    (d / "moons.json").write_text(json.dumps(card))


DATA_FAULTS = {
    "npz missing": (lambda d: (d / "moons.npz").unlink(), "is missing"),
    "card missing": (lambda d: (d / "moons.json").unlink(), "is missing"),
    "npz truncated": (lambda d: (d / "moons.npz").write_bytes((d / "moons.npz").read_bytes()[:300]), "corrupt"),
    "npz empty": (lambda d: (d / "moons.npz").write_bytes(b""), "empty file"),
    "npz garbage": (lambda d: (d / "moons.npz").write_bytes(b"\x93NUMPY garbage" * 10), "not an .npz"),
    "card garbage": (lambda d: (d / "moons.json").write_text("{not json"), "corrupt"),
    "bytes flipped": (lambda d: _flip(d / "moons.npz"), "corrupt"),
    "wrong feature count": (lambda d: _rewrite(d, lambda a: {**a, "X_val": np.zeros((len(a["y_val"]), 3))}),
                            "features"),
    "rows != labels": (lambda d: _rewrite(d, lambda a: {**a, "y_test": a["y_test"][:-1]}), "rows"),
    "labels out of range": (lambda d: _rewrite(d, lambda a: {**a, "y_train": a["y_train"] * 7}), "labels"),
    "float labels": (lambda d: _rewrite(d, lambda a: {**a, "y_train": a["y_train"].astype(float)}), "dtype"),
    "NaN features": (lambda d: _rewrite(d, lambda a: {**a, "X_train": a["X_train"] * np.nan}), "non-finite"),
    "1-D X": (lambda d: _rewrite(d, lambda a: {**a, "X_test": a["X_test"][:, 0]}), "dimensions"),
    "array missing": (lambda d: _rewrite(d, lambda a: {k: v for k, v in a.items() if k != "y_val"}), "missing"),
}


def _flip(p: Path) -> None:
    """Change one compressed byte in the middle of the archive's first member (a silent bit flip)."""
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.infolist()[0]
    i = info.header_offset + 30 + len(info.filename) + (info.compress_size // 2)
    raw[i] ^= 0xFF
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("fault", list(DATA_FAULTS))
def test_bad_dataset_file_one_line(fault: str, data_dir: Path, tmp_path: Path) -> None:
    edit, must = DATA_FAULTS[fault]
    d = _copy_moons(data_dir, tmp_path / "d")
    edit(d)
    t0 = time.perf_counter()
    msg = _one_line_error([f"data.dir={d}"])
    assert time.perf_counter() - t0 < 5
    assert must in msg and "moons" in msg and "dvc repro generate" in msg, msg


# --- tracking URIs --------------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast(data_dir: Path) -> None:
    port = _closed_port()
    t0 = time.perf_counter()
    msg = _one_line_error([f"data.dir={data_dir}", f"tracking.uri=http://127.0.0.1:{port}"])
    assert time.perf_counter() - t0 < 5, "MLflow's own client would retry for minutes"
    assert f"127.0.0.1:{port}" in msg and "cannot be reached" in msg


def test_unreachable_server_from_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    assert "cannot be reached" in _one_line_error([f"data.dir={data_dir}"])


@pytest.mark.parametrize(
    ("uri", "must"),
    [
        ("sqlite:///{tmp}/no/such/folder/mlflow.db", "does not exist"),
        ("sqlite:///{tmp}", "names a folder"),
        ("sqlite:///{tmp}/notes.txt", "not an SQLite database"),
        ("file://{tmp}/mlruns", "not supported"),
        ("{tmp}/mlruns", "not supported"),
    ],
)
def test_bad_tracking_store(uri: str, must: str, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database\n")
    uri = uri.format(tmp=tmp_path)
    msg = _one_line_error([f"data.dir={data_dir}", f"tracking.uri={uri}"])
    assert must in msg and str(tmp_path) in msg, msg
    assert not (tmp_path / "no").exists(), "nothing is created for a bad store path"


def test_tracking_disabled_skips_the_store_check(data_dir: Path, tmp_path: Path) -> None:
    assert check([f"data.dir={data_dir}", "tracking.enabled=false", f"tracking.uri=sqlite:///{tmp_path}/x/y.db"]) == 1


# --- the command line: exit 2, one line, no traceback, nothing created -------------------------------------------

CLI_CASES = [
    ["train.lr=0"],
    ["model.hidden=[5,0]"],
    ["-m", "train.seeds=2,0"],
    ["data.dir=/nonexistent-nnlab-data"],
    ["tracking.uri=sqlite:////nonexistent-nnlab/mlflow.db"],
]


@pytest.mark.e2e
@pytest.mark.parametrize("argv", CLI_CASES, ids=[" ".join(a) for a in CLI_CASES])
def test_cli_fails_before_any_work(argv: list[str], data_dir: Path, tmp_path: Path) -> None:
    extra = [] if any(a.startswith("data.dir") for a in argv) else [f"data.dir={data_dir}"]
    proc = run([sys.executable, "-m", "src.train", *argv, *extra, f"hydra.run.dir={tmp_path}/out",
                f"hydra.sweep.dir={tmp_path}/multi"], tmp_path, check=False, timeout=120, PYTHONPATH=str(ROOT))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("nnlab: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no store, no output folder: no work started"
    assert not Path("/nonexistent-nnlab").exists()


@pytest.mark.e2e
def test_cli_full_error_traceback_for_a_dataset_error(tmp_path: Path) -> None:
    proc = run([sys.executable, "-m", "src.train", f"data.dir={tmp_path}"], tmp_path, check=False,
               timeout=120, HYDRA_FULL_ERROR="1", PYTHONPATH=str(ROOT))
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "DatasetError" in proc.stderr


# --- property: every input either runs or fails in one line ------------------------------------------------------

def _num(key: str):
    return st.one_of(
        st.integers(-3, 50), st.floats(-2.0, 2.0, allow_nan=False), st.sampled_from(["nan", "inf", "-inf", "1e-3"]),
        st.sampled_from(["abc", "null", "[1,2]", "true", "''"]),
    ).map(lambda v: f"{key}={v}")


GROUPS = {
    "data": [*DATASETS, "mnist", "moons_"],
    "init": ["zeros", "xavier", "he", "lecun", "orthogonal", "normal", "uniform", "randn_x10", "bogus"],
    "optimizer": ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adamm"],
    "schedule": ["constant", "step", "exponential", "inverse_time", "cosine", "linear"],
    "model": ["mlp", "tiny", "wide", "deep_sigmoid", "bn", "huge"],
    "clip": ["none", "norm_1", "value_1", "nope"],
}
NUMERIC = ["train.lr", "train.seed", "train.patience", "train.clip_norm", "train.clip_value", "model.dropout",
           "model.l2", "train.batch_size", "train.min_delta", "model.bn_momentum", "init.std", "optimizer.momentum",
           "schedule.gamma"]

override = st.one_of(
    st.sampled_from(sorted(GROUPS)).flatmap(lambda g: st.sampled_from(GROUPS[g]).map(lambda v: f"{g}={v}")),
    st.sampled_from(NUMERIC).flatmap(_num),
    st.lists(st.integers(-1, 6), max_size=3).map(lambda h: f"model.hidden=[{','.join(map(str, h))}]"),
    st.sampled_from(["model.activation=tanh", "model.activation=swish", "model.batchnorm=true",
                     "train.shuffle=course", "train.shuffle=never", "model.depth=2", "+foo=1", "train.seeds=0",
                     "train.dtype=float32", "train.dtype=int8", "init.course=true", "optimizer.betas=[0.9,0.99]",
                     "optimizer.nesterov=true", "optimizer.amsgrad=true", "train.epochs=0", "study=",
                     "resume=maybe", "+resume=true", "resume=true"]),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ovs=st.lists(override, min_size=1, max_size=4, unique_by=lambda o: o.split("=", 1)[0]))
def test_property_runs_or_fails_in_one_line(ovs: list[str], data_dir: Path, tmp_path_factory, compose) -> None:
    base = ["train.epochs=3", "train.seeds=2", "train.log_every=1", "train.progress=false",
            "tracking.enabled=false", f"data.dir={data_dir}"]
    ovs = [o for o in ovs if o.split("=", 1)[0] not in {b.split("=", 1)[0] for b in base}] + base
    try:
        n = check(ovs)
    except ERRORS as exc:
        event(f"rejected: {type(exc).__name__}")
        msg = str(exc)
        assert msg.strip() and "\n" not in msg.strip(), (ovs, msg)
        named = [o.split("=", 1)[0].lstrip("+") for o in ovs] + [o.split("=", 1)[1] for o in ovs]
        assert any(s and s in msg for s in named) or "optimizer" in msg or "schedule" in msg or "init" in msg, \
            (ovs, msg)
        return
    assert n == 1
    # Accepted: the real job runs it to a finished or diverged run (never `failed`, never an exception).
    from src.lab.job import run_job

    cfg = compose(ovs)
    out = tmp_path_factory.mktemp("job")
    cwd = os.getcwd()
    os.chdir(out)
    try:
        run_job(cfg)
    finally:
        os.chdir(cwd)
    rec = json.loads((out / "result.json").read_text())
    event(f"ran: {rec['status']}")
    assert rec["status"] in ("finished", "diverged"), (ovs, rec)


def test_course_draws_only_for_the_inits_the_course_can_reproduce(data_dir: Path) -> None:
    """`init.course=true` with an init that is not `randn * scale` (orthogonal, uniform, ...) passed the pre-flight
    and then failed every job with a ValueError (found by the property test): now one line before any work."""
    msg = _one_line_error(["init=orthogonal", "init.course=true", f"data.dir={data_dir}"])
    assert "init.name='orthogonal'" in msg and "he_normal" in msg and "init.course=false" in msg
    assert check(["init=he", "init.course=true", "tune.enabled=false", f"data.dir={data_dir}"]) == 1


def test_a_library_check_names_the_config_keys(data_dir: Path) -> None:
    """The optimizer's own check speaks of `Nesterov` and `momentum`; the user typed `optimizer.nesterov=true`
    (found by the property test): the line starts with the group and the keys set in it."""
    msg = _one_line_error(["optimizer=sgd", "optimizer.nesterov=true", f"data.dir={data_dir}"])
    assert msg.startswith("optimizer=sgd (optimizer.nesterov=True): ") and "momentum > 0" in msg, msg
