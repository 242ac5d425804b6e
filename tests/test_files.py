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


def test_quick_exit_still_flushes_a_file_left_open_in_a_reference_cycle(tmp_path: Path) -> None:
    """src.shutdown's exit hook skips Python's final collections; a buffered file that a program never closed,
    held in a reference cycle that module teardown releases, was flushed by exactly those collections (without
    the hook's own flush its bytes were lost, measured). The bytes are on disk, and the hook did run (the objects
    are frozen when a handler registered before it runs)."""
    import subprocess
    import sys

    out = tmp_path / "cyc.txt"
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen={gc.get_freeze_count()}'))\n"
        "from src.shutdown import skip_final_collections\n"
        "skip_final_collections()\n"
        "class Holder: pass\n"
        "h = Holder(); h.self = h\n"
        f"h.f = open({str(out)!r}, 'w'); h.f.write('data' * 10)\n"
        "KEEP = h  # reachable until module teardown, as a library's cached object would be\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True)
    assert out.read_text() == "data" * 10
    assert int(res.stderr.split("frozen=")[1]) > 0, res.stderr
