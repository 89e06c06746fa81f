"""``domrand export-frames``: write frames (+ labels, masks) from a domrand env
(``domrand.envs.export.export_frames``)."""

from __future__ import annotations

import argparse

from domrand.envs.export import POLICIES, export_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="domrand/Reach-v0", help="env id (domrand/Reach-v0, Push-v0, Localize-v0)")
    parser.add_argument(
        "--visual-domain",
        default="sim",
        help="sim, target or randomized; a target preset name (e.g. target-lab) means target with that preset",
    )
    parser.add_argument(
        "--target-preset",
        default="target-a",
        help="target-a, target-b, target-c, target-lab (a new look per episode; its test half: target-lab-test) or seed:N",
    )
    parser.add_argument("--n", type=int, default=1000, help="number of frames to write")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--policy", default="random", choices=POLICIES, help="who acts between frames")
    parser.add_argument("--masks", action="store_true", help="also write segmentation mask PNGs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first reset and of the random policy")
    parser.add_argument("--image-size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--renderer", default="auto", choices=("auto", "tiny", "egl"))
    parser.add_argument("--randomize-every", type=int, default=None, help="randomized domain: redraw every k steps")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a folder with a labels.csv")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    path = export_frames(
        args.env,
        args.out,
        args.n,
        visual_domain=args.visual_domain,
        target_preset=args.target_preset,
        policy=args.policy,
        masks=args.masks,
        seed=args.seed,
        image_size=args.image_size,
        renderer=args.renderer,
        randomize_every=args.randomize_every,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"wrote {args.n} frames and {path}")
    return 0
