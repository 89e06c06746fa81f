"""``domrand demo``: run an env with its scripted expert, randomize its frames with a bundle (the
bundled model by default) and write ``grid.png`` and ``episode.gif`` (``domrand.demo.run_demo``)."""

from __future__ import annotations

import argparse

from domrand.commands import cli_args
from domrand.demo import run_demo


def _steps(text: str) -> int:
    value = cli_args.positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", type=cli_args.env_id, default="domrand/Reach-v0", help="a domrand env id (default: domrand/Reach-v0)")
    parser.add_argument("--out", default="demo", help="output folder (default: demo/)")
    parser.add_argument("--steps", type=_steps, default=40, help="episode length to record (default: 40)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch CPU threads for this process (default 1: on a shared 2-core machine more threads ran 3-11x slower; raise it on idle cores)")
    parser.add_argument("--bundle", default=None, help="bundle folder or file (default: the bundled model)")
    parser.add_argument("--styles", type=cli_args.positive_int, default=4, help="randomizations per frame in the grid (default: 4)")
    parser.add_argument("--columns", type=cli_args.positive_int, default=5, help="frames of the episode shown in the grid (default: 5)")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="env and style seed (default: 0)")


def main(args: argparse.Namespace) -> int:
    run_demo(args.env, args.out, steps=args.steps, device=args.device, threads=args.threads, bundle=args.bundle,
             styles=args.styles, columns=args.columns, seed=args.seed)  # fmt: skip
    return 0
