"""The MLflow model template cache (src/lab/model_writer.py): `save_model` once per key across processes.

Each `ModelWriter()` stands for a new process (the in-process templates are per instance). MLflow's `save_model`
is replaced by a failing stub once the first template exists: any later call would mean the cache was missed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.lab import model_writer
from src.lab.model_writer import ModelWriter
from src.nn.mlp import MLP


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def net() -> MLP:
    return MLP([2, 4, 1], replicas=2, seed=0)


def _no_more_save_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("save_model called: the template cache was missed")

    monkeypatch.setattr(mlflow.pyfunc, "save_model", refuse)


def test_a_template_is_made_once_across_processes(net: MLP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_writer.CACHE_ENV, str(tmp_path / "cache"))
    example = np.arange(10.0).reshape(5, 2)
    first, text = ModelWriter()._template(net, example)
    assert list((tmp_path / "cache" / "model-templates").glob(".new-*")) == [], "no staging folder left behind"
    _no_more_save_model(monkeypatch)
    again, text_again = ModelWriter()._template(net, example)  # a new process: from the cache
    assert again != first and text_again == text and _files(again) == _files(first)
    assert "@@run_id@@" in text and (again / "input_example.json").is_file()
    with pytest.raises(AssertionError, match="cache was missed"):
        ModelWriter()._template(net, example + 1)  # another input example: another template
    monkeypatch.setattr(model_writer, "_code_digest", lambda: "other code or versions")
    with pytest.raises(AssertionError, match="cache was missed"):
        ModelWriter()._template(net, example)
    monkeypatch.undo()
    _no_more_save_model(monkeypatch)
    monkeypatch.setenv(model_writer.CACHE_ENV, "")  # turned off: in-process templates only
    with pytest.raises(AssertionError, match="cache was missed"):
        ModelWriter()._template(net, example)


def test_an_unwritable_cache_costs_only_speed(net: MLP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(model_writer.CACHE_ENV, str(blocked))  # its model-templates/ cannot be created
    template, text = ModelWriter()._template(net, np.zeros((3, 2)))
    assert (template / "python_env.yaml").is_file() and "@@model_id@@" in text
