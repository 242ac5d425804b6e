"""Datasets for nnlab: seeded generators, train/val/test splits, cards, and a loader that refuses bad files.

Why it is shaped like this:
- Every experiment in the lab is a claim about *training*, so the data must never be the variable: each
  recipe is seeded, the same seed gives bit-identical arrays, and the sha256 of the arrays
  (``Dataset.digest``) is logged as an MLflow tag so two runs can be checked to have seen the same points.
- Standardisation is fitted on the training split only (mean/std recorded in the card) so that validation/test
  numbers are honest; a zero std is replaced by 1 (digits has constant pixels) instead of dividing by zero.
- The ``*_course`` variants reproduce the course notebooks' exact points (same seeds, same call order, no
  standardisation) so course numbers can be matched digit for digit. They use private ``RandomState``
  objects, which draw exactly what the notebooks' global-RNG calls draw, without touching the caller's
  global RNG state.
- Files are written atomically (temp file in the same directory + ``os.replace``): an interrupted
  ``generate`` leaves either the old file or the new one, never half a file. ``load`` validates everything
  it reads and fails with one line naming the file, the problem and the fix (``dvc repro generate``)
  instead of a traceback deep in training. It never unpickles (``allow_pickle=False``).
- Heavy imports (scikit-learn, matplotlib) happen inside functions so ``python -m src.data --help`` stays
  fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import numbers
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NAMES", "COURSE_NAMES", "SCHEMA_VERSION", "Dataset", "DatasetError", "make", "save", "load",
           "transform", "generate_all", "main"]

NAMES: tuple[str, ...] = ("flower", "moons", "circles", "spiral", "xor", "gauss", "digits", "moons_noisy",
                          "circles_course", "moons_course", "flower_course")
COURSE_NAMES: tuple[str, ...] = ("circles_course", "moons_course", "flower_course")
SCHEMA_VERSION = 1

_ARRAY_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_SPLITS = ("train", "val", "test")
_FIX = "run `dvc repro generate` (or `python -m src.data generate`)"

# Defaults per recipe. The Playground generators default to noise 0, as the Playground itself does.
# moons_noisy: few, noisy points a roomy net overfits (studies S5/S6; stands in for the course's football set).
_DEFAULT_N = {"flower": 400, "moons": 400, "circles": 400, "spiral": 500, "xor": 500, "gauss": 500,
              "digits": 1797, "moons_noisy": 200}
_DEFAULT_NOISE = {"flower": 0.2, "moons": 0.2, "circles": 0.05, "spiral": 0.0, "xor": 0.0, "gauss": 0.0,
                  "moons_noisy": 0.35}
_N_CLASSES = {name: 2 for name in NAMES} | {"digits": 10}
_PLAYGROUND = ("spiral", "xor", "gauss")
_MIN_SAMPLES = 10


class DatasetError(ValueError):
    """A bad dataset request or a missing/corrupt dataset file; the message is always one line."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One dataset, already split (and standardised unless it is a course variant).

    Arrays are read-only (a stray in-place edit would silently change the data of every later run in the
    process); copy them if you need to modify. ``eq=False``: datasets compare by identity — compare
    ``digest()`` to compare contents.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    card: dict

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays by key (``X_train``, ``y_train``, ...), in the order the digest uses."""
        return {k: getattr(self, k) for k in _ARRAY_KEYS}

    def digest(self) -> str:
        """sha256 over names, dtypes, shapes and bytes of the six arrays: the dataset hash tagged on runs."""
        return _digest(self.arrays())

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, features={self.n_features}, classes={self.n_classes})")


# --------------------------------------------------------------------------------------------------- helpers


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in _ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{tuple(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 160 else text[:157] + "..."


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in NAMES:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(NAMES)}")
    return name


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**32:
        raise DatasetError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _freeze(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.array(a, dtype=dtype, order="C", copy=True)  # own copy: freezing must not touch a caller's array
    a.setflags(write=False)
    return a


def _class_counts(y: np.ndarray, n_classes: int) -> list[int]:
    return [int(c) for c in np.bincount(y, minlength=n_classes)]


def _versions() -> dict[str, str]:
    """Library versions in the card: scikit-learn's generators have changed points between releases."""
    out = {"numpy": np.__version__}
    with suppress(ImportError):
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    return out


