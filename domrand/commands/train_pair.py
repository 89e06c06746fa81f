"""``domrand train-pair``: train the domain-conditional pair (generator + inverter) on sim frames and target photos.

Example (frames and masks from ``domrand export-frames --masks``)::

    domrand train-pair --config small64 --out runs/pair \\
        --sim-data data/sim/frames --sim-masks auto --target-data data/target/frames --kimg 30
    domrand train-pair --out runs/pair --resume --kimg 40
    domrand bundle --generator runs/pair --inverter runs/pair --out my_bundle

The layout of every randomized frame comes from its sim frame by construction (coarse ws and
spatial latent from the inverter, reconstructed in-domain); only the fine ws are drawn for the
target domain. See ``domrand.generator.train.pair``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from domrand.commands import cli_args
from domrand.config import dump_yaml
from domrand.generator.train.pair import PairConfig, train_pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="pair preset name (tiny, small64) or YAML path; a resume uses the run's")
    parser.add_argument("--out", required=True, help="run directory (runs/NAME)")
    parser.add_argument("--sim-data", default=None, help="simulator frames: folder or .npy/.npz")
    parser.add_argument("--sim-masks", default=None, metavar="DIR|FILE|auto",
                        help="class-id masks of the sim frames (weights of the reconstruction loss: training.class_weights); "
                             "'auto' = the masks/ folder beside the frames/ folder of export-frames --masks")  # fmt: skip
    parser.add_argument("--target-data", default=None, help="target-domain photos: folder or .npy/.npz")
    parser.add_argument("--init", default=None, metavar="BUNDLE",
                        help="start G and E from this bundle (fine-tuning; D starts fresh); network shapes come from it")
    parser.add_argument("--target-limit", type=cli_args.positive_int, default=None, metavar="N",
                        help="train on N of the target photos only, a random subset drawn with --seed (few-shot)")
    parser.add_argument("--kimg", type=cli_args.positive_float, default=None, help="train until this many thousand sim frames (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue the newest intact checkpoint in --out exactly")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="initialization and data RNG seed")
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--max-minutes", type=cli_args.positive_float, default=None, help="stop (with a checkpoint) after this wall time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. training.style_weight=2")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per log step instead)")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    config = cli_args.run_config(args, PairConfig, "pair", "small64")
    if args.dry_run:
        print(dump_yaml(config) if config is not None else "(the run's stored config)")
        return 0
    command = "domrand train-pair " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    last = train_pair(config, args.out, sim_data=args.sim_data, target_data=args.target_data, sim_masks=args.sim_masks,
                      kimg=args.kimg, resume=args.resume, seed=args.seed, progress=not args.no_progress,
                      max_seconds=None if args.max_minutes is None else args.max_minutes * 60, command=command,
                      init=args.init, target_limit=args.target_limit)  # fmt: skip
    if last:
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    return 0
