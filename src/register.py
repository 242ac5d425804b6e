"""`python -m src.register <study>`: put a study's best run (chosen on validation) in the MLflow model registry.

    python -m src.register s3_optim                 # registered model nnlab-s3_optim, new version, alias @best
    python -m src.register s3_optim --metric val_acc --name moons-classifier --alias champion

Then, anywhere the store is reachable: `mlflow.pyfunc.load_model("models:/nnlab-s3_optim@best").predict(X)`, or
`mlflow models serve -m models:/nnlab-s3_optim@best --env-manager local`. The registered model's description is
the study's claim; the version's tags say which config it is and its validation and test accuracy.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.register", description=__doc__.splitlines()[0])
    ap.add_argument("study", help="the study (its MLflow experiment), e.g. s3_optim")
    ap.add_argument("--experiment", help="another MLflow experiment to pick from (default: the study's)")
    ap.add_argument("--name", help="registered model name (default: nnlab-<study>)")
    ap.add_argument("--metric", default="val_acc", help="higher is better; chosen on validation by default")
    ap.add_argument("--alias", default="best", help="alias set on the new version (default: best)")
    ap.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db")
    args = ap.parse_args(argv)

    from src.lab.tracking import TrackingError, register_best, resolve_uri
    from src.studies import description

    uri = resolve_uri(args.tracking_uri)
    name = args.name or f"nnlab-{args.study}"
    try:
        version, run = register_best(uri, args.experiment or args.study, name, metric=args.metric,
                                     alias=args.alias, description=description(args.study))
    except TrackingError as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 2
    m = run.data.metrics
    print(f"registered {name} version {version.version} (alias @{args.alias}): run {run.info.run_id} "
          f"{run.info.run_name!r}, {args.metric} {m.get(args.metric, float('nan')):.4g}, "
          f"test_acc {m.get('test_acc', float('nan')):.4g}\n"
          f"  load it: mlflow.pyfunc.load_model('models:/{name}@{args.alias}')", flush=True)
    return 0


if __name__ == "__main__":
    from src.shutdown import skip_final_collections

    skip_final_collections()
    sys.exit(main())
