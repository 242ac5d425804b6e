"""The study presets (`conf/experiment/s*.yaml`): they compose, their grids and job names are the report's
contract, the course tables reproduce to the digit, and each study's law holds on a shrunk run.

Runs are in-process (the pre-flight's compose + the builder and `src.lab.job.train`), on datasets generated
into a temporary folder, so the developer's `data/`, `results/` and `mlflow.db` are never touched. One test
goes through the real CLI (`python -m src.train -m experiment=s4_clip ...`) to check `runs.csv`.
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_utils import ROOT, run

from src import data
from src.lab import job
from src.lab.build import build, build_net
from src.lab.config import validate
from src.lab.loop import FitResult
from src.lab.preflight import compose

CONF = ROOT / "conf"
STUDIES = ("s1_init", "s1_course", "s3_optim", "s3_course", "s3_decay", "s4_clip", "s5_early", "s6_bn", "s6_reg",
           "s6_preproc")
BN_STDS = [float(x) for x in np.logspace(0, -4, 16)]
# The grid of each preset, in sweep order: the report builds its tables from these job names.
GRIDS: dict[str, dict[str, list[str]]] = {
    "s1_init": {"init": ["zeros", "randn", "randn_x10", "randn_div10", "randn_div3", "xavier_normal",
                         "xavier_uniform", "he_normal", "he_uniform", "lecun_normal"]},
    "s1_course": {"init": ["zeros", "randn_x10", "he_normal"]},
    "s3_optim": {"optimizer": ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]},
    "s3_course": {"optimizer": ["sgd", "momentum_course", "adam"]},
    "s3_decay": {"optimizer": ["sgd", "momentum_course", "adam"], "train.lr": ["0.1", "0.01"]},
    "s4_clip": {"clip": ["none", "value_1", "value_10", "norm_1", "norm_5"]},
    "s5_early": {"train.patience": ["null", "5", "20", "100"]},
    "s6_bn": {"model.batchnorm": ["true", "false"], "init.std": [repr(s) for s in BN_STDS]},
    "s6_reg": {"model.l2": ["0.0", "0.7"], "model.dropout": ["0.0", "0.14"]},
    "s6_preproc": {"data.standardize": ["false", "true"], "data.shift": ["0", "10"], "data.scale": ["1", "100"]},
}


def _grid(study: str) -> dict[str, list[str]]:
    spec = yaml.safe_load((CONF / "experiment" / f"{study}.yaml").read_text())
    params = spec["hydra"]["sweeper"]["params"]
    return {k: [v.strip() for v in str(vals).split(",")] for k, vals in params.items()}


def _jobs(study: str) -> list[list[str]]:
    grid = _grid(study)
    return [[f"{k}={v}" for k, v in zip(grid, combo, strict=True)] for combo in itertools.product(*grid.values())]


def _as_named(override: str) -> str:
    """How a run name spells a sweep override: a float literal to 4 significant digits (`1.0` -> `1`,
    `0.04641588833612779` -> `0.04642`), anything else as written."""
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}={number:.4g}" if any(c in value for c in ".eE") else override


def _compose(study: str, overrides: list[str]):  # noqa: ANN202 - a DictConfig
    return compose([f"experiment={study}", *overrides])


def _train(study: str, overrides: list[str], data_dir: Path) -> FitResult:
    """One job of `study` as `src.lab.job` runs it (validate, build, train), without tracking."""
    cfg = _compose(study, [*overrides, f"data.dir={data_dir}", "tracking.enabled=false"])
    validate(cfg)
    built = build(cfg)
    result = job.train(built)
    result.net = built.net  # type: ignore[attr-defined]  # for tests that look at the weights
    return result


# ------------------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("study", STUDIES)
def test_preset_grid_is_the_report_contract(study: str) -> None:
    grid = _grid(study)
    assert grid == GRIDS[study]


@pytest.mark.parametrize("study", [*STUDIES, "default", "smoke"])
def test_presets_state_only_what_differs(study: str) -> None:
    """The study's name, its results and sweep folders, the sweeper and the progress bar come from conf/config.yaml."""
    spec = yaml.safe_load((CONF / "experiment" / f"{study}.yaml").read_text())
    assert not {"study", "results_dir", "resume"} & set(spec), "derived from the preset's name"
    assert "sweep" not in spec.get("hydra", {}), "the sweep folder is derived: multirun/<study>/<time>"
    assert "progress" not in spec.get("train", {}), "train.progress: null shows a bar only on a terminal"
    assert not any("hydra/sweeper" in str(d) for d in spec.get("defaults", [])), "the sweeper is chosen once"
    cfg = _compose(study, [])
    assert (cfg.study, cfg.results_dir) == (study, None)  # results/<study>: only when dvc.yaml's stage says so
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{study}/")
    assert cfg.train.progress is None and cfg.resume is False
    assert cfg.hydra.sweeper._target_.endswith("VectorizedSweeper")


