"""The files of a run's MLflow model, written cheaply: MLflow's `save_model` once, then three small files per run.

Why not `mlflow.pyfunc.log_model` per run: it infers and validates the signature, serialises the input example,
resolves the environment, loads the model back to check the example and copies every file: ~1.9 s the first
time in a process and ~0.34 s per run after that (measured on this 2-core machine, SQLite store), more than
training one config of a grid. Everything but the weights is the same for every net that shares a dataset, so
:class:`ModelWriter` calls `mlflow.pyfunc.save_model` once per (features, outputs, dtype, input example) in a
process and keeps that folder as a template; a run then only adds `MLmodel` (the template's text with the run's
ids filled in), `artifacts/spec.json` and `artifacts/weights.npz`. The result is byte-for-byte the layout
`save_model` writes, and `mlflow.pyfunc.load_model` / `mlflow models predict` load it like any other model
(tests/test_mlflow_tracking.py).

The templates also persist across processes (:func:`cache_root`; `NNLAB_CACHE_DIR`, empty to turn it off), keyed by
everything they hold: the net's shape, dtype and input example, the versions of what writes them, and the bytes of
`src/nn` and the pyfunc wrapper. Why: `save_model` costs ~1.2 s on this box, and every `python -m src.train`
process paid it for its first run (every DVC stage, every joblib worker, most end-to-end tests).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

NN_SOURCE = Path(__file__).resolve().parents[1] / "nn"  # src/nn: copied into every model as code/nnlab_nn
MODEL_CODE = Path(__file__).resolve().with_name("pyfunc_model.py")
_FIELDS = ("run_id", "model_id", "model_uuid", "artifact_path", "utc_time_created", "model_size_bytes")
CACHE_ENV = "NNLAB_CACHE_DIR"
_TEXT = "MLmodel.template"  # beside the template folder (whose files are uploaded as they are), not in it


def cache_root() -> Path | None:
    """Where model templates persist across processes: `$NNLAB_CACHE_DIR/model-templates`, else the user's cache
    folder (platformdirs); None (in-process templates only) if `NNLAB_CACHE_DIR` is set empty."""
    configured = os.environ.get(CACHE_ENV)
    if configured == "":
        return None
    if configured is None:
        import platformdirs

        configured = platformdirs.user_cache_dir("nnlab")
    return Path(configured) / "model-templates"


def _code_digest() -> str:
    """What a template holds besides its key: the versions that write it (Python's, MLflow's, NumPy's, and pip's,
    setuptools' and wheel's, which `python_env.yaml` pins), the code copied into it, and this module (which decides
    its layout)."""
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    versions = [sys.version, *(version(d) for d in ("mlflow", "numpy", "pip", "setuptools", "wheel"))]
    h = hashlib.sha256("|".join(versions).encode())
    for path in [Path(__file__).resolve(), MODEL_CODE, *sorted(NN_SOURCE.rglob("*.py"))]:
        h.update(str(path.relative_to(NN_SOURCE.parent)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def spec_of(net: Any, finite: np.ndarray) -> dict[str, Any]:
    """What `pyfunc_model.NNLabModel` needs to rebuild the net around its weights."""
    return {"sizes": [int(s) for s in net.sizes], "activation": net.activation, "batchnorm": bool(net.batchnorm),
            "bn_eps": float(net.bn_eps), "leaky_slope": float(net.leaky_slope), "dtype": np.dtype(net.dtype).str,
            "finite": [bool(f) for f in np.asarray(finite).ravel()]}


class ModelWriter:
    """Per process: model templates by (features, outputs, dtype, input example), and the per-run files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nnlab-models-"))
        atexit.register(shutil.rmtree, self.root, True)
        self._templates: dict[tuple[Any, ...], tuple[Path, str]] = {}

    def _template(self, net: Any, example: np.ndarray) -> tuple[Path, str]:
        dtype = np.dtype(net.dtype)
        example = np.ascontiguousarray(example, dtype=dtype)
        key = (int(net.sizes[0]), int(net.sizes[-1]), dtype.str, example.shape, example.tobytes())
        if key not in self._templates:
            self._templates[key] = self._cached_template(int(net.sizes[0]), int(net.sizes[-1]), dtype, example)
        return self._templates[key]

    def _cached_template(self, n_in: int, n_out: int, dtype: np.dtype, example: np.ndarray) -> tuple[Path, str]:
        """The template from the cross-process cache, made (and published by an atomic rename) if missing. A cache
        that cannot be written (read-only home, full disk) only costs the speed: the template is made here."""
        root = cache_root()
        if root is None:
            return self._save_template(n_in, n_out, dtype, example)
        h = hashlib.sha256(f"{n_in}|{n_out}|{dtype.str}|{example.shape}|{_code_digest()}".encode())
        h.update(example.tobytes())
        entry = root / h.hexdigest()[:32]
        if (entry / _TEXT).is_file() and (entry / "model").is_dir():
            return entry / "model", (entry / _TEXT).read_text()
        template, text = self._save_template(n_in, n_out, dtype, example)
        staging = root / f".new-{uuid.uuid4().hex}"
        try:
            staging.mkdir(parents=True)
            shutil.copytree(template, staging / "model")
            (staging / _TEXT).write_text(text)  # last: an entry with its text is complete
            os.rename(staging, entry)  # atomic; fails if another process published the same entry first
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return template, text

    def _save_template(self, n_in: int, n_out: int, dtype: np.dtype, example: np.ndarray) -> tuple[Path, str]:
        import mlflow.pyfunc
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

        code = self.root / "code" / "nnlab_nn"
        if not code.exists():
            shutil.copytree(NN_SOURCE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.md"))
        n = len(self._templates)
        stub = self.root / f"stub{n}"
        stub.mkdir()
        (stub / "spec.json").write_text("{}")
        np.savez(stub / "weights.npz")
        signature = ModelSignature(
            inputs=Schema([TensorSpec(dtype, (-1, n_in))]),
            outputs=Schema([TensorSpec(dtype, (-1,) if n_out == 1 else (-1, n_out))]),
            params=ParamSchema([ParamSpec("replica", "long", -1)]))
        template = self.root / f"template{n}"
        quiet = logging.getLogger("mlflow")  # "Validating input example against model signature", once per process
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            mlflow.pyfunc.save_model(str(template), python_model=str(MODEL_CODE), code_paths=[str(code)],
                                     artifacts={"spec": str(stub / "spec.json"), "weights": str(stub / "weights.npz")},
                                     signature=signature, input_example=example,
                                     pip_requirements=[f"numpy=={np.__version__}"])
        finally:
            quiet.setLevel(level)
        model = Model.load(str(template / "MLmodel"))
        for name in _FIELDS:
            setattr(model, name, f"@@{name}@@")
        text = model.to_yaml()
        for p in (template / "MLmodel", template / "artifacts" / "spec.json", template / "artifacts" / "weights.npz"):
            p.unlink()
        size = sum(p.stat().st_size for p in template.rglob("*") if p.is_file())
        return template, text.replace("'@@model_size_bytes@@'", f"{size} + @@own_bytes@@")

    @contextmanager
    def files(self, net: Any, finite: np.ndarray, example: np.ndarray, run_id: str, model_id: str,
              artifact_path: str) -> Iterator[tuple[Path, Path]]:
        """(shared template folder, this run's folder with MLmodel + spec + weights): upload both, in that order."""
        template, text = self._template(net, example)
        own = self.root / f"run-{uuid.uuid4().hex}"
        (own / "artifacts").mkdir(parents=True)
        try:
            (own / "artifacts" / "spec.json").write_text(json.dumps(spec_of(net, finite)))
            np.savez(own / "artifacts" / "weights.npz", **{f"param/{k}": np.asarray(v) for k, v in net.params.items()},
                     **{f"state/{k}": np.asarray(v) for k, v in net.state.items()})
            values = {"run_id": run_id, "model_id": model_id, "model_uuid": model_id, "artifact_path": artifact_path,
                      "utc_time_created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")}
            for name, value in values.items():
                text = text.replace(f"@@{name}@@", value)
            shared, rest = text.split(" + @@own_bytes@@", 1)
            head, _, base = shared.rpartition(" ")
            own_bytes = sum(p.stat().st_size for p in own.rglob("*") if p.is_file())
            text = f"{head} {int(base) + own_bytes + len(text)}{rest}"  # ~ MLmodel's own size included
            (own / "MLmodel").write_text(text)
            yield template, own
        finally:
            shutil.rmtree(own, ignore_errors=True)
