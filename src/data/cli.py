"""``python -m src.data {generate,show}``: make and save the datasets, or print a saved dataset's card."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from src import cli_args
from src.data.dataset import DatasetError
from src.data.recipes import NAMES
from src.data.store import generate_all, load


def _parser() -> argparse.ArgumentParser:
    p = cli_args.Parser(prog="python -m src.data", description="Generate, save and inspect nnlab's datasets.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{generate,show}")
    g = sub.add_parser("generate", help="make and save datasets (npz + json card + png)")
    g.add_argument("--out", type=cli_args.output_dir, default="data", help="output directory (default: data)")
    g.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", default=None,
                   help=f"subset of datasets (default: all): {', '.join(NAMES)}")
    g.add_argument("--seed", type=cli_args.seed, default=0,
                   help="generation/split seed (default 0; course variants ignore it)")
    s = sub.add_parser("show", help="print a saved dataset's card")
    s.add_argument("name", choices=NAMES, metavar="NAME", help=f"one of: {', '.join(NAMES)}")
    s.add_argument("--data-dir", default="data", help="directory holding the files (default: data)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m src.data``; returns the exit code (1 on a dataset error, 2 on bad usage)."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "generate":
            generate_all(args.out, args.only or NAMES, args.seed, echo=print)
        else:
            print(json.dumps(load(args.name, args.data_dir).card, indent=2, sort_keys=True))
    except DatasetError as exc:
        print(f"python -m src.data: error: {exc}", file=sys.stderr)
        return 1
    return 0
