"""A packed job's figures drawn ahead by a forked helper (src/lab/drawing.py): the same files, and the job draws
whatever the helper could not (failed, died, not its share)."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from src.lab import drawing

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the helper is forked: Linux only")


@pytest.fixture(scope="module")
def trained(data_dir: Path, compose: Any) -> tuple[Any, Any, Any]:
    """(result, net, dataset) of one small fit."""
    from src import data
    from src.lab.build import build
    from src.lab.job import train

    cfg = compose(["data=moons", "train.epochs=20", "train.seeds=3", "tracking.enabled=false", f"data.dir={data_dir}"])
    ds = data.load("moons", data_dir)
    built = build(cfg, ds)
    return train(built), built.net, ds


@pytest.fixture(autouse=True)
def _helper_allowed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The helper starts whatever the machine's cores (the property is what it draws, not when it pays)."""
    monkeypatch.setattr(drawing, "_may_help", lambda: True)
    yield
    drawing.finish()


def _items(root: Path, trained: tuple[Any, Any, Any], n: int, draw: Any = None) -> list[tuple[Path, Any]]:
    from src.lab.artifacts import draw_figures

    result, net, ds = trained
    arts = [root / str(i) / "artifacts" for i in range(n)]
    return [(a, draw or functools.partial(draw_figures, a, ["boundary", "histograms"], result, net, ds)) for a in arts]


def test_the_helper_draws_two_of_three_and_the_same_bytes(tmp_path: Path, trained: tuple[Any, Any, Any]) -> None:
    from src.lab.artifacts import draw_figures

    items = _items(tmp_path / "sweep", trained, 5)
    assert drawing.start(items)
    by_helper = []
    for art, draw in items:  # as the job does: its own share inline, the helper's awaited
        if drawing.drawn(art):
            by_helper.append(art)
        else:
            draw()
    assert by_helper == [items[i][0] for i in (1, 2, 4)]
    ref = tmp_path / "inline"
    draw_figures(ref, ["boundary", "histograms"], *trained)
    for art, _ in items:
        assert sorted(p.name for p in art.iterdir()) == ["activation_histograms.png", "decision_boundary.png"]
        for png in art.iterdir():
            assert png.read_bytes() == (ref / png.name).read_bytes(), png
        assert not (art.parent / drawing.DRAWN).exists(), "the helper's word is not left behind"


def _fails() -> None:
    raise RuntimeError("no figure today")


def _slow() -> None:
    time.sleep(30)


def test_what_the_helper_cannot_draw_is_left_to_the_job(tmp_path: Path, trained: tuple[Any, Any, Any]) -> None:
    """A figure that fails in the helper, and a helper that dies (the OOM killer), leave those configs to the job."""
    items = _items(tmp_path / "a", trained, 3, draw=_fails)
    assert drawing.start(items)
    assert [drawing.drawn(art) for art, _ in items] == [False, False, False]
    drawing.finish()
    items = _items(tmp_path / "b", trained, 3, draw=_slow)
    assert drawing.start(items)
    os.kill(drawing._helper.pid, signal.SIGKILL)
    t0 = time.monotonic()
    assert [drawing.drawn(art) for art, _ in items] == [False, False, False]
    assert time.monotonic() - t0 < 25, "a dead helper is not waited for"


def test_the_helper_ignores_the_jobs_signals(tmp_path: Path, trained: tuple[Any, Any, Any]) -> None:
    """Ctrl-C/SIGTERM (a terminal's reach the whole group) stop the job, which still records every config: the
    helper draws on, and the job does not draw its share twice."""
    items = _items(tmp_path, trained, 3)
    assert drawing.start(items)
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(drawing._helper.pid, sig)
    assert drawing.drawn(items[1][0]) and drawing.drawn(items[2][0])
    drawing.finish()
    assert drawing._helper is None


def test_no_helper_for_one_config_or_where_it_cannot_pay(tmp_path: Path, trained: tuple[Any, Any, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert not drawing.start(_items(tmp_path / "one", trained, 1))
    monkeypatch.setattr(drawing, "_may_help", lambda: False)
    items = _items(tmp_path / "two", trained, 3)
    assert not drawing.start(items) and not any(drawing.drawn(a) for a, _ in items)


def test_a_joblib_worker_does_not_fork_a_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a worker of a joblib sweep the other core is a neighbour worker's; in the launching process (or with no
    sweep at all) a helper may start when two cores are usable."""
    from src.lab.signals import LAUNCHER_PID_ENV

    monkeypatch.undo()  # the real _may_help
    monkeypatch.setenv(LAUNCHER_PID_ENV, str(os.getppid()))
    assert drawing._may_help() is False
    monkeypatch.setenv(LAUNCHER_PID_ENV, str(os.getpid()))
    from joblib import cpu_count

    assert drawing._may_help() is (int(cpu_count()) >= 2)