def test_without_a_preset_the_study_is_adhoc() -> None:
    cfg = compose(["init=zeros"])
    assert (cfg.study, cfg.results_dir) == ("adhoc", None)  # its own MLflow experiment; results/ (DVC's) untouched
    assert compose(["study=mine"]).study == "mine"


@pytest.mark.parametrize("study", STUDIES)
def test_every_job_of_the_preset_composes_and_validates(study: str, data_dir: Path) -> None:
    for overrides in _jobs(study):
        cfg = _compose(study, [*overrides, f"data.dir={data_dir}"])
        validate(cfg)
        assert cfg.study == study


def test_init_aliases_are_the_articles_snippets() -> None:
    for alias, std in (("randn", 1.0), ("randn_x10", 10.0), ("randn_div10", 0.1), ("randn_div3", 1 / 3)):
        cfg = _compose("s1_init", [f"init={alias}"])
        assert cfg.init.name == "normal" and math.isclose(cfg.init.std, std, rel_tol=1e-12)


@pytest.mark.parametrize("clip", ["none", "value_1", "value_10", "norm_1", "norm_5"])
def test_clip_group_sets_both_keys(clip: str) -> None:
    cfg = _compose("smoke", [f"clip={clip}"])
    kind, _, level = clip.partition("_")
    assert cfg.train.clip_value == (float(level) if kind == "value" else None)
    assert cfg.train.clip_norm == (float(level) if kind == "norm" else None)


# ----------------------------------------------------------------------------------- course reproductions


def test_s1_course_reproduces_the_course_table(data_dir: Path) -> None:
    """Course "Initialization": zeros 0.5/0.5, randn*10 0.83/0.86, He 0.99333/0.96 (train/test, 15000 GD steps);
    He's cost 0.8830 at iteration 0 and 0.0736 at iteration 14000."""
    want = {"zeros": (150, 50), "randn_x10": (249, 86), "he_normal": (298, 96)}  # correct of 300 train / 100 test
    for init, (train_ok, test_ok) in want.items():
        r = _train("s1_course", [f"init={init}"], data_dir)
        assert round(float(r.final["train_acc"][0]) * 300) == train_ok, init
        assert round(float(r.final["test_acc"][0]) * 100) == test_ok, init
        if init == "he_normal":
            k = list(r.epochs).index(14000)
            assert r.history["train_loss"][k, 0] == pytest.approx(0.07357896, abs=5e-7)
    cfg = _compose("s1_course", ["init=he_normal", f"data.dir={data_dir}"])
    ds = data.load("circles_course", data_dir)
    loss0, _ = build_net(cfg, ds).evaluate(ds.X_train, ds.y_train)
    assert float(loss0[0]) == pytest.approx(0.88305375, abs=5e-7)


def _s3_course(epochs: int, want: dict[str, int], data_dir: Path) -> None:
    for opt, correct in want.items():
        r = _train("s3_course", [f"optimizer={opt}", f"train.epochs={epochs}"], data_dir)
        assert round(float(r.final["train_acc"][0]) * 300) == correct, opt


@pytest.mark.slow
def test_s3_course_5000_epochs(data_dir: Path) -> None:
    """Course "Optimization", 5000 epochs: GD 0.717, Momentum 0.717, Adam 0.943 (train accuracy). In the long tier
    (~25 s of CPU, the quick tier's largest after the real `dvc repro`), with the preset's 10000 epochs; the quick
    tier keeps the course's initialization table (s1_course) as its reproduce-to-the-digit check."""
    _s3_course(5000, {"sgd": 215, "momentum_course": 215, "adam": 283}, data_dir)


@pytest.mark.slow
def test_s3_course_10000_epochs(data_dir: Path) -> None:
    """The preset's 10000 epochs: GD 0.797, Momentum 0.797, Adam 0.94 (about 30 s)."""
    _s3_course(10000, {"sgd": 239, "momentum_course": 239, "adam": 282}, data_dir)


