"""Datasets for nnlab: seeded generators, train/val/test splits, cards, and a loader that refuses bad files.

    dataset     the Dataset type (frozen arrays, card, digest) and DatasetError
    generators  the course's petals, the TensorFlow Playground's spiral/XOR/gauss
    course      the course notebooks' exact points (``*_course``)
    recipes     names, defaults, generation, stratified split, standardisation: :func:`make`
    preprocess  :func:`transform`: shift/scale and (re-)standardisation at load time (study S6)
    store       :func:`save`, :func:`load` (validated), :func:`generate_all`
    cli         ``python -m src.data {generate,show}``

Heavy imports (scikit-learn, matplotlib) happen inside functions, so ``import src.data`` and
``python -m src.data --help`` stay fast. The package imports only `src.plots` (the scatter) and `src.files`.
"""

from src.data.cli import main
from src.data.dataset import SCHEMA_VERSION, Dataset, DatasetError
from src.data.preprocess import transform
from src.data.recipes import COURSE_NAMES, NAMES, make
from src.data.store import generate_all, load, save

__all__ = ["NAMES", "COURSE_NAMES", "SCHEMA_VERSION", "Dataset", "DatasetError", "make", "save", "load",
           "transform", "generate_all", "main"]
