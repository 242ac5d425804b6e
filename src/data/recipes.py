"""The dataset recipes: names, defaults, generation, the stratified split and standardisation (:func:`make`).

Why: each recipe is seeded and the same arguments give bit-identical arrays; standardisation is fitted on the
training split only (mean/std recorded in the card) so that validation/test numbers are honest, and a zero std is
replaced by 1 (digits has constant pixels) instead of dividing by zero. scikit-learn is imported inside the
functions so ``python -m src.data --help`` stays fast.
"""

from __future__ import annotations

import math
import numbers
from contextlib import suppress
from typing import Any

import numpy as np

from src.data.course import course_arrays
from src.data.dataset import ARRAY_KEYS, SCHEMA_VERSION, SPLITS, Dataset, DatasetError, digest, freeze
from src.data.generators import flower, gauss, spiral, xor

NAMES: tuple[str, ...] = ("flower", "moons", "circles", "spiral", "xor", "gauss", "digits", "moons_noisy",
                          "circles_course", "moons_course", "flower_course")
COURSE_NAMES: tuple[str, ...] = ("circles_course", "moons_course", "flower_course")

# Defaults per recipe. The Playground generators default to noise 0, as the Playground itself does.
# moons_noisy: few, noisy points a roomy net overfits (studies S5/S6; stands in for the course's football set).
_DEFAULT_N = {"flower": 400, "moons": 400, "circles": 400, "spiral": 500, "xor": 500, "gauss": 500,
              "digits": 1797, "moons_noisy": 200}
_DEFAULT_NOISE = {"flower": 0.2, "moons": 0.2, "circles": 0.05, "spiral": 0.0, "xor": 0.0, "gauss": 0.0,
                  "moons_noisy": 0.35}
_N_CLASSES = {name: 2 for name in NAMES} | {"digits": 10}
_PLAYGROUND = ("spiral", "xor", "gauss")
_MIN_SAMPLES = 10


def check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in NAMES:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(NAMES)}")
    return name


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**32:
        raise DatasetError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)



def _class_counts(y: np.ndarray, n_classes: int) -> list[int]:
    return [int(c) for c in np.bincount(y, minlength=n_classes)]


def _versions() -> dict[str, str]:
    """Library versions in the card: scikit-learn's generators have changed points between releases."""
    out = {"numpy": np.__version__}
    with suppress(ImportError):
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    return out



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
        X, y = flower(n, float(noise), np.random.default_rng(seed))
        return X, y, {"generator": "planar petals (course load_planar_dataset), numpy Generator",
                      "n_samples": n, "noise": noise, "a": 4}
    if name in _PLAYGROUND:
        fn = {"spiral": spiral, "xor": xor, "gauss": gauss}[name]
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



def make(name: str, *, seed: int = 0, n_samples: int | None = None, noise: float | None = None,
         val_fraction: float = 0.2, test_fraction: float = 0.2, standardize: bool = True) -> Dataset:
    """Build dataset ``name`` in memory: generate with ``seed``, split (stratified) with ``seed``, standardise
    with train statistics. Same arguments -> bit-identical arrays.

    Course variants are fixed recipes: ``seed``, the fractions and ``standardize`` are ignored (the course's
    seeds, splits and raw scale are the point), and ``n_samples``/``noise`` are rejected.
    Raises :class:`DatasetError` (one line) on any bad argument.
    """
    check_name(name)
    seed = check_seed(seed)
    n_classes = _N_CLASSES[name]
    if name in COURSE_NAMES:
        if n_samples is not None or noise is not None:
            raise DatasetError(f"{name} is the course's fixed recipe: n_samples/noise cannot be set "
                               f"(use {name.removesuffix('_course')} for a configurable variant)")
        arrays, extra = course_arrays(name)
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

    frozen = {k: freeze(a, np.float64 if k.startswith("X") else np.int64)
              for k, a in zip(ARRAY_KEYS, arrays, strict=True)}
    card = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "n_classes": n_classes,
        "n_features": int(frozen["X_train"].shape[1]),
        "seed": card_seed,
        **extra,
        "split": split,
        "sizes": {s: int(len(frozen[f"y_{s}"])) for s in SPLITS},
        "class_balance": {s: _class_counts(frozen[f"y_{s}"], n_classes) for s in SPLITS},
        "standardized": standardized,
        "mean": mean,
        "std": std,
        "versions": _versions(),
        "sha256": digest(frozen),
    }
    return Dataset(name=name, n_classes=n_classes, card=card, **frozen)
