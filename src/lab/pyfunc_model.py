"""nnlab's MLflow model: the trained net's NumPy forward pass behind MLflow's `pyfunc` interface.

MLflow "models from code": `mlflow.pyfunc.save_model(python_model=<this file>)` copies this file into every
logged model (src/lab/model_writer.py) and `mlflow.pyfunc.load_model` runs it. The net's own code (`src/nn`, pure
NumPy) travels with the model as `code/nnlab_nn`, so a model loads with NumPy and MLflow alone: no Hydra, no
nnlab checkout, no pickled nnlab classes. MLflow loads this file; nothing in the lab imports it.

A model's files: `artifacts/spec.json` (layer sizes, activation, batch norm, dtype, which replicas stayed finite)
and `artifacts/weights.npz` (`param/W1`, ..., `state/running_mean1`, ..., each with the leading replica axis).

`predict(X)` takes the features the net was trained on (rows = samples: the dataset's columns after the run's
`data.*` transform) and returns probabilities: P(y=1) of shape (m,) for a binary net, (m, classes) otherwise.
A run trains R replicas (seeds) of one config: by default the model averages the probabilities of the replicas
that did not diverge (a seed ensemble); `params={"replica": r}` returns replica r alone.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class NNLabModel(PythonModel):
    """Loads `spec.json` + `weights.npz` into an `MLP` and predicts probabilities."""

    def load_context(self, context: Any) -> None:
        try:  # inside a logged model: MLflow puts the model's code/ folder (a copy of src/nn) on sys.path
            from nnlab_nn import MLP
        except ImportError:  # in an nnlab checkout
            from src.nn import MLP

        with open(context.artifacts["spec"], encoding="utf-8") as f:
            spec = json.load(f)
        with np.load(context.artifacts["weights"]) as w:
            arrays = {k: w[k] for k in w.files}
        params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}
        self.net = MLP(sizes=spec["sizes"], activation=spec["activation"], replicas=len(spec["finite"]),
                       batchnorm=spec["batchnorm"], bn_eps=spec["bn_eps"], leaky_slope=spec["leaky_slope"],
                       dtype=np.dtype(spec["dtype"]).type, params=params)
        for k, v in arrays.items():
            if k.startswith("state/"):
                self.net.state[k.split("/", 1)[1]][...] = v
        self.finite = np.asarray(spec["finite"], dtype=bool)

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Probabilities of the replicas' mean (default) or of replica `params["replica"]`.

        `model_input: np.ndarray` on purpose: it is one of the hints MLflow accepts without deriving a schema
        from them (any other hint, or none, prints a warning on every save and load); the schema is the
        signature saved with the model, a float tensor of shape (-1, features)."""
        X = np.asarray(model_input, dtype=self.net.dtype)
        replica = int((params or {}).get("replica", -1))
        if replica >= self.net.replicas:
            raise ValueError(f"replica={replica}: the model has {self.net.replicas} replicas, "
                             f"valid: 0..{self.net.replicas - 1}, or -1 for their mean")
        proba = self.net.predict_proba(X)
        if replica >= 0:
            return proba[replica]
        keep = self.finite if self.finite.any() else np.ones_like(self.finite)
        return proba[keep].mean(axis=0)


set_model(NNLabModel())
