"""``domrand eval-inverter``: reconstruction PSNR/SSIM, geometry score and latency of an inverter
(``domrand.generator.inverter_eval.evaluate_inverter``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from domrand.commands import cli_args
from domrand.generator.inverter_eval import evaluate_inverter
from domrand.utils import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inverter", required=True, help="inverter run dir or E.safetensors")
    parser.add_argument("--generator", default=None, help="generator run dir or file (default: the one the inverter recorded)")
    parser.add_argument("--target-data", default=None, help="held-out target images for PSNR/SSIM (folder or .npy/.npz)")
    parser.add_argument("--target-frames", default=None, help="export-frames --masks folder of target frames: trains the segmenter")
    parser.add_argument("--target-eval-frames", default=None, help="held-out target frames with masks (default: 20%% of --target-frames)")
    parser.add_argument("--sim-frames", default=None, help="export-frames --masks folder of sim frames: reconstruction with per-class PSNR (object_psnr); with --target-frames also randomized for the geometry score")
    parser.add_argument("--n-gen", type=cli_args.positive_int, default=256, help="held-out generator samples for PSNR/SSIM")
    parser.add_argument("--max-images", type=cli_args.positive_int, default=512, help="use at most this many images per set")
    parser.add_argument("--refine-steps", type=cli_args.nonnegative_int, default=None, help="refinement steps (default: the inverter config's, else 20)")
    parser.add_argument("--refine-lr", type=cli_args.positive_float, default=0.02, help="refinement Adam step size")
    parser.add_argument("--psi", type=cli_args.finite_float, default=0.7, help="truncation of the resampled fine styles")
    parser.add_argument("--seg-steps", type=cli_args.positive_int, default=400, help="segmenter training steps")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--latency-repeats", type=cli_args.positive_int, default=10, help="timed repeats at batch 1 (batch 64: a third)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0)
    parser.add_argument("--batch", type=cli_args.positive_int, default=64, help="evaluation batch size")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def _print(results: dict[str, Any]) -> None:
    def walk(d: dict, indent: str = "") -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                print(f"{indent}{key}:")
                walk(value, indent + "  ")
            elif isinstance(value, float):
                print(f"{indent}{key}: {value:.4f}")
            else:
                print(f"{indent}{key}: {value}")

    walk(results)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    results = evaluate_inverter(
        args.inverter, args.generator, target_data=args.target_data, target_frames=args.target_frames,
        target_eval_frames=args.target_eval_frames, sim_frames=args.sim_frames, n_gen=args.n_gen,
        max_images=args.max_images, refine_steps=args.refine_steps, refine_lr=args.refine_lr, psi=args.psi,
        seg_steps=args.seg_steps, latency_repeats=None if args.no_latency else args.latency_repeats,
        device=args.device, seed=args.seed, batch=args.batch,
    )
    _print(results)
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return 0
