"""Command-line arguments of nnlab's CLIs: one-line errors, checked before any work.

Why: argparse's own errors print the whole usage first, and its `type=int`/`type=float` accept a seed of -1 or
2**32 (NumPy then fails with a traceback after imports and data loading), `nan`/`inf` thresholds (a check that
always passes), or an `--out` that is a file or climbs out of the project (a traceback after the work, or files
written anywhere). Each `type=` below raises `argparse.ArgumentTypeError`, which :class:`Parser` prints as
`<prog>: error: argument --seed: ... (see --help)` and exit code 2. A leaf module: argparse and `src.files` only.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from src.files import OutputPathError, check_output_dir

SEED_LIMIT = 2**32  # NumPy's legacy RandomState (the course's streams) takes seeds below 2**32
MEMORY_LIMIT_BYTES = 4e9  # what a measured study may ask for, as train.max_memory_gb's default for a run


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seed(text: str) -> int:
    """A seed: an integer in [0, 2**32)."""
    value = _parse(int, text, "an integer")
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; valid: an integer in [0, 2**32)")
    return value


def count(limit: int) -> Callable[[str], int]:
    """An integer in [1, limit] (replicas, rows, ...): the limit keeps a typo from asking for terabytes."""
    def parse(text: str) -> int:
        value = _parse(int, text, "an integer")
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{text!r} is invalid; valid: an integer in [1, {limit}]")
        return value
    return parse


def positive(text: str) -> float:
    """A finite number > 0 (a threshold, a step): `nan` and `inf` would make a check meaningless."""
    value = _parse(float, text, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; valid: a finite number > 0")
    return value


def output_dir(text: str) -> Path:
    """A folder to write into, checked by :func:`src.files.check_output_dir` (not a file, inside the project
    unless absolute, writable)."""
    try:
        return check_output_dir(text)
    except OutputPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def input_dir(text: str) -> Path:
    """An existing folder to read from."""
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder" + (" (it is a file)" if p.exists() else ""))
    return p


def _parse(kind: type, text: str, what: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def add_gradcheck_args(ap: argparse.ArgumentParser, threshold: float, threshold_help: str) -> None:
    """The options of both gradient-check CLIs (`python -m src.gradcheck`, `python -m src.studies s7_gradcheck`):
    one definition, so their names, ranges and defaults cannot drift apart."""
    ap.add_argument("--threshold", type=positive, default=threshold, help=threshold_help)
    ap.add_argument("--eps", type=positive, default=1e-7, help="finite-difference step (default 1e-7)")
    ap.add_argument("--batch", type=count(1_000_000), default=16, help="training rows used (default 16)")
    ap.add_argument("--replicas", type=count(4096), default=2, help="replicas (seeds) checked at once (default 2)")
    ap.add_argument("--seed", type=seed, default=0, help="seed of the weights, the batch and the dropout masks")
