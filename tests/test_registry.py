"""The study registry: every study is one module of src/studies, with its preset (a grid) and its DVC stage.

Adding a study = one module + one preset + its line in dvc.yaml; these tests say which of the three is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.studies import _HELPERS, all_studies
from src.studies.base import Study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = all_studies()
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_the_registry_finds_every_study_module() -> None:
    modules = {p.stem for p in (ROOT / "src" / "studies").glob("*.py")} - {"__init__", "__main__", *_HELPERS}
    assert set(STUDIES) == modules
    assert list(STUDIES)[:2] == ["s1_init", "s1_course"] and list(STUDIES)[-1] == "default"  # the reading order
    assert all(isinstance(s, Study) and s.title for s in STUDIES.values())


@pytest.mark.parametrize("name", [s for s in STUDIES if STUDIES[s].grid])
def test_every_grid_study_has_its_preset(name: str) -> None:
    preset = ROOT / "conf" / "experiment" / f"{name}.yaml"
    assert preset.is_file(), f"study {name} is a Hydra grid: add its preset {preset.relative_to(ROOT)}"


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_has_its_dvc_stage(name: str) -> None:
    study = STUDIES[name]
    if not study.in_pipeline:
        pytest.skip(f"{name} is a preset only (Study(in_pipeline=False))")
    if study.grid:
        assert name in DVC["train"]["foreach"], f"add {name!r} to the foreach of the train stage in dvc.yaml"
    else:
        want = f"python -m src.studies {name} --out results/{name}"
        assert name in DVC, f"add a stage {name!r} to dvc.yaml running `{want}`"
        assert DVC[name]["cmd"] == want
        assert f"src/studies/{name}.py" in DVC[name]["deps"], f"stage {name}: add its module to its deps"


def test_every_stage_is_a_registered_study() -> None:
    stages = [*DVC["train"]["foreach"], *(s for s in DVC if s not in ("generate", "train", "report"))]
    unknown = [s for s in stages if s not in STUDIES]
    assert not unknown, f"dvc.yaml runs {unknown}: add a module src/studies/<name>.py for each"


def test_the_cli_lists_studies_and_refuses_a_grid() -> None:
    from src.studies.__main__ import main

    assert main(["s1_init"]) == 2  # a grid runs through Hydra
    assert main(["nope"]) == 2
    out = subprocess.run([sys.executable, "-m", "src.studies", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "python -m src.studies toys --out results/toys" in out.stdout


@pytest.mark.parametrize("preset", ["default", "s6_bn", "s1_init", "s1_course", "s3_optim", "s3_course", "s4_clip",
                                    "s5_early", "s6_reg", "s6_preproc"])
def test_grid_presets_start_one_worker_per_core_and_go_back_to_one_process(compose, preset: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every grid preset runs its jobs in parallel with `hydra/launcher=cores`: a job process per usable core at a
    time (forked from the launcher, src/lab/fork_launcher.py), at most 8 (joblib's own -1 starts one worker per core
    at once, whatever the number of tasks: 56 idle workers for 8 packs on 64 cores), resolved on the machine that
    launches. `hydra/launcher=basic` on the command
    line puts the preset back in one process: a preset that set `hydra.launcher.n_jobs` itself could not be composed
    with the basic launcher, whose config has no such key."""
    import joblib

    cfg = compose([f"experiment={preset}"])
    assert cfg.hydra.launcher._target_ == "hydra_plugins.nnlab_launcher.fork_launcher.ForkLauncher"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "cores"
    assert cfg.hydra.launcher.n_jobs == min(joblib.cpu_count(), 8)
    monkeypatch.setattr(joblib, "cpu_count", lambda: 64)
    assert cfg.hydra.launcher.n_jobs == 8
    monkeypatch.setattr(joblib, "cpu_count", lambda: 1)
    assert cfg.hydra.launcher.n_jobs == 1
    basic = compose([f"experiment={preset}", "hydra/launcher=basic"])
    assert basic.hydra.launcher._target_.endswith("BasicLauncher")


def test_a_bad_worker_cap_names_the_value() -> None:
    from src.lab.config import cores

    with pytest.raises(ValueError, match="nnlab.cores needs a count >= 1, got 0"):
        cores(0)
