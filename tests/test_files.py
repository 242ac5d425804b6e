"""src/files.py, the one atomic writer: an interrupted write leaves the old file and no temp file behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src import files


def test_atomic_write_interrupted_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = files.atomic_write_json(tmp_path / "result.json", {"status": "finished"})

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_json(target, {"status": "half"})
    assert json.loads(target.read_text()) == {"status": "finished"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temp file left behind"
    assert oct(target.stat().st_mode & 0o777) != "0o600"


def test_json_text_and_bytes(tmp_path: Path) -> None:
    p = files.atomic_write_json(tmp_path / "a" / "m.json", {"b": np.float64(0.5), "a": np.arange(3)})
    assert p.read_text() == '{\n  "a": [\n    0,\n    1,\n    2\n  ],\n  "b": 0.5\n}\n'  # sorted, NumPy as numbers
    assert files.atomic_write_text(tmp_path / "t.txt", "é\n", durable=True).read_bytes() == "é\n".encode()
    assert files.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        files.atomic_write_json(tmp_path / "x.json", {"x": object()})
    assert not (tmp_path / "x.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.bin", "t.txt"], "no temp file left behind"
