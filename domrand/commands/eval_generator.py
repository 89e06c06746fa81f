"""``domrand eval-generator``: SWD (and optionally FID) of a trained generator against its data.

    domrand eval-generator --run runs/NAME [--data DIR] [--num-images N] [--best] [--inception PATH]

``--run`` takes a run directory (its ``G_ema.safetensors``, or ``G_ema_best.safetensors`` with
``--best``), a checkpoint directory or a generator file. The dataset defaults to the one recorded
in the run's newest checkpoint. FID is computed only with ``--inception PATH``, a local Inception
TorchScript file (e.g. the widely used ``inception-2015-12-05.pt``); nothing is downloaded. It is
fed float images in [0, 255], ``[N, 3, 299, 299]``, and called with ``return_features=True`` when
it accepts that keyword (otherwise plainly); its outputs are flattened to feature vectors.
Results print as one JSON object and are appended to the run's metrics.jsonl as ``"kind": "eval"``.

``--align OTHER`` measures instead whether the two generators draw the same layout for the same
latent (``domrand.metrics.layout_agreement``; issue 16): ``--num-images`` (default 256) shared ws
from the ``--run`` generator's mapping, both rendered with constant noise, structure maps (Sobel
magnitude of luminance) correlated for the same w (``same_w``) and for mismatched pairs
(``mismatched``), with their ``gap`` and ``ratio``. ``OTHER`` is a generator run, checkpoint dir,
bundle or file; a fine-tuning run keeps its start as ``RUN/G_init.safetensors``::

    domrand eval-generator --run runs/gtarget --align runs/gtarget/G_init.safetensors

No dataset is needed; the record is appended as ``"kind": "align"``.
"""

from __future__ import annotations

import argparse

from domrand.commands import cli_args
from domrand.generator.generator_eval import align_generators, evaluate_generator, record_result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, checkpoint directory or G_ema .safetensors file")
    parser.add_argument("--data", help="dataset (folder or .npz/.npy); default: the one recorded in the run")
    parser.add_argument("--num-images", type=cli_args.positive_int, help="generated and real images to compare (default: the run's swd_images, else 1024)")
    parser.add_argument("--best", action="store_true", help="evaluate G_ema_best.safetensors of a run directory")
    parser.add_argument("--psi", type=cli_args.finite_float, default=1.0, help="truncation psi of the generated images (default 1)")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="seed of latents, noise and SWD projections (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--batch", type=cli_args.positive_int, default=32, help="generation batch size (default 32)")
    parser.add_argument("--align", metavar="OTHER", help="measure layout agreement with another generator (run, checkpoint dir, bundle or file) instead of SWD")
    parser.add_argument("--inception", help="local Inception TorchScript file; enables FID (nothing is downloaded)")
    parser.add_argument("--cache-dir", help="dataset cache folder")
    parser.add_argument("--json", help="also write the result JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    common = dict(num_images=args.num_images, best=args.best, psi=args.psi, seed=args.seed, device=args.device, batch=args.batch)
    if args.align:
        if args.inception:
            raise ValueError("--align measures layout agreement only; run FID (--inception) separately")
        result, run_dir = align_generators(args.run, args.align, **common)
    else:
        result, run_dir = evaluate_generator(args.run, data=args.data, inception=args.inception, cache_dir=args.cache_dir,
                                             progress=not args.no_progress, **common)  # fmt: skip
    record_result(result, args.json, run_dir)
    return 0