@pytest.mark.slow
def test_s3_decay_matches_the_course_trajectory(data_dir: Path) -> None:
    """Scheduled decay, 5000 epochs. The course prints GD 0.9467 / Momentum 0.9567 / Adam 0.94; we get 0.9433 /
    0.9533 / 0.94 while matching its printed costs (epochs 0..4000) to 6 decimals: in both GD and Momentum one
    training point ends within 1e-3 of the 0.5 threshold and flips from epoch to epoch (see the preset)."""
    got = {}
    for opt, lr in (("sgd", 0.1), ("momentum_course", 0.1), ("adam", 0.01)):
        r = _train("s3_decay", [f"optimizer={opt}", f"train.lr={lr}"], data_dir)
        got[opt] = round(float(r.final["train_acc"][0]) * 300)
    assert got == {"sgd": 283, "momentum_course": 286, "adam": 282}


# ------------------------------------------------------------------------------------ laws on shrunk runs


def test_s1_zeros_never_breaks_symmetry(data_dir: Path) -> None:
    r = _train("s1_init", ["init=zeros", "train.epochs=300", "train.seeds=2"], data_dir)
    assert np.all(r.final["train_acc"] == 0.5) and np.all(r.final["test_acc"] == 0.5)
    W1 = np.asarray(r.net.params["W1"])  # type: ignore[attr-defined]  # (R, fan_in, fan_out)
    assert np.all(W1[:, :, :1] == W1)  # every unit of the layer identical


def test_s3_adam_beats_sgd_at_the_same_budget(data_dir: Path) -> None:
    loss = {opt: float(np.mean(_train("s3_optim", [f"optimizer={opt}", "train.epochs=100", "train.seeds=2"],
                                      data_dir).final["train_loss"])) for opt in ("sgd", "adam")}
    assert loss["adam"] < loss["sgd"]


def test_s4_unclipped_replicas_diverge_and_clipped_ones_do_not(data_dir: Path) -> None:
    short = ["train.epochs=5", "train.seeds=3"]
    r = _train("s4_clip", ["clip=none", *short], data_dir)
    assert r.diverged.mean() > 0 and np.all(r.diverged_epoch[r.diverged] >= 1)
    for clip in ("value_1", "norm_1", "norm_5"):
        r = _train("s4_clip", [f"clip={clip}", *short], data_dir)
        assert not r.diverged.any(), clip
        assert np.all(np.isfinite(r.final["train_loss"])), clip


def test_s5_patience_stops_early_and_restores_the_best(data_dir: Path) -> None:
    short = ["train.epochs=400", "train.seeds=2"]
    full = _train("s5_early", ["train.patience=null", *short], data_dir)
    early = _train("s5_early", ["train.patience=5", *short], data_dir)
    assert np.all(full.epochs_used == 400) and not full.stopped_early.any()
    assert early.stopped_early.all() and np.all(early.epochs_used < 400)
    assert np.all(early.best_epoch <= early.epochs_used)
    # the overfit run ends with a worse validation loss than the restored early-stopped weights
    assert np.all(early.final["val_loss"] < full.final["val_loss"])


def test_s6_bn_trains_at_a_small_scale_where_plain_fails(data_dir: Path) -> None:
    short = ["init.std=0.013593563908785255", "train.epochs=4", "train.seeds=2"]
    bn = _train("s6_bn", ["model.batchnorm=true", *short], data_dir)
    plain = _train("s6_bn", ["model.batchnorm=false", *short], data_dir)
    assert np.all(bn.final["test_acc"] > 0.6)
    assert np.all(plain.final["test_acc"] < 0.3)


def test_s6_l2_shrinks_the_weights(data_dir: Path) -> None:
    short = ["train.epochs=1000", "train.seeds=2", "model.dropout=0.0"]
    norms = {}
    for l2 in ("0.0", "0.7"):
        net = _train("s6_reg", [f"model.l2={l2}", *short], data_dir).net  # type: ignore[attr-defined]
        norms[l2] = sum(float(np.sum(np.asarray(v) ** 2)) for k, v in net.params.items() if k.startswith("W"))
    assert norms["0.7"] < norms["0.0"]


def test_s6_standardizing_removes_shift_and_scale(data_dir: Path) -> None:
    short = ["train.epochs=200", "train.seeds=2"]
    std = [_train("s6_preproc", ["data.standardize=true", f"data.shift={s}", f"data.scale={c}", *short],
                  data_dir).final["train_loss"] for s, c in (("0", "1"), ("10", "100"))]
    np.testing.assert_allclose(std[0], std[1], rtol=1e-6)
    raw = _train("s6_preproc", ["data.standardize=false", "data.shift=10", "data.scale=1", *short],
                 data_dir).final["train_loss"]
    assert np.mean(raw) > np.mean(std[0])


# ----------------------------------------------------------------------------------------- data.transform


def test_transform_identity_is_the_same_dataset() -> None:
    ds = data.make("moons")
    assert data.transform(ds) is ds


