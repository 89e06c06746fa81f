"""``domrand generate``: images from a generator by seed (``--trunc``) and a style-mixing figure
(``domrand.generate.write_images``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from domrand.commands import cli_args
from domrand.generate import write_images


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-7,12 (non-negative integers), got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds like 0-7,12 (non-negative integers), got {text!r}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="bundle, generator run dir, checkpoint dir or G_ema file")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-15"), help="seeds, e.g. 0-7,12 (default 0-15)")
    parser.add_argument("--trunc", type=cli_args.finite_float, default=1.0, help="truncation psi (default 1: none)")
    parser.add_argument("--noise", choices=("const", "random"), default="const", help="noise inputs (default const)")
    parser.add_argument("--mix-rows", type=parse_seeds, default=None, help="style mixing: seeds giving the coarse styles")
    parser.add_argument("--mix-cols", type=parse_seeds, default=None, help="style mixing: seeds giving the fine styles")
    parser.add_argument("--mix-resolution", type=cli_args.power_of_two, default=16, help="coarse = styles up to this resolution (default 16)")
    parser.add_argument("--cols", type=cli_args.positive_int, default=8, help="images per row of grid.png (default 8)")
    parser.add_argument("--out", default="generated", help="output folder (default generated/)")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    wrote = write_images(args.generator, args.out, args.seeds, trunc=args.trunc, noise=args.noise, mix_rows=args.mix_rows,
                         mix_cols=args.mix_cols, mix_resolution=args.mix_resolution, cols=args.cols)  # fmt: skip
    print(f"wrote {wrote} to {Path(args.out)}")
    return 0
