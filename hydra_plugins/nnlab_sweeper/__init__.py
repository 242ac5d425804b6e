"""nnlab's Hydra plugins. Hydra instantiates sweepers only from the `hydra_plugins` namespace package, so the
class lives here by name; its logic is in `src/sweeper.py` and `src/vectorize.py`."""
