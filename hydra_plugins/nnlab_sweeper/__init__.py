"""nnlab's Hydra plugins. Hydra instantiates sweepers only from the `hydra_plugins` namespace package, so the
class lives here by name; its logic is in `src/lab/sweeper.py` and `src/lab/packing.py`."""
