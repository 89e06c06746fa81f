"""``domrand collect``: frames from any Gymnasium env (pixels or ``render()``) to train a bundle for it
(``domrand.collect.collect``)."""

from __future__ import annotations

import argparse

from domrand.commands import cli_args
from domrand.collect import collect
from domrand.frames import FIT_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="any registered Gymnasium env id (e.g. CartPole-v1, domrand/Reach-v0)")
    parser.add_argument("--env-kwargs", type=cli_args.json_object, default=None, help="JSON object of gym.make keyword arguments")
    parser.add_argument("--policy", default="random", help="random | expert (domrand envs) | MODULE:FUNCTION called as FUNCTION(env, obs)")
    parser.add_argument("--n", type=cli_args.positive_int, required=True, help="number of frames to write")
    parser.add_argument("--out", required=True, help="output folder (frames/, index.csv, manifest.json)")
    parser.add_argument("--size", type=cli_args.positive_int, default=64, help="side of the square frames written (default 64)")
    parser.add_argument("--fit", choices=FIT_MODES, default="pad", help="non-square frames: pad (keep aspect, default), crop or stretch")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="seed of the first reset and of the action space")
    parser.add_argument("--every", type=cli_args.positive_int, default=1, help="keep every k-th step's frame")
    parser.add_argument("--obs-key", default=None, help="the image entry of a Dict observation")
    parser.add_argument("--source", choices=("auto", "obs", "render"), default="auto", help="frames from the observation or env.render()")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that holds a collection")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    m = collect(args.env, args.n, args.out, env_kwargs=args.env_kwargs, policy=args.policy, size=args.size, fit=args.fit,
                seed=args.seed, every=args.every, obs_key=args.obs_key, source=args.source,
                progress=not args.no_progress, overwrite=args.overwrite)  # fmt: skip
    print(f"wrote {m['n']} frames ({m['episodes']} episodes, from {m['source']}, {m['original_size']} -> {m['size']}x{m['size']}, "
          f"fit {m['fit']}) to {args.out}")  # fmt: skip
    return 0
