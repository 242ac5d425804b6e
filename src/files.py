"""The one atomic file writer: every file nnlab writes (records, results, datasets, reports) goes through here.

Why atomic: an interrupted job, `generate` or report must leave either the old file or the new one, never half a
file that a later aggregation (runs.csv, resume, `dvc repro`) would trust. The content goes to a temp file in the
same folder (same filesystem, so the rename is atomic on POSIX), then `os.replace` moves it over the target.
A leaf module: it imports nothing of nnlab.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


@contextmanager
def locked(lock_file: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (`flock`) on `lock_file` (created if missing, never deleted) in the block.

    Why a separate, permanent lock file: deleting a lock file races (a waiter may hold a lock on the unlinked
    inode while a newcomer locks a new file), and locking the protected file itself would clash with SQLite's own
    POSIX locks on it. The lock is released by the kernel if the process dies, so a killed holder never blocks.
    """
    import fcntl

    lock_file = Path(lock_file)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def try_lock(lock_file: str | Path) -> int | None:
    """Take an exclusive `flock` on `lock_file` without waiting: the open descriptor (the lock lives as long as it
    is open, i.e. at most as long as this process), or None if another process holds it."""
    import fcntl

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


# --- output paths: checked before any work --------------------------------------------------------------------
class OutputPathError(ValueError):
    """An output path nnlab must not or cannot write to; the message is one line."""


def check_output_dir(path: str | Path, *, key: str | None = None, base: Path | None = None) -> Path:
    """`path` as a folder nnlab may create and write into; raise :class:`OutputPathError` otherwise.

    Rules (each once broke a run only after its work, or wrote where it should not):
    - a relative path stays inside `base` (the working folder, i.e. the project): `study=../../x` or
      `results_dir=../../x` wrote outside the checkout; an absolute path is taken as the user's explicit choice;
    - neither the path nor any existing parent is a file (`results_dir=<a file>` exited 0 with no results);
    - the nearest existing folder accepts a new file: probed by creating and removing a temp file, which also
      catches a read-only mount when running as root (where permission bits do not apply).
    """
    name = f"{key}={path}" if key else repr(str(path))
    p = Path(path)
    base = Path.cwd() if base is None else base
    if not p.is_absolute():
        inside = Path(os.path.normpath(base / p))
        if inside != base and base not in inside.parents:
            raise OutputPathError(f"{name} leads outside the project folder {str(base)!r}; give an absolute path to "
                                  "write elsewhere")
        p = inside
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{name} is a file, not a folder; choose another path")
    existing = p
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{name} lies under the file {str(existing)!r}; choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".nnlab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{name} cannot be written ({exc.strerror or exc} in {str(existing)!r}); choose "
                              "another path") from None
    return p


# --- a whole folder, atomically --------------------------------------------------------------------------------
def side_file(target: str | Path, kind: str) -> Path:
    """A small file about `target` (its lock, its owner) kept out of `target`'s folder, in the system temp folder,
    named by a digest of `target`'s absolute path. Why not next to it: `results/` is versioned (git + DVC), and
    files nnlab needs only while it writes must not show up there as untracked files."""
    import hashlib

    folder = Path(tempfile.gettempdir()) / "nnlab"
    folder.mkdir(exist_ok=True)
    return folder / f"{hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:24]}.{kind}"


@contextmanager
def atomic_folder(target: str | Path, ours: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield an empty temp folder next to `target`; when the block succeeds it replaces `target` as a whole.

    Why: `results/<study>/` (runs.csv, metrics.json, leaderboard, curves/ for DVC) must always be one sweep's
    complete results: written file by file, two overlapping sweeps left a mix of both, and an interrupted write
    left a partial folder. Files in `target` that nnlab did not write (`ours(relative path)` is False, e.g. DVC's
    `.gitignore` or a user's notes) are carried over into the new folder, never deleted. The swap is one
    `renameat2(RENAME_EXCHANGE)` on Linux (readers see the old or the new folder, never none), two renames
    elsewhere; writers of the same target are serialised by a lock file (:func:`side_file`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    try:
        yield tmp
        with locked(side_file(target, "lock")):
            if target.is_dir():
                for old in sorted(target.rglob("*")):
                    rel = old.relative_to(target)
                    if old.is_file() and not ours(rel) and not (tmp / rel).exists():
                        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(old, tmp / rel)
            os.chmod(tmp, 0o777 & ~_UMASK)
            _swap(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a swap: the old folder's content


def _swap(new: Path, target: Path) -> None:
    """Put `new` at `target`; afterwards `new` holds the previous content (or nothing)."""
    if not target.exists():
        os.rename(new, target)
        new.mkdir()
        return
    if _rename_exchange(new, target):
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rename(target, old / "x")
    os.rename(new, target)
    os.rename(old / "x", new)
    old.rmdir()


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths with Linux's renameat2(RENAME_EXCHANGE); False where unavailable."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return ok