def test_transform_shift_scale_and_standardize() -> None:
    ds = data.make("moons")
    raw = data.make("moons", standardize=False)
    back = data.transform(ds, standardize=False)
    np.testing.assert_allclose(back.X_train, raw.X_train, atol=1e-12)
    np.testing.assert_allclose(back.X_test, raw.X_test, atol=1e-12)
    moved = data.transform(ds, shift=10.0, scale=100.0, standardize=False)
    np.testing.assert_allclose(moved.X_val, raw.X_val * 100 + 10, atol=1e-9)
    assert moved.digest() != ds.digest() and moved.card["sha256"] == moved.digest()
    assert moved.card["transform"] == {"shift": 10.0, "scale": 100.0, "standardize": False,
                                       "source_sha256": ds.digest()}
    assert moved.card["standardized"] is False and not moved.X_train.flags.writeable
    again = data.transform(moved, standardize=True)
    np.testing.assert_allclose(again.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(again.X_train.std(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(again.X_test, ds.X_test, atol=1e-9)  # fitted on train: the original scaling
    assert np.array_equal(again.y_train, ds.y_train)


@pytest.mark.parametrize("kwargs", [{"shift": float("nan")}, {"scale": 0.0}, {"scale": float("inf")},
                                    {"standardize": "yes"}])
def test_transform_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(data.DatasetError):
        data.transform(data.make("moons"), **kwargs)


def test_moons_noisy_recipe() -> None:
    ds = data.make("moons_noisy")
    assert ds.card["sizes"] == {"train": 120, "val": 40, "test": 40}
    assert ds.card["recipe"]["noise"] == 0.35 and ds.card["recipe"]["n_samples"] == 200


# ---------------------------------------------------------------------------------------- through the CLI


def _runs(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sweep_part(name: str, keys: list[str]) -> str:
    """The sweep's own overrides of a job name (Hydra spells booleans True/False; the presets write true/false)."""
    parts = [p for p in name.split(",") if p.split("=", 1)[0] in keys]
    return ",".join(p.replace("=True", "=true").replace("=False", "=false") for p in parts)


@pytest.mark.e2e
def test_s4_clip_through_the_cli(tmp_path: Path, data_dir: Path) -> None:
    """The real Hydra multirun: one runs.csv row per job, named by the sweep overrides, divergence recorded."""
    out = tmp_path / "results"
    run([sys.executable, "-m", "src.train", "-m", "experiment=s4_clip", "train.epochs=3", "train.seeds=2",
         "tracking.enabled=false", f"data.dir={data_dir}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
         f"results_dir={out}"], ROOT, timeout=300)
    rows = _runs(out / "runs.csv")
    assert [_sweep_part(r["name"], ["clip"]) for r in rows] == [f"clip={c}" for c in GRIDS["s4_clip"]["clip"]]
    frac = {r["name"].split(",")[0]: float(r["diverged_fraction"]) for r in rows}
    assert frac["clip=none"] > 0
    assert all(v == 0 for k, v in frac.items() if k != "clip=none")
    assert all(r["status"] in ("finished", "diverged") for r in rows)
    assert (out / "metrics.json").is_file()


@pytest.mark.e2e
@pytest.mark.parametrize("study", STUDIES)
def test_every_study_runs_through_the_cli_shrunk(study: str, tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "results"
    run([sys.executable, "-m", "src.train", "-m", f"experiment={study}", "train.epochs=2", "train.seeds=1",
         "tracking.enabled=false", f"data.dir={data_dir}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
         f"results_dir={out}"], ROOT, timeout=600)
    rows = _runs(out / "runs.csv")
    keys = list(GRIDS[study])
    assert [_sweep_part(r["name"], keys) for r in rows] == [",".join(map(_as_named, j)) for j in _jobs(study)]
    assert all(r["status"] in ("finished", "diverged") for r in rows), rows


@pytest.mark.e2e
@pytest.mark.slow
def test_s4_clip_with_tracking_records_diverged_not_failed(tmp_path: Path, data_dir: Path) -> None:
    """With MLflow on, the all-diverged config must still be a `diverged` row (its figures have no finite loss)."""
    out = tmp_path / "results"
    run([sys.executable, "-m", "src.train", "-m", "experiment=s4_clip", "train.epochs=3", "train.seeds=2",
         f"data.dir={data_dir}", f"hydra.sweep.dir={tmp_path / 'multirun'}", f"results_dir={out}"], ROOT,
        timeout=600, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    status = {r["name"].split(",")[0]: r["status"] for r in _runs(out / "runs.csv")}
    assert status["clip=none"] == "diverged"
    assert all(s == "finished" for k, s in status.items() if k != "clip=none")