# --------------------------------------------------------------------------------------------------- recipes


def _flower(n: int, noise: float, rng: Any) -> tuple[np.ndarray, np.ndarray]:
    """The course's planar petals (load_planar_dataset), for any n and noise; ``rng`` draws standard normals.

    Two classes of n/2 points; for class j: t = linspace(j*3.12, (j+1)*3.12, N) + noise*randn,
    r = a*sin(4t) + noise*randn with a = 4; X = [r sin t, r cos t]. Draw order matches the course (t, then r).
    """
    a = 4
    sizes = (n // 2, n - n // 2)
    X = np.zeros((n, 2))
    y = np.zeros(n, dtype=np.int64)
    start = 0
    for j, N in enumerate(sizes):
        ix = slice(start, start + N)
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.standard_normal(N) * noise
        r = a * np.sin(4 * t) + rng.standard_normal(N) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
        start += N
    return X, y


def _spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifySpiralData``: two interleaved arms, uniform noise in [-noise, noise] per axis.

    For i < N (N points per arm): r = i/N*5, t = 1.75*i/N*2*pi + delta (delta 0 for label 1, pi for label 0).
    """
    parts_X, parts_y = [], []
    for delta, label, N in ((0.0, 1, n - n // 2), (math.pi, 0, n // 2)):
        i = np.arange(N)
        r = i / N * 5
        t = 1.75 * i / N * 2 * math.pi + delta
        u = rng.uniform(-1, 1, size=(N, 2)) * noise  # per point: x noise then y noise, as in the loop
        parts_X.append(np.c_[r * np.sin(t) + u[:, 0], r * np.cos(t) + u[:, 1]])
        parts_y.append(np.full(N, label, dtype=np.int64))
    return np.concatenate(parts_X), np.concatenate(parts_y)


def _xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifyXORData``: uniform in [-5, 5]^2 pushed 0.3 away from the axes; the label is
    sign(x*y) measured on a noisy copy (noise scales a uniform [-5, 5] offset), so noise flips labels near
    the axes."""
    d = rng.uniform(-5, 5, size=(n, 4))  # per point: x, y, noiseX, noiseY (the Playground's draw order)
    pad = 0.3
    x = d[:, 0] + np.where(d[:, 0] > 0, pad, -pad)
    y = d[:, 1] + np.where(d[:, 1] > 0, pad, -pad)
    nx, ny = d[:, 2] * noise, d[:, 3] * noise
    label = ((x + nx) * (y + ny) >= 0).astype(np.int64)
    return np.c_[x, y], label


def _gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """TF Playground ``classifyTwoGaussData``: label 1 around (2, 2), label 0 around (-2, -2); the variance
    maps noise [0, 0.5] linearly to [0.5, 4]. (The Playground samples with the polar method; NumPy's normal
    has the same law, not the same stream.)"""
    variance = 0.5 + noise * (4 - 0.5) / 0.5
    sd = math.sqrt(variance)
    parts_X, parts_y = [], []
    for c, label, N in ((2.0, 1, n - n // 2), (-2.0, 0, n // 2)):
        parts_X.append(rng.normal(c, sd, size=(N, 2)))
        parts_y.append(np.full(N, label, dtype=np.int64))
    return np.concatenate(parts_X), np.concatenate(parts_y)


def _generate(name: str, n: int, noise: float | None, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Full (unsplit) X, y and the recipe description for the card."""
    if name == "circles":
        from sklearn.datasets import make_circles

        X, y = make_circles(n_samples=n, noise=noise, factor=0.8, random_state=seed)
        return X, y, {"generator": "sklearn.datasets.make_circles", "n_samples": n, "noise": noise,
                      "factor": 0.8}
    if name in ("moons", "moons_noisy"):
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=n, noise=noise, random_state=seed)
        return X, y, {"generator": "sklearn.datasets.make_moons", "n_samples": n, "noise": noise}
    if name == "flower":
        X, y = _flower(n, float(noise), np.random.default_rng(seed))
        return X, y, {"generator": "planar petals (course load_planar_dataset), numpy Generator",
                      "n_samples": n, "noise": noise, "a": 4}
    if name in _PLAYGROUND:
        fn = {"spiral": _spiral, "xor": _xor, "gauss": _gauss}[name]
        X, y = fn(n, float(noise), np.random.default_rng(seed))
        ts = {"spiral": "classifySpiralData", "xor": "classifyXORData", "gauss": "classifyTwoGaussData"}[name]
        return X, y, {"generator": f"tensorflow/playground src/dataset.ts {ts} (NumPy port, labels 0/1)",
                      "n_samples": n, "noise": noise}
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        if n < len(y):  # a seeded, stratified subsample (e.g. for quick runs)
            from sklearn.model_selection import train_test_split

            X, _, y, _ = train_test_split(X, y, train_size=n, random_state=seed, stratify=y)
        return X, y, {"generator": "sklearn.datasets.load_digits (bundled 8x8 images)", "n_samples": n}
    raise AssertionError(name)  # pragma: no cover - names are checked before


def _split(X: np.ndarray, y: np.ndarray, seed: int, val_fraction: float,
           test_fraction: float) -> tuple[list[np.ndarray], bool]:
    """Stratified train/val/test split (fractions of the whole); unstratified when a class is too small."""
    from sklearn.model_selection import train_test_split

    hold = val_fraction + test_fraction
    for stratify in (True, False):
        try:
            X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=hold, random_state=seed,
                                                          stratify=y if stratify else None)
            X_va, X_te, y_va, y_te = train_test_split(X_rest, y_rest, test_size=test_fraction / hold,
                                                      random_state=seed,
                                                      stratify=y_rest if stratify else None)
        except ValueError:
            if stratify:
                continue
            raise
        return [X_tr, y_tr, X_va, y_va, X_te, y_te], stratify
    raise AssertionError("unreachable")  # pragma: no cover


def _course(name: str) -> tuple[list[np.ndarray], dict]:
    """The course notebooks' exact points. ``make_*(..., random_state=RandomState(s))`` draws exactly what
    ``np.random.seed(s); make_*(...)`` draws from the global RNG (scikit-learn's ``check_random_state(None)``
    *is* the global RandomState), so the caller's global RNG is left alone."""
    if name == "circles_course":
        from sklearn.datasets import make_circles

        X_tr, y_tr = make_circles(n_samples=300, noise=.05, random_state=np.random.RandomState(1))
        X_te, y_te = make_circles(n_samples=100, noise=.05, random_state=np.random.RandomState(2))
        arrays = [X_tr, y_tr, X_te.copy(), y_te.copy(), X_te, y_te]
        recipe = {"generator": "sklearn.datasets.make_circles",
                  "train": "np.random.seed(1); make_circles(n_samples=300, noise=.05)",
                  "test": "np.random.seed(2); make_circles(n_samples=100, noise=.05)",
                  "course": "Improving Deep Neural Networks: Initialization"}
        flags = {"val_is_test": True, "val_is_train": False, "test_is_train": False,
                 "course_seeds": {"train": 1, "test": 2},
                 "note": "the course has no validation set: val is a copy of test"}
    elif name == "moons_course":
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=300, noise=.2, random_state=np.random.RandomState(3))
        arrays = [X, y, X.copy(), y.copy(), X.copy(), y.copy()]
        recipe = {"generator": "sklearn.datasets.make_moons",
                  "train": "np.random.seed(3); make_moons(n_samples=300, noise=.2)",
                  "course": "Improving Deep Neural Networks: Optimization"}
        flags = {"val_is_test": False, "val_is_train": True, "test_is_train": True,
                 "course_seeds": {"train": 3},
                 "note": "the course has only a training set: val and test are copies of train"}
    elif name == "flower_course":
        X, y = _flower(400, 0.2, _Randn(np.random.RandomState(1)))
        arrays = [X, y, X.copy(), y.copy(), X.copy(), y.copy()]
        recipe = {"generator": "planar petals: np.random.seed(1); load_planar_dataset() (m=400, N=200, a=4)",
                  "n_samples": 400, "noise": 0.2, "a": 4,
                  "course": "Neural Networks and Deep Learning: Planar data"}
        flags = {"val_is_test": False, "val_is_train": True, "test_is_train": True,
                 "course_seeds": {"train": 1},
                 "note": "the course has only a training set: val and test are copies of train"}
    else:  # pragma: no cover
        raise AssertionError(name)
    return arrays, {"recipe": recipe, **flags}


class _Randn:
    """Adapter so ``_flower`` draws with the legacy ``randn`` exactly as the course does
    (``RandomState.standard_normal`` and ``randn`` give the same stream; this keeps the course's spelling)."""

    def __init__(self, rs: np.random.RandomState) -> None:
        self._rs = rs

    def standard_normal(self, n: int) -> np.ndarray:
        return self._rs.randn(n)


# ------------------------------------------------------------------------------------------------------- make


def make(name: str, *, seed: int = 0, n_samples: int | None = None, noise: float | None = None,
         val_fraction: float = 0.2, test_fraction: float = 0.2, standardize: bool = True) -> Dataset:
    """Build dataset ``name`` in memory: generate with ``seed``, split (stratified) with ``seed``, standardise
    with train statistics. Same arguments -> bit-identical arrays.

    Course variants are fixed recipes: ``seed``, the fractions and ``standardize`` are ignored (the course's
    seeds, splits and raw scale are the point), and ``n_samples``/``noise`` are rejected.
    Raises :class:`DatasetError` (one line) on any bad argument.
    """
    _check_name(name)
    seed = _check_seed(seed)
    n_classes = _N_CLASSES[name]
    if name in COURSE_NAMES:
        if n_samples is not None or noise is not None:
            raise DatasetError(f"{name} is the course's fixed recipe: n_samples/noise cannot be set "
                               f"(use {name.removesuffix('_course')} for a configurable variant)")
        arrays, extra = _course(name)
        split = {"kind": "course", "stratified": False}
        standardized, mean, std, card_seed = False, None, None, None
    else:
        n = _DEFAULT_N[name] if n_samples is None else n_samples
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < _MIN_SAMPLES:
            raise DatasetError(f"n_samples must be an integer >= {_MIN_SAMPLES}, got {n_samples!r}")
        n = int(n)
        if name == "digits":
            if n > 1797:
                raise DatasetError(f"digits has 1797 images; n_samples must be <= 1797, got {n}")
            if noise is not None:
                raise DatasetError("noise does not apply to digits (real images); leave it unset")
        else:
            noise = _DEFAULT_NOISE[name] if noise is None else noise
            hi = 0.5 if name in _PLAYGROUND else math.inf
            if (isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise)
                    or not 0 <= noise <= hi):
                want = "in [0, 0.5] (the Playground's)" if name in _PLAYGROUND else "a finite number >= 0"
                raise DatasetError(f"noise for {name} must be {want}, got {noise!r}")
            noise = float(noise)
        for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < f < 1:
                raise DatasetError(f"{label} must be in (0, 1), got {f!r}")
        if val_fraction + test_fraction >= 1:
            raise DatasetError(f"val_fraction + test_fraction must be < 1, "
                               f"got {val_fraction} + {test_fraction}")
        X, y, recipe = _generate(name, n, noise, seed)
        arrays, stratified = _split(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64), seed,
                                    float(val_fraction), float(test_fraction))
        split = {"kind": "train_test_split", "val_fraction": float(val_fraction),
                 "test_fraction": float(test_fraction), "stratified": stratified}
        extra = {"recipe": recipe, "val_is_test": False, "val_is_train": False, "test_is_train": False}
        standardized, mean, std, card_seed = bool(standardize), None, None, seed
        if standardize:
            mu = arrays[0].mean(axis=0)
            sd = arrays[0].std(axis=0)
            sd = np.where(sd > 0, sd, 1.0)  # constant feature (digits' blank pixels): centred, not scaled
            for i in (0, 2, 4):
                arrays[i] = (arrays[i] - mu) / sd
            mean, std = [float(v) for v in mu], [float(v) for v in sd]

    frozen = {k: _freeze(a, np.float64 if k.startswith("X") else np.int64)
              for k, a in zip(_ARRAY_KEYS, arrays, strict=True)}
    card = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "n_classes": n_classes,
        "n_features": int(frozen["X_train"].shape[1]),
        "seed": card_seed,
        **extra,
        "split": split,
        "sizes": {s: int(len(frozen[f"y_{s}"])) for s in _SPLITS},
        "class_balance": {s: _class_counts(frozen[f"y_{s}"], n_classes) for s in _SPLITS},
        "standardized": standardized,
        "mean": mean,
        "std": std,
        "versions": _versions(),
        "sha256": _digest(frozen),
    }
    return Dataset(name=name, n_classes=n_classes, card=card, **frozen)


