"""The one atomic file writer: every file nnlab writes (records, results, datasets, reports) goes through here.

Why atomic: an interrupted job, `generate` or report must leave either the old file or the new one, never half a
file that a later aggregation (runs.csv, resume, `dvc repro`) would trust. The content goes to a temp file in the
same folder (same filesystem, so the rename is atomic on POSIX), then `os.replace` moves it over the target.
A leaf module: it imports nothing of nnlab.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temp path next to `path`; when the block succeeds move it over `path`, else delete it.

    For writers that want a path of their own (`np.savez`, `fig.savefig`). `durable=True` also fsyncs the content
    before the rename (datasets: written once, read by every run). The file gets the usual 0666 & ~umask mode
    (mkstemp makes 0600 files; results are meant to be shared like any file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | Path, obj: Any, *, durable: bool = False) -> Path:
    """`obj` as sorted, indented JSON (NumPy scalars and arrays become numbers and lists)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n",
                             durable=durable)


def _json_default(o: Any) -> Any:
    # Duck-typed so this module needs no NumPy import: np.generic has .item(), np.ndarray has .tolist().
    if hasattr(o, "tolist") and hasattr(o, "shape"):
        return o.tolist()
    if hasattr(o, "item") and hasattr(o, "dtype"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
