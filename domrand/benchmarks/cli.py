"""``domrand speed <target>`` (also ``domrand bench``): speed and memory benchmarks.

Each target lives in ``domrand/benchmarks/<target>.py`` with ``add_arguments(parser)`` and
``main(args) -> int``. Figures are medians over repeats after warm-up; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib

TARGETS = {
    "generator": "generation images/s and ms/batch per batch size, peak memory",
    "env": "env steps/s per env and visual domain",
    "wrapper": "env steps/s unwrapped, with the style wrapper and with the augmentation baseline",
    "randomizer": "randomizer frames/s and latency per batch, preset and ops backend",
    "vector": "VectorStyleRandomization steps/s over Sync/AsyncVectorEnv with 1, 2, 4 workers, time breakdown",
    "train": "generator training images/s (full StyleGAN2 + ADA step) per preset and batch size",
    "precision": "randomizer frames/s and output PSNR vs float32 per compute dtype (float32, bfloat16, float16)",
}


def report(text: str, out: str | None) -> None:
    """Print a benchmark's table and, with ``--out``, also write it to that file."""
    print(text, end="")
    if out:
        from domrand.utils import atomic_write_text

        atomic_write_text(out, text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")


def main(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"domrand.benchmarks.{args.target}")
    except ModuleNotFoundError as exc:
        if exc.name == f"domrand.benchmarks.{args.target}":
            print(f"domrand {getattr(args, 'command_name', 'bench')}: '{args.target}' is not available in this version yet")
            return 2
        raise
    from domrand.cli import _Parser  # one-line errors (exit code 2), as for every other command

    sub = _Parser(prog=f"domrand {getattr(args, 'command_name', 'bench')} {args.target}", description=TARGETS[args.target])
    module.add_arguments(sub)
    return int(module.main(sub.parse_args(args.rest)) or 0)