def transform(ds: Dataset, shift: float = 0.0, scale: float = 1.0, standardize: bool | None = None) -> Dataset:
    """The dataset with its features re-scaled: a pure function of ``ds`` (study S6, preprocessing).

    ``standardize=False`` first undoes the generator's standardisation (back to raw units, using the card's
    train mean/std); then every feature of every split becomes ``X * scale + shift``; ``standardize=True``
    finally re-standardises with the *train* split's mean/std (a zero std is replaced by 1). ``None`` keeps the
    data as generated. The identity (0, 1, None) returns ``ds`` itself, so default runs keep their digest;
    otherwise the card records the transform and the new statistics, and the digest changes.
    """
    for label, v in (("shift", shift), ("scale", scale)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise DatasetError(f"data.{label} must be a finite number, got {v!r}")
    if scale == 0:
        raise DatasetError("data.scale must be non-zero, got 0")
    if standardize not in (None, True, False):
        raise DatasetError(f"data.standardize must be true, false or null, got {standardize!r}")
    if shift == 0 and scale == 1 and standardize is None:
        return ds
    X = {s: np.array(getattr(ds, f"X_{s}"), dtype=np.float64) for s in _SPLITS}
    card = dict(ds.card)
    if standardize is False and card.get("standardized") and card.get("mean") is not None:
        mu, sd = np.asarray(card["mean"], dtype=np.float64), np.asarray(card["std"], dtype=np.float64)
        X = {s: x * sd + mu for s, x in X.items()}
    X = {s: x * float(scale) + float(shift) for s, x in X.items()}
    mean = std = None
    if standardize:
        mu = X["train"].mean(axis=0)
        sd = X["train"].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        X = {s: (x - mu) / sd for s, x in X.items()}
        mean, std = [float(v) for v in mu], [float(v) for v in sd]
    arrays = {**ds.arrays(), **{f"X_{s}": _freeze(x, np.float64) for s, x in X.items()}}
    card.update(transform={"shift": float(shift), "scale": float(scale), "standardize": standardize,
                           "source_sha256": ds.digest()},
                standardized=bool(standardize), mean=mean, std=std, sha256=_digest(arrays))
    return Dataset(name=ds.name, n_classes=ds.n_classes, card=card, **arrays)


# ------------------------------------------------------------------------------------------------- save/load


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success move it over ``path`` (atomic on POSIX), else delete
    it."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise


def save(ds: Dataset, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.npz`` (arrays), ``<name>.json`` (card) and ``<name>.png`` (scatter) into ``out_dir``.

    Returns ``{"npz": ..., "json": ..., "png": ...}``. The card written always carries the arrays' current
    digest, so a loaded file can be checked against it.
    """
    from .plots import dataset_scatter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"npz": out / f"{ds.name}.npz", "json": out / f"{ds.name}.json", "png": out / f"{ds.name}.png"}
    arrays = ds.arrays()
    card = {**ds.card, "schema_version": SCHEMA_VERSION, "name": ds.name, "n_classes": int(ds.n_classes),
            "n_features": ds.n_features, "sha256": _digest(arrays)}
    with _atomic_path(paths["npz"]) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # a file object: np.savez would append ".npz" to a path
    with _atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    with _atomic_path(paths["png"]) as tmp:
        dataset_scatter(ds, tmp)
    return paths


def _corrupt(path: Path, reason: str) -> DatasetError:
    return DatasetError(f"{path} is corrupt ({reason}): run `dvc repro generate`")


def _read_card(path: Path, name: str) -> dict:
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, _one_line(exc)) from None
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise _corrupt(path, _one_line(exc)) from None
    if not magic:
        raise _corrupt(path, "empty file")
    if magic != b"PK\x03\x04":  # np.load would otherwise try (and, rightly, refuse) to unpickle it
        raise _corrupt(path, "not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _corrupt(path, "not an .npz archive")
            missing = [k for k in _ARRAY_KEYS if k not in z.files]
            if missing:
                raise _corrupt(path, f"missing arrays: {', '.join(missing)}")
            return {k: z[k] for k in _ARRAY_KEYS}
    except DatasetError:
        raise
    except AttributeError:
        raise _corrupt(path, "not an .npz archive") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _corrupt(path, "holds object arrays, which are never unpickled") from None
        raise _corrupt(path, _one_line(exc)) from None
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError (pickled data), OSError, ...
        raise _corrupt(path, _one_line(exc)) from None


def _check_arrays(a: dict[str, np.ndarray], n_classes: int, n_features: Any) -> str | None:
    """The reason the arrays are unusable, or None."""
    d = None
    for s in _SPLITS:
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
    if n_features is not None and n_features != d:
        return f"arrays have {d} features, the card says {n_features}"
    return None


def load(name: str, data_dir: str | Path = "data") -> Dataset:
    """Load and validate ``<data_dir>/<name>.npz`` + ``.json``; raise :class:`DatasetError` (one line naming
    the file, the problem and ``dvc repro generate``) on a missing, truncated, tampered or stale file."""
    _check_name(name)
    d = Path(data_dir)
    npz, js = d / f"{name}.npz", d / f"{name}.json"
    for p in (npz, js):
        if not p.is_file():
            raise DatasetError(f"{p} is missing: {_FIX}")
    card = _read_card(js, name)
    arrays = _read_npz(npz)
    reason = _check_arrays(arrays, card["n_classes"], card.get("n_features"))
    if reason:
        raise _corrupt(npz, reason)
    got = _digest(arrays)
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
        _check_name(n)
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


# -------------------------------------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m src.data", description="Generate, save and inspect nnlab's datasets.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{generate,show}")
    g = sub.add_parser("generate", help="make and save datasets (npz + json card + png)")
    g.add_argument("--out", default="data", help="output directory (default: data)")
    g.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", default=None,
                   help=f"subset of datasets (default: all): {', '.join(NAMES)}")
    g.add_argument("--seed", type=int, default=0,
                   help="generation/split seed (default 0; course variants ignore it)")
    s = sub.add_parser("show", help="print a saved dataset's card")
    s.add_argument("name", choices=NAMES, metavar="NAME", help=f"one of: {', '.join(NAMES)}")
    s.add_argument("--data-dir", default="data", help="directory holding the files (default: data)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m src.data``; returns the exit code (1 on a dataset error, 2 on bad usage)."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "generate":
            generate_all(args.out, args.only or NAMES, args.seed, echo=print)
        else:
            print(json.dumps(load(args.name, args.data_dir).card, indent=2, sort_keys=True))
    except DatasetError as exc:
        print(f"python -m src.data: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
