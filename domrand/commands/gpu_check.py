"""``domrand gpu-check``: the prepared GPU check in one run and one output folder
(``domrand.gpu_check.run_gpu_check``; ``scripts/gpu_check.sh`` builds PyCUDA first, then runs it)."""

from __future__ import annotations

import argparse

from domrand.commands import cli_args
from domrand.gpu_check import run_gpu_check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (made if missing): report.json and the packed artifacts")
    parser.add_argument("--work", default=None, help="working folder for runs and logs (default: OUT/work)")
    parser.add_argument("--dry", action="store_true", help="CPU, toy sizes: checks the script itself")
    parser.add_argument("--minutes", type=cli_args.positive_float, default=9.0, help="wall-clock budget for all steps (default 9)")
    parser.add_argument("--target-data", default=None, help="target-domain frames for the training step (folder, .npy, .npz, .npy.xz)")
    parser.add_argument("--sim-data", default=None, help="sim frames for the inverter and the precision step (same forms)")
    parser.add_argument("--batch", type=cli_args.positive_int, default=64, help="generator batch on the GPU (default 64)")
    parser.add_argument("--inverter-batch-scale", type=cli_args.positive_int, default=4, help="inverter batches x this on the GPU (default 4)")
    parser.add_argument("--skip", default="", help="steps to skip, comma-separated")


def main(args: argparse.Namespace) -> int:
    return run_gpu_check(args.out, args.work, dry=args.dry, minutes=args.minutes, target_data=args.target_data,
                         sim_data=args.sim_data, batch=args.batch, inverter_batch_scale=args.inverter_batch_scale,
                         skip=tuple(args.skip.split(",")))  # fmt: skip
