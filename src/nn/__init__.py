"""The maths of nnlab: pure NumPy layers, losses, initializers, an R-replica MLP, gradient checks, diagnostics.

Nothing here imports Hydra, MLflow, DVC or matplotlib; the lab's glue (``src/*.py``) imports this package, never
the other way round. See README.md in this folder for what each piece is and where it comes from.
"""

from . import clipping, diagnostics, gradcheck, initializers, layers, losses, optimizers, schedules
from .mlp import MLP

__all__ = [
    "MLP",
    "clipping",
    "diagnostics",
    "gradcheck",
    "initializers",
    "layers",
    "losses",
    "optimizers",
    "schedules",
]
