"""`hydra/sweeper=vectorized` (conf/hydra/sweeper/vectorized.yaml): see src/lab/sweeper.py."""

from src.lab.sweeper import VectorizedSweeper as _Base


class VectorizedSweeper(_Base):
    """Hydra's basic sweeper, with configs that differ only in per-replica numbers packed into one job."""
