"""Saving and loading datasets: ``<name>.npz`` (arrays), ``<name>.json`` (card), ``<name>.png`` (scatter).

Why it is strict: files are written atomically (an interrupted ``generate`` leaves either the old file or the new
one, never half a file), and :func:`load` validates everything it reads and fails with one line naming the file,
the problem and the fix (``dvc repro generate``) instead of a traceback deep in training. It never unpickles
(``allow_pickle=False``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.data.dataset import ARRAY_KEYS, SCHEMA_VERSION, SPLITS, Dataset, DatasetError, digest, one_line
from src.data.recipes import NAMES, check_name, make
from src.files import atomic_path, atomic_write_json

FIX = "run `dvc repro generate` (or `python -m src.data generate`)"


def save(ds: Dataset, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.npz`` (arrays), ``<name>.json`` (card) and ``<name>.png`` (scatter) into ``out_dir``.

    Returns ``{"npz": ..., "json": ..., "png": ...}``. The card written always carries the arrays' current
    digest, so a loaded file can be checked against it.
    """
    from src.plots.data import dataset_scatter  # here, not at the top: `import src.data` stays matplotlib-free

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"npz": out / f"{ds.name}.npz", "json": out / f"{ds.name}.json", "png": out / f"{ds.name}.png"}
    arrays = ds.arrays()
    card = {**ds.card, "schema_version": SCHEMA_VERSION, "name": ds.name, "n_classes": int(ds.n_classes),
            "n_features": ds.n_features, "sha256": digest(arrays)}
    with atomic_path(paths["npz"], durable=True) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # a file object: np.savez would append ".npz" to a path
    atomic_write_json(paths["json"], card, durable=True)
    with atomic_path(paths["png"], durable=True) as tmp:
        dataset_scatter(ds, tmp)
    return paths


def _corrupt(path: Path, reason: str) -> DatasetError:
    return DatasetError(f"{path} is corrupt ({reason}): run `dvc repro generate`")


