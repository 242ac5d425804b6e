"""The Dataset type: six frozen arrays (train/val/test X and y), a card, and a content digest.

Why frozen and hashed: every experiment in the lab is a claim about *training*, so the data must never be the
variable. The arrays are read-only (a stray in-place edit would silently change the data of every later run in
the process) and ``Dataset.digest`` (sha256 of names, dtypes, shapes and bytes) is tagged on every MLflow run so
two runs can be checked to have seen the same points.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
ARRAY_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
SPLITS = ("train", "val", "test")


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
        return {k: getattr(self, k) for k in ARRAY_KEYS}

    def digest(self) -> str:
        """sha256 over names, dtypes, shapes and bytes of the six arrays: the dataset hash tagged on runs."""
        return digest(self.arrays())

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, features={self.n_features}, classes={self.n_classes})")


def digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{tuple(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 160 else text[:157] + "..."


def freeze(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.array(a, dtype=dtype, order="C", copy=True)  # own copy: freezing must not touch a caller's array
    a.setflags(write=False)
    return a
