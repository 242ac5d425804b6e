"""S3/S4 toys (src/studies/toys.py): the book's valley and the seed's x^4 clipping example, with the library's rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from src.studies import toys


def test_x4_without_clipping_lands_at_minus_390_and_explodes() -> None:
    r = toys.clip_run(None, None)
    assert r["x"][0] == 10.0 and r["grad"][0] == 4000.0
    assert r["x"][1] == -390.0
    assert r["loss"][1] == pytest.approx(390.0**4)
    assert not np.isfinite(r["loss"][-1])  # overflows within a few steps
    finite = r["x"][np.isfinite(r["x"])]
    assert np.all(np.abs(finite[1:]) > np.abs(finite[:-1]))  # |x| grows every step while it is a number


def test_x4_clip_by_value_100_steps_to_exactly_zero() -> None:
    r = toys.clip_run("value", 100.0)
    assert r["x"][1] == 0.0  # 10 - 0.1 * 100
    assert np.all(r["x"][1:] == 0.0) and r["loss"][-1] == 0.0


def test_x4_clip_by_norm_100_lands_at_the_eps_of_the_formula() -> None:
    r = toys.clip_run("norm", 100.0)
    # 10 - 0.1 * 4000 * 100 / (4000 + 1e-6) = 2.5e-9 (torch's eps in max_norm / (norm + eps))
    assert r["x"][1] == pytest.approx(10 - 0.1 * 4000 * 100 / (4000 + 1e-6), rel=1e-6)
    assert 0 < r["x"][1] < 1e-8
    assert np.all(np.abs(r["x"][1:]) < 1e-8)  # and it stays there


@pytest.fixture(scope="module")
def paths() -> dict[str, np.ndarray]:
    return {label: toys.trajectory(name, kw) for label, (name, kw) in toys.OPTIMIZERS.items()}


def _dist(p: np.ndarray) -> float:
    return float(math.hypot(*p[-1]))


def test_trajectories_start_at_the_books_point(paths: dict[str, np.ndarray]) -> None:
    for p in paths.values():
        assert p.shape == (31, 2) and tuple(p[0]) == (-7.0, 2.0)
    # SGD's first step is p - lr * grad with grad = (x/10, 2y): the library's rule, not a copy of it
    assert tuple(paths["SGD"][1]) == pytest.approx((-7.0 + 0.95 * 0.7, 2.0 - 0.95 * 4.0))


def test_sgd_zigzags_across_the_valley(paths: dict[str, np.ndarray]) -> None:
    y = paths["SGD"][:, 1]
    assert np.all(np.sign(y[1:]) == -np.sign(y[:-1]))  # y flips sign at every step ...
    assert np.allclose(y[1:], -0.9 * y[:-1])  # ... by 1 - 0.95 * 2 = -0.9
    assert np.all(np.diff(paths["SGD"][:, 0]) > 0)  # while x creeps toward 0 without overshooting


def test_what_the_30_steps_show(paths: dict[str, np.ndarray]) -> None:
    d = {k: _dist(p) for k, p in paths.items()}
    assert d["AdaGrad"] == min(d.values())  # AdaGrad ends closest
    assert d["Momentum"] == max(d.values())  # Momentum is still swinging along the valley after 30 steps ...
    assert np.any(np.diff(np.sign(paths["Momentum"][:, 0])) != 0)  # ... it overshot x = 0
    assert all(v < 1.0 for v in d.values())  # every optimizer came from 7.3 to within 1 of the optimum
    assert d["Adam"] < d["SGD"]


def test_run_writes_files_and_metrics(tmp_path: Path) -> None:
    m = toys.run(tmp_path)
    for name in ("trajectories.csv", "trajectories.png", "clip.csv", "clip.png", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == set(toys.HEADLINE)
    assert on_disk["s4_noclip_x_after_1_step"] == -390.0
    assert on_disk["s4_clipvalue100_x_after_1_step"] == 0.0
    assert on_disk["s4_noclip_final_loss"] == "inf"  # JSON has no inf: written as a string
    assert on_disk["s3_sgd_final_distance"] == pytest.approx(m["s3_sgd_final_distance"])
    rows = (tmp_path / "trajectories.csv").read_text().splitlines()
    assert rows[0] == "optimizer,step,x,y,f" and len(rows) == 1 + 4 * 31
