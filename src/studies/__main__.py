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
    return study.measure(rest)


if __name__ == "__main__":
    sys.exit(main())
