"""``domrand randomize``: randomize your own frames (a folder of images or one image) with a bundle.

Each input image (any size; PNG, JPEG, BMP, ...) is randomized ``--n`` times with ``--n`` different
styles and written as ``OUT/<name>_<k>.png`` at the input's size (with ``--recursive``, images in
subfolders too, written under the same relative subfolders). Existing outputs are never replaced
unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from domrand.bundle import default_bundle_path
from domrand.commands import cli_args
from domrand.randomizer import StyleRandomizer
from domrand.randomizer_options import MODELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="output folder for the randomized PNGs")
    parser.add_argument("--bundle", default=None, help="bundle folder or file (default: the one packaged with domrand)")
    parser.add_argument("--n", type=cli_args.positive_int, default=4, help="randomizations per input image (default 4)")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="style seed (default 0)")
    parser.add_argument("--psi", type=cli_args.finite_float, default=None, help="truncation of sampled fine styles")
    parser.add_argument("--mix", type=cli_args.unit_float, default=None, help="0 = frame styles, 1 = sampled styles")
    parser.add_argument("--keep-resolution", type=cli_args.power_of_two, default=None, help="resolution up to which the frame is kept")
    parser.add_argument("--refine-steps", type=cli_args.nonnegative_int, default=None, help="optimization steps refining the inversion")
    parser.add_argument("--preset", type=cli_args.preset("randomizer"), default=None,
                        help="randomizer preset: a name in configs/randomizer (default, student, reconstruct, wide) or a YAML path; "
                             "the options below override it")
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="teacher: the bundle's inverter + generator (the default); student: its distilled student (fast; "
                             "constant noise, mix 1, so --mix/--keep-resolution/--refine-steps do not apply)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch CPU threads for this process (default 1: on a shared 2-core machine more threads ran 3-11x slower; raise it on idle cores)")
    parser.add_argument("--recursive", action="store_true", help="also randomize images in subfolders of --input")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--traceback", action="store_true", help="show a full traceback on errors")


def _inputs(path: Path, recursive: bool = False) -> list[Path]:
    """The images to randomize: ``path`` itself, or the images in folder ``path`` (and below it)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            where = "in folder or subfolders of" if recursive else "in folder"
            raise FileNotFoundError(f"--input: no images ({', '.join(IMAGE_SUFFIXES)}) {where} {path}")
        return files
    raise FileNotFoundError(f"--input: {path} does not exist")


def _outputs(files: list[Path], root: Path, out: Path, n: int) -> list[list[Path]]:
    """Per input, its ``n`` output paths ``OUT/<relative folder>/<stem>_<k>.png``."""
    base = root if root.is_dir() else root.parent
    return [[out / f.parent.relative_to(base) / f"{f.stem}_{k}.png" for k in range(n)] for f in files]


def main(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    import torch

    torch.set_num_threads(args.threads)
    files = _inputs(Path(args.input), args.recursive)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; accepted: a folder for the randomized PNGs (created when missing)")
    bundle = args.bundle if args.bundle is not None else default_bundle_path()
    targets = _outputs(files, Path(args.input), out, args.n)
    existing = [p for paths in targets for p in paths if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"--out: {len(existing)} output file(s) exist already (e.g. {existing[0]}); "
                         "pass --overwrite to replace them, or choose another --out")
    options = {
        k: v
        for k, v in (
            ("psi", args.psi),
            ("mix", args.mix),
            ("keep_resolution", args.keep_resolution),
            ("refine_steps", args.refine_steps),
        )
        if v is not None
    }
    if args.model is not None:
        options["model"] = args.model
    if args.model == "student":
        ignored = [f"--{k.replace('_', '-')}" for k in options if k not in ("psi", "model")]
        if ignored:
            raise ValueError(f"--model student renders with constant noise and mix 1 at the bundle's keep resolution; "
                             f"{', '.join(ignored)} only apply to --model teacher")
    randomizer = StyleRandomizer.from_bundle(bundle, device=args.device, preset=args.preset, seed=args.seed, **options)
    from tqdm import tqdm

    written = 0
    for f_idx, (path, paths) in enumerate(tqdm(list(zip(files, targets)), desc="randomize", unit="image",
                                                disable=args.no_progress or len(files) < 2)):
        try:
            frame = np.asarray(Image.open(path).convert("RGB"))
        except OSError as exc:
            raise ValueError(f"--input: cannot read image {path}: {exc}") from None
        ids = list(range(args.n))
        randomizer.resample(ids, seed=[args.seed * 1_000_003 + f_idx * args.n + k for k in ids], immediate=True)
        frames = np.repeat(frame[None], args.n, axis=0)
        for img, target in zip(randomizer.randomize(frames, ids), paths):
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(target)
            written += 1
    print(f"wrote {written} randomized frames ({len(files)} inputs x {args.n}) to {out}")
    return 0
