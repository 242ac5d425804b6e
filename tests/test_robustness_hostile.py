"""Robustness, a hostile user (issue 13, items 6-8): every input is refused in one line before any work, or runs.

In-process and fast: the pre-flight check (`src.lab.preflight.check`, what `python -m src.train` runs before Hydra)
for the config cases, each CLI's own `main(argv)` for the argument cases, and the pieces behind them (memory
estimate, output paths, the whole-folder results write, the resume key, the zip directory check).
The table of cases with what was found before and after is docs/robustness.md.
"""

from __future__ import annotations

import errno
import json
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from src import data
from src.data import DatasetError
from src.files import OutputPathError, atomic_folder, check_output_dir
from src.lab import build, memory, records
from src.lab.config import ConfigError
from src.lab.preflight import check
from src.lab.tracking import TrackingError

ERRORS = (ConfigError, DatasetError, TrackingError)


@pytest.fixture(autouse=True)
def _scratch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run in a scratch folder (relative output paths land there), with a store there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _refused(argv: list[str]) -> str:
    with pytest.raises(ERRORS) as info:
        check(argv)
    msg = str(info.value)
    assert msg.strip() and "\n" not in msg.strip(), msg
    return msg


# --- items 7 and 8: configs ---------------------------------------------------------------------------------------
REFUSED: list[tuple[list[str], list[str]]] = [
    # (overrides, what the one line must contain)
    (["+train.lrate=0.5"], ["train.lrate", "valid keys under train", "lr"]),
    (["+model.depth=3"], ["model.depth", "hidden"]),
    (["model.activation=leaky_relu", "model.leaky_slope=nan"], ["model.leaky_slope=nan", "finite"]),
    (["model.leaky_slope=inf"], ["model.leaky_slope=inf", "finite"]),
    (["data.scale=1e308"], ["data.scale", "1e+150"]),
    (["data.shift=1e300"], ["data.shift", "1e+150"]),
    (["optimizer.eps=0"], ["optimizer.eps=0.0", "> 0"]),
    (["init=normal", "init.std=nan"], ["init.std=nan"]),
    (["schedule=step", "schedule.gamma=inf"], ["schedule.gamma=inf"]),
    (["train.seeds=100000000"], ["GB of memory", "train.max_memory_gb"]),
    (["model.hidden=[100000,100000]"], ["GB of memory", "train.max_memory_gb"]),
    (["train.epochs=1000000000000000"], ["memory", "log points"]),
    (["train.max_memory_gb=0"], ["train.max_memory_gb=0.0"]),
    (["model.hidden=[[1,2]]"], ["model.hidden", "integer"]),
    (["train.lr=???"], ["train.lr", "Missing mandatory value"]),
    (["train.lr=${nokey}"], ["train.lr", "nokey"]),
    (["-m", "train.seed=range(5,1)"], ["range(5,1)", "no values"]),
    (["-m", "train.lr=interval(0.01,0.1)"], ["interval", "list"]),
    (["-m", "train.seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], ["hydra.launcher.n_jobs=0"]),
    (["-m", "train.seed=0,1", "hydra.sweeper.min_jobs=0"], ["hydra.sweeper.min_jobs", "got 0", ">= 1 or null"]),
    (["-m", "train.seed=0,1", "hydra.sweeper.min_jobs=two"], ["hydra.sweeper.min_jobs", "'two'", "integer"]),
    (["-m", "train.seed=0,1", "hydra.sweeper.max_replicas=0"], ["hydra.sweeper.max_replicas", "got 0"]),
    (["-m", "train.seed=0,1", "hydra.sweeper.min_jobs=true"], ["hydra.sweeper.min_jobs", "got True"]),
    (["init.course=true", "train.seed=4294967296"], ["train.seed=4294967296", "2**32"]),
    (["train.seed=4294967295", "train.seeds=2"], ["train.seed", "2**32"]),
    ([f"study={'s' * 300}"], ["study=", "1-100"]),
    (["study=a/b"], ["study='a/b'"]),
    (["study=../../x"], ["study='../../x'"]),
    (["tracking.uri=sqlite://"], ["in-memory"]),
    (["tracking.uri=ftp://127.0.0.1/x"], ["not supported"]),
    (["--config-name=bogus"], ["--config-name='bogus'", "config"]),
    # item 6: output paths, checked up front
    (["-m", "train.seed=0", "results_dir={tmp}/afile"], ["results_dir=", "is a file"]),
    (["-m", "train.seed=0", "results_dir=../../x"], ["results_dir=../../x", "outside the project"]),
    (["-m", "train.seed=0", "hydra.sweep.dir={tmp}/afile/sw"], ["hydra.sweep.dir=", "under the file"]),
    (["hydra.run.dir={tmp}/afile/run"], ["hydra.run.dir=", "under the file"]),
]


@pytest.mark.parametrize(("argv", "must"), REFUSED, ids=[" ".join(a)[:60] for a, _ in REFUSED])
def test_refused_in_one_line(argv: list[str], must: list[str], data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x\n")
    msg = _refused([a.replace("{tmp}", str(tmp_path)) for a in argv] + [f"data.dir={data_dir}"])
    for s in must:
        assert s in msg, (s, msg)
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists(), "no work started"


def _dataset_dir(data_dir: Path, dest: Path, edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Path:
    ds = data.load("moons", data_dir)
    arrays = edit(ds.arrays())
    data.save(data.Dataset(name="moons", n_classes=2, card=ds.card, **arrays), dest)
    return dest


def test_one_class_dataset_refused(data_dir: Path, tmp_path: Path) -> None:
    """A dataset whose training labels hold one class trained to test accuracy 1.000; now it is refused."""
    d = _dataset_dir(data_dir, tmp_path / "one", lambda a: {k: (np.zeros_like(v) if k.startswith("y") else v)
                                                             for k, v in a.items()})
    assert "single class" in _refused([f"data.dir={d}"])


def test_zip_bomb_refused_before_inflating(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member declaring far more bytes than the card's sizes need is refused from the zip directory alone
    (before: 21 s and 3.2 GB of memory for a 3 MB file). np.load is never reached."""
    d = tmp_path / "bomb"
    d.mkdir()
    (d / "moons.json").write_bytes((data_dir / "moons.json").read_bytes())
    with zipfile.ZipFile(data_dir / "moons.npz") as src, \
            zipfile.ZipFile(d / "moons.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            if name != "X_train.npy":
                z.writestr(name, src.read(name))
        with z.open("X_train.npy", "w") as f:  # 64 MB of zeros: ~64 kB compressed
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (1 << 22, 2)})
            for _ in range(64):
                f.write(bytes(1 << 20))

    def no_inflating(*a: Any, **k: Any) -> Any:
        raise AssertionError("np.load reached")

    monkeypatch.setattr(np, "load", no_inflating)
    with pytest.raises(DatasetError, match=r"X_train.npy would inflate to 6710\d{4} bytes"):
        data.load("moons", d)


def test_huge_learning_rate_runs_and_diverges(data_dir: Path, compose: Callable[[list[str]], Any]) -> None:
    """The documented line: a value is refused when it makes the input or the arithmetic itself invalid; a
    merely huge learning rate is a (bad) hyper-parameter, and its divergence is the measured result."""
    assert check(["train.lr=1e308", f"data.dir={data_dir}", "tracking.enabled=false"]) == 1
    from src.lab.job import train

    cfg = compose(["train.lr=1e308", "train.epochs=5", "train.seeds=2", "train.progress=false",
                   f"data.dir={data_dir}"])
    result = train(build.build(cfg))
    assert result.diverged.all()


# --- the memory estimate ----------------------------------------------------------------------------------------
CALIBRATION = [
    ["train.seeds=4", "train.epochs=3", "model=bn", "data=digits"],
    ["train.seeds=32", "train.epochs=2", "model.hidden=[200,200]", "train.batch_size=64"],
    ["train.seeds=16", "train.epochs=500", "train.log_every=1", "model.hidden=[4]"],
    ["train.seeds=2", "train.epochs=10", "model=deep_sigmoid", "train.patience=5", "model.dropout=0.2",
     "optimizer=sgd", "train.batch_size=64"],
]


@pytest.mark.parametrize("overrides", CALIBRATION, ids=[" ".join(o) for o in CALIBRATION])
def test_memory_estimate_bounds_the_measured_peak(overrides: list[str], data_dir: Path,
                                                  compose: Callable[[list[str]], Any]) -> None:
    """The estimate is at least the peak NumPy allocation of the real fit (tracemalloc) and at most 3x it."""
    from src.lab.job import train

    cfg = compose([*overrides, "train.progress=false", f"data.dir={data_dir}"])
    built = build.build(cfg)
    ds = built.dataset
    est = memory.estimate_bytes(cfg, build.layer_sizes(cfg, ds), {s: len(getattr(ds, f"y_{s}"))
                                                                   for s in ("train", "val", "test")})
    built = build.build(cfg, ds)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        train(built)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= est <= 3 * peak, (est, peak)


# --- item 6: output paths and the whole-folder write ---------------------------------------------------------------

def test_output_dir_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    assert check_output_dir("new/sub") == tmp_path / "new" / "sub"
    assert check_output_dir(str(tmp_path.parent / "elsewhere")) == tmp_path.parent / "elsewhere"  # absolute: ok
    assert not (tmp_path / "new").exists(), "checking creates nothing"
    for bad, why in (("../x", "outside the project"), ("afile", "is a file"), ("afile/sub", "under the file")):
        with pytest.raises(OutputPathError, match=why):
            check_output_dir(bad, key="results_dir")

    def read_only(*a: Any, **k: Any) -> Any:  # a read-only mount (root ignores permission bits: inject EROFS)
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("src.files.tempfile.mkstemp", read_only)
    with pytest.raises(OutputPathError, match="cannot be written .Read-only file system"):
        check_output_dir("new", key="hydra.sweep.dir")


def test_results_folder_replaced_as_a_whole_keeping_foreign_files(tmp_path: Path) -> None:
    """results/<study>/ is one sweep's complete results; nnlab's stale files go, files it did not write stay
    (before: every curves/*.csv was deleted, a user's included; curves/jobNNN.csv is what nnlab wrote before
    curves.csv)."""
    from src.lab.results import is_result_file, write_results

    out = tmp_path / "results" / "s"
    (out / "curves").mkdir(parents=True)
    for rel, text in (("curves/mine.csv", "mine"), ("curves/job007.csv", "stale"), ("notes.txt", "mine"),
                      (".gitignore", "/runs.csv\n"), ("runs.csv", "stale")):
        (out / rel).write_text(text)
    sweep = tmp_path / "sweep"
    rows = []
    for n in range(2):
        (sweep / str(n)).mkdir(parents=True)
        (sweep / str(n) / "curve.csv").write_text("epoch,val_loss\n0,1\n")
        rows.append({"num": n, "name": f"j{n}", "status": "finished", "overrides": [], "config_hash": "h",
                     "metrics": {"test_acc": 0.5}})
    write_results(out, rows, sweep)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [".gitignore", "curves.csv", "curves/mine.csv", "leaderboard.md", "metrics.json", "notes.txt",
                     "replicas.csv", "runs.csv", "tuning.csv"]
    assert (out / "notes.txt").read_text() == "mine" and json.loads((out / "metrics.json").read_text())["configs"] == 2
    assert (out / "curves.csv").read_text().splitlines() == ["config,epoch,val_loss", "j0,0,1", "j1,0,1"]
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".s.")] in ([".s.lock"], []), "no temp dirs"
    assert is_result_file(Path("curves/job123.csv")) and not is_result_file(Path("curves/mine.csv"))


def test_interrupted_results_write_leaves_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (out / "runs.csv").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(out, lambda rel: True) as new:
        (new / "runs.csv").write_text("half")
        raise KeyboardInterrupt
    assert (out / "runs.csv").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"], "no temp folder left"


# --- item 3: the resume key ---------------------------------------------------------------------------------------

def test_resume_key_covers_config_data_and_code(data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A run finished on other data (`python -m src.data generate --seed 7`) or by other maths is not "done"."""
    seed0 = data.load("moons", data_dir).digest()
    data.save(data.make("moons", seed=7), tmp_path)
    seed7 = data.load("moons", tmp_path).digest()
    key = records.resume_key("cfg", seed0)
    assert key == records.resume_key("cfg", seed0)
    assert key != records.resume_key("cfg", seed7)
    assert key != records.resume_key("other cfg", seed0)
    monkeypatch.setattr(records, "code_digest", lambda: "edited maths")
    assert key != records.resume_key("cfg", seed0)


def test_code_digest_ignores_docstrings_and_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule: a change of the code that computes results reruns; a documentation-only change does not."""
    import shutil

    src = tmp_path / "src"
    for pkg in ("nn", "lab"):
        shutil.copytree(Path(records.__file__).parents[1] / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    fake = src / "lab" / "records.py"
    monkeypatch.setattr(records, "__file__", str(fake))

    def digest() -> str:
        records.code_digest.cache_clear()
        return records.code_digest()

    base = digest()
    loop = src / "lab" / "loop.py"
    text = loop.read_text()
    loop.write_text(text.replace('"""', '"""Edited docs. ', 1) + "\n# a comment\n")
    assert digest() == base
    loop.write_text(text + "\n_EDITED = 2\n")  # any change of the code itself
    assert digest() != base
    loop.write_text(text)
    (src / "lab" / "tracking.py").write_text("x = 1\n")  # not results code
    assert digest() == base
    records.code_digest.cache_clear()


# --- the other CLIs: one line, exit 2, before any work -------------------------------------------------------------

def _cli(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


CLI_BAD = [
    ("src.data.cli", ["generate", "--out", "{tmp}/afile"], "is a file"),
    ("src.data.cli", ["generate", "--out", "../x"], "outside the project"),
    ("src.data.cli", ["generate", "--seed", "-1"], "[0, 2**32)"),
    ("src.data.cli", ["generate", "--seed", "4294967296"], "[0, 2**32)"),
    ("src.gradcheck", ["--seed", "-1"], "[0, 2**32)"),
    ("src.gradcheck", ["--seed", "4294967296"], "[0, 2**32)"),
    ("src.gradcheck", ["--eps", "nan"], "finite number > 0"),
    ("src.gradcheck", ["--threshold", "inf"], "finite number > 0"),
    ("src.gradcheck", ["--replicas", "100000000"], "[1, 4096]"),
    ("src.studies.s7_gradcheck", ["--out", "{tmp}/afile"], "is a file"),
    ("src.studies.s2_activations", ["--out", "{tmp}/afile"], "is a file"),
    ("src.studies.s2_activations", ["--seed", "-1"], "[0, 2**32)"),
    ("src.studies.s2_activations", ["--replicas", "100000000"], "[1, 10000]"),
    ("src.studies.s2_activations", ["--replicas", "10000", "--samples", "1000000"], "GB of memory"),
    ("src.studies.toys", ["--out", "{tmp}/afile"], "is a file"),
    ("src.report.build", ["--out", "{tmp}/afile"], "is a file"),
    ("src.report.build", ["--results", "{tmp}/nope"], "is not a folder"),
]


@pytest.mark.parametrize(("module", "argv", "must"), CLI_BAD, ids=[f"{m} {' '.join(a)}" for m, a, _ in CLI_BAD])
def test_cli_argument_refused(module: str, argv: list[str], must: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    (tmp_path / "afile").write_text("x\n")
    main = importlib.import_module(module).main
    err = _cli(main, [a.format(tmp=tmp_path) for a in argv], capsys)
    assert must in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "mlflow.db") == ["afile"], "nothing written"