def _read_card(path: Path, name: str) -> dict:
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, one_line(exc)) from None
    if not isinstance(card, dict):
        raise _corrupt(path, "not a JSON object")
    version = card.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {version!r}, this code reads {SCHEMA_VERSION}: "
                           "run `dvc repro generate`")
    if card.get("name") != name:
        raise _corrupt(path, f"card is for {card.get('name')!r}, not {name!r}")
    k = card.get("n_classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise _corrupt(path, f"n_classes must be an integer >= 2, got {k!r}")
    if not isinstance(card.get("sha256"), str):
        raise _corrupt(path, "no sha256 in the card")
    return card


MAX_MEMBER_BYTES = 1 << 30  # an array of a dataset whose card states no sizes


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise _corrupt(path, one_line(exc)) from None
    if not magic:
        raise _corrupt(path, "empty file")
    if magic != b"PK\x03\x04":  # np.load would otherwise try (and, rightly, refuse) to unpickle it
        raise _corrupt(path, "not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _corrupt(path, "not an .npz archive")
            missing = [k for k in ARRAY_KEYS if k not in z.files]
            if missing:
                raise _corrupt(path, f"missing arrays: {', '.join(missing)}")
            return {k: z[k] for k in ARRAY_KEYS}
    except DatasetError:
        raise
    except AttributeError:
        raise _corrupt(path, "not an .npz archive") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _corrupt(path, "holds object arrays, which are never unpickled") from None
        raise _corrupt(path, one_line(exc)) from None
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError (pickled data), OSError, ...
        raise _corrupt(path, one_line(exc)) from None


def _check_inflated_sizes(path: Path, card: dict) -> None:
    """Refuse an archive whose members would inflate beyond what the card's split sizes need, before inflating.

    Why: a 3 MB `.npz` of zeros declaring a 3 GB array was refused only after 21 s and 3.2 GB of memory (the
    decompression ran before the shape check). The zip directory states each member's inflated size; Python's
    zipfile never inflates past it, so checking it first bounds both time and memory.
    """
    import zipfile

    sizes, d = card.get("sizes") or {}, card.get("n_features")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # not a readable zip: _read_npz says what is wrong with it (empty, not an archive, ...)
    for info in infos:
        key = info.filename.removesuffix(".npy")
        rows = sizes.get(key.partition("_")[2]) if isinstance(sizes, dict) else None
        width = d if key.startswith("X_") else 1
        limit = MAX_MEMBER_BYTES if not isinstance(rows, int) or not isinstance(width, int) else rows * width * 8 + 4096
        if info.file_size > limit:
            raise _corrupt(path, f"{info.filename} would inflate to {info.file_size} bytes where the card's sizes "
                                 f"need at most {limit}; not decompressed")


def _check_arrays(a: dict[str, np.ndarray], n_classes: int, n_features: Any) -> str | None:
    """The reason the arrays are unusable, or None."""
    d = None
    for s in SPLITS:
        X, y = a[f"X_{s}"], a[f"y_{s}"]
        if X.dtype != np.float64:
            return f"X_{s} has dtype {X.dtype}, expected float64"
        if y.dtype != np.int64:
            return f"y_{s} has dtype {y.dtype}, expected int64"
        if X.ndim != 2:
            return f"X_{s} has {X.ndim} dimensions, expected 2 (samples, features)"
        if y.ndim != 1:
            return f"y_{s} has {y.ndim} dimensions, expected 1"
        if len(X) != len(y):
            return f"X_{s} has {len(X)} rows but y_{s} has {len(y)}"
        if len(y) == 0 or X.shape[1] == 0:
            return f"X_{s} is empty {X.shape}"
        if d is None:
            d = X.shape[1]
        elif X.shape[1] != d:
            return f"X_{s} has {X.shape[1]} features, X_train has {d}"
        if not np.isfinite(X).all():
            return f"X_{s} has non-finite values"
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            return f"y_{s} has labels in [{lo}, {hi}], outside [0, {n_classes})"
        if s == "train" and lo == hi:
            return f"y_train holds a single class ({lo}): a classifier needs examples of at least 2 classes"
    if n_features is not None and n_features != d:
        return f"arrays have {d} features, the card says {n_features}"
    return None


def load(name: str, data_dir: str | Path = "data") -> Dataset:
    """Load and validate ``<data_dir>/<name>.npz`` + ``.json``; raise :class:`DatasetError` (one line naming
    the file, the problem and ``dvc repro generate``) on a missing, truncated, tampered or stale file."""
    check_name(name)
    d = Path(data_dir)
    npz, js = d / f"{name}.npz", d / f"{name}.json"
    for p in (npz, js):
        if not p.is_file():
            raise DatasetError(f"{p} is missing: {FIX}")
    card = _read_card(js, name)
    _check_inflated_sizes(npz, card)
    arrays = _read_npz(npz)
    reason = _check_arrays(arrays, card["n_classes"], card.get("n_features"))
    if reason:
        raise _corrupt(npz, reason)
    got = digest(arrays)
    if got != card["sha256"]:
        raise _corrupt(npz, f"sha256 {got[:12]}... does not match {js.name}'s {str(card['sha256'])[:12]}...")
    for v in arrays.values():
        v.setflags(write=False)
    return Dataset(name=name, n_classes=int(card["n_classes"]), card=card, **arrays)


def generate_all(out_dir: str | Path, names: Sequence[str] = NAMES, seed: int = 0, *,
                 echo: Callable[[str], None] | None = None) -> list[Path]:
    """Make and save each dataset (defaults + ``seed``); return every file written (npz, json, png per name).

    ``echo`` receives one summary line per dataset (the CLI prints them).
    """
    for n in names:
        check_name(n)
    written: list[Path] = []
    for n in names:
        ds = make(n, seed=seed)
        paths = save(ds, out_dir)
        written.extend(paths.values())
        if echo is not None:
            echo(_summary(ds, paths["npz"]))
    return written


def _summary(ds: Dataset, path: Path) -> str:
    c = ds.card["sizes"]
    return (f"{ds.name:<15} train {c['train']:>5}  val {c['val']:>4}  test {c['test']:>4}  "
            f"features {ds.n_features:>2}  classes {ds.n_classes:>2}  -> {path}")
