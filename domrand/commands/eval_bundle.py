"""``domrand eval-bundle``: a bundle's geometry, oracle probe, SWD, diversity and sim reconstruction
(``domrand.bundle_eval.evaluate_bundle``)."""

from __future__ import annotations

import argparse
import json

import torch

from domrand.commands import cli_args
from domrand.bundle import load_bundle
from domrand.bundle_eval import evaluate_bundle, randomized_styles, save_sheet
from domrand.geometry import load_frames_with_masks
from domrand.utils import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder or file")
    parser.add_argument("--target-frames", required=True, help="export-frames --masks folder of target frames: trains the segmenter")
    parser.add_argument("--probe-frames", required=True, help="export-frames folder of target frames with labels: trains the cube localizer")
    parser.add_argument("--target-eval-frames", required=True, help="held-out target frames (export-frames --masks folder)")
    parser.add_argument("--sim-frames", required=True, help="sim frames to randomize and score (export-frames --masks folder)")
    parser.add_argument("--styles", type=cli_args.positive_int, default=4, help="style seeds per sim frame")
    parser.add_argument("--seg-steps", type=cli_args.positive_int, default=400, help="segmenter training steps")
    parser.add_argument("--probe-epochs", type=cli_args.positive_int, default=30, help="localizer training epochs")
    parser.add_argument("--max-images", type=cli_args.positive_int, default=None, help="use at most this many eval/sim frames")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0)
    parser.add_argument("--model", choices=("teacher", "student"), default="teacher",
                        help="randomize with the teacher (inverter + generator) or the bundle's distilled student")  # fmt: skip
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--sheet", default=None, help="write a PNG: sim frames and their randomizations")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.bundle, device="cpu")
    result = evaluate_bundle(bundle, args.target_frames, args.probe_frames, args.target_eval_frames, args.sim_frames,
                             styles=args.styles, seg_steps=args.seg_steps, probe_epochs=args.probe_epochs,
                             max_images=args.max_images, seed=args.seed, model=args.model)  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    if args.sheet:
        sim, _, _ = load_frames_with_masks(args.sim_frames, int(bundle.G.img_resolution), limit=8)
        save_sheet(args.sheet, sim, randomized_styles(bundle, sim, 6, args.seed, args.model))
    return 0
