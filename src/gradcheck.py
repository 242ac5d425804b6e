"""`python -m src.gradcheck [overrides...]`: check backprop of any configured net against finite differences.

SPEC S7 (the course's "Gradient Checking"): the net that ``python -m src.train <overrides>`` would train is built
(same Hydra config, same builder, ``src.lab.build``) in float64, and on a small batch of the configured dataset
every parameter's gradient from ``loss_and_grads`` is compared with centred differences (``src.lab.gradcheck``:
ε = 1e-7, dropout masks drawn once and held fixed, batch norm in train mode, the L2 term included). The relative
error ``‖g − n‖₂ / (‖g‖₂ + ‖n‖₂)`` is printed per parameter; above ``--threshold`` (default 1e-7, the course's
bound) the exit code is 1.

    python -m src.gradcheck                                    # the default net (moons, [10,5] ReLU, He)
    python -m src.gradcheck data=digits model.batchnorm=true model.dropout=0.2 model.l2=0.1
    python -m src.studies s7_gradcheck --out results/s7_gradcheck   # study S7: the DVC stage's list of nets

Why the threshold may need raising for ReLU: a finite difference straddling the kink at 0 (a pre-activation within
ε of 0) sees a slope of 1/2 where backprop sees 0 or 1; on a real batch that is rare but not impossible, and it is
a property of the check, not a bug of backprop. Such a case shows one parameter with an error of ~1e-4..1e-2 while
the same net with tanh passes; re-run with another ``--seed`` (batch and masks) or ``--threshold 1e-5``. Very
small gradients (deep sigmoid nets) hit the rounding floor ``ulp(f)/ε`` of the difference itself: ``--eps 1e-6``.
"""

from __future__ import annotations

import argparse
import sys

from src import cli_args
from src.lab.gradcheck import THRESHOLD, GradcheckError, check_config, table


def main(argv: list[str] | None = None) -> int:
    """Check the configured net; exit 0 (pass), 1 (a parameter above --threshold) or 2 (bad config or data)."""
    ap = cli_args.Parser(
        prog="python -m src.gradcheck", description=__doc__.splitlines()[0],
        epilog="Any other argument is a Hydra override, as for `python -m src.train` (e.g. model=bn init=xavier).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_args.add_gradcheck_args(ap, THRESHOLD, "largest relative error that passes (default 1e-7; ReLU kinks may "
                                "need 1e-5, see above)")
    args, overrides = ap.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        ap.error(f"unknown option {bad[0]}")
    try:
        rows, desc = check_config(overrides, batch=args.batch, replicas=args.replicas, eps=args.eps,
                                  seed=args.seed)
    except GradcheckError as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr)
        return 2
    print(desc)
    print(table(rows, args.threshold))
    worst = max(r["rel_error"] for r in rows)
    n_bad = sum(r["rel_error"] > args.threshold for r in rows)
    if n_bad:
        print(f"FAIL: {n_bad} of {len(rows)} parameters above {args.threshold:g} (max {worst:.2e})")
        return 1
    print(f"PASS: all {len(rows)} parameters below {args.threshold:g} (max {worst:.2e})")
    return 0


if __name__ == "__main__":
    from src.shutdown import skip_final_collections

    skip_final_collections()
    sys.exit(main())
