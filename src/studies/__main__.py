"""`python -m src.studies <study> [options]`: run a measured study (one without a Hydra grid).

    python -m src.studies s2_activations --out results/s2_activations
    python -m src.studies toys --out results/toys
    python -m src.studies s7_gradcheck --out results/s7_gradcheck
    python -m src.studies                      # the registered studies and how each is run

A grid study is run by Hydra: `python -m src.train -m experiment=<study>` (or its DVC stage `train@<study>`).
"""

from __future__ import annotations

import sys

from src.studies import all_studies


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    studies = all_studies()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nstudies:")
        for s in studies.values():
            how = (f"python -m src.train -m experiment={s.name}" if s.grid
                   else f"python -m src.studies {s.name} --out results/{s.name}")
            print(f"  {s.name:<15} {how:<66} {s.title}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in studies:
        print(f"nnlab: error: unknown study {name!r}; valid: {', '.join(studies)}", file=sys.stderr)
        return 2
    study = studies[name]
    if study.measure is None:
        print(f"nnlab: error: {name} is a Hydra grid: run `python -m src.train -m experiment={name}`",
              file=sys.stderr)
        return 2
    rc = study.measure(rest)
    if rc in (0, 1):  # 1: a measurement that ran and found a failure (a gradient check above its threshold)
        _log_to_mlflow(name, rest, rc)
    return rc


def _log_to_mlflow(name: str, argv: list[str], rc: int) -> None:
    """The measurement as one MLflow run of the study's experiment: its options as params, its numbers
    (summary.json) as metrics, its folder as artifacts. A tracking failure is reported, not fatal: the
    results on disk are what DVC and the report need."""
    import argparse
    import json
    from pathlib import Path

    from src.lab.tracking import log_folder_run, ui_hint
    from src.studies import description

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--out", type=Path, default=Path("results") / name)
    out = ap.parse_known_args(argv)[0].out
    numbers: dict = {}
    for file in ("summary.json", "metrics.json"):
        if (out / file).is_file():
            numbers = json.loads((out / file).read_text(encoding="utf-8"))
            break
    options = _options(argv)
    params = {"argv": " ".join(argv) or "(defaults)", **options}
    run_name = ",".join([name, *(f"{k}={v}" for k, v in options.items() if k != "out")])
    try:
        tracker, run_id = log_folder_run(name, run_name, out, params, numbers, ok=rc == 0,
                                         description=description(name))
    except Exception as exc:  # noqa: BLE001
        print(f"nnlab: error: the results are in {out}, but could not be logged to MLflow: {exc}", file=sys.stderr)
        return
    print(f"MLflow: run {run_id} in experiment {name!r}\n  to look: {ui_hint(tracker.uri, tracker.experiment_id)}",
          flush=True)


def _options(argv: list[str]) -> dict[str, str]:
    """`--seeds 5 --suite` -> {"seeds": "5", "suite": "true"} (the measured studies' options, as MLflow params)."""
    out: dict[str, str] = {}
    for i, a in enumerate(argv):
        if a.startswith("--"):
            key, sep, value = a[2:].partition("=")
            if not sep:
                nxt = argv[i + 1] if i + 1 < len(argv) else None
                value = nxt if nxt is not None and not nxt.startswith("--") else "true"
            out[key] = value
    return out


if __name__ == "__main__":
    from src.shutdown import skip_final_collections

    skip_final_collections()
    sys.exit(main())
