"""``domrand train-generator``: train a StyleGAN2 generator on a folder of images.

    domrand train-generator --data DIR --config configs/generator/<preset>.yaml --out runs/NAME \
        [--kimg N] [--batch B] [--resume] [--device auto|cpu|cuda] [--seed S] [--dry-run] [--progressive]
        [--init RUN|BUNDLE|FILE] [--set KEY=VALUE ...]

Fine-tuning (issue 16): ``--init SOURCE`` starts a new run from a trained generator's weights (a
generator run directory, a checkpoint directory, a bundle folder or file, or a ``.safetensors``
generator file; see ``domrand.generator.train.finetune``). G and G_ema start from the source's G_ema
(``training.init_from_ema``), D from the source's D when one lies beside it (else from scratch, and
it says so). Without ``--config`` the source's own run config (or the default preset's training
section with the source's network) is used; a config whose network is another architecture is an
error. The run records the source and its weights hash (``training.init``, ``training.init_hash``)
and keeps a copy of the start generator (``G_init.safetensors``); ``--resume`` continues the
run's own weights. Options that keep the fine-tuned generator aligned with its start (same w ->
same layout), set with ``--set training.KEY=VALUE``: ``mapping_lr_mult`` (default 0 when
fine-tuning: frozen mapping), ``freeze_d`` (FreezeD, default 1: the first, highest-resolution
discriminator block frozen), ``init_feature_weight`` (default 0: the MSE between G's coarse
features, blocks up to ``keep_resolution`` = 16, and the start's for the same ws and noise)::

    domrand train-generator --init runs/gsim --data data/target/frames --out runs/gtarget --kimg 50 \
        --set training.init_feature_weight=1
    domrand eval-generator --run runs/gtarget --align runs/gtarget/G_init.safetensors

The run directory layout is described in ``domrand.generator.train.runs``. Data-parallel on K GPUs (or
K CPU processes with gloo), one node or several, through PyTorch's launcher (docs/scaling.md):

    torchrun --nproc_per_node=K -m domrand train-generator --data DIR --config base128 --out runs/NAME --batch 64
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from domrand import distributed
from domrand.commands import cli_args
from domrand.config import parse_overrides
from domrand.generator.train import runs, stylegan as train
from domrand.utils import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="training images: a folder of PNG/JPEG files or a .npz/.npy array (optional with --resume)")
    parser.add_argument(
        "--config",
        help=f"generator preset: a bundled name (tiny, small64, base64, base128) or a YAML path; default {train.DEFAULT_PRESET} "
        "(with --resume: the run's own config.yaml)",
    )
    parser.add_argument("--out", required=True, help="run directory, e.g. runs/NAME (must be new or empty unless --resume)")
    parser.add_argument("--kimg", type=cli_args.positive_float, help="total training length in thousands of real images (overrides the preset)")
    parser.add_argument("--batch", type=cli_args.positive_int, help="global batch size (overrides the preset)")
    parser.add_argument("--resume", action="store_true", help="continue the newest intact checkpoint in --out")
    parser.add_argument(
        "--init",
        help="fine-tune: start from a trained generator (run dir, checkpoint dir, bundle, or .safetensors file); "
        "without --config the start's own config is used",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value (YAML), e.g. training.freeze_d=2 or training.init_feature_weight=1",
    )  # fmt: skip
    parser.add_argument("--mirror", type=int, choices=(0, 1), default=None, help="shortcut: dataset x-flips on/off (training.xflip)")
    parser.add_argument("--gamma", type=cli_args.nonnegative_float, default=None, help="shortcut: R1 weight (training.r1_gamma)")
    parser.add_argument("--aug", choices=("ada", "noaug"), default=None, help="shortcut: adaptive augmentation on/off (training.ada)")
    parser.add_argument("--allow-changes", action="store_true", help="with --resume: accept a dataset other than the run's")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and a dataset summary, then exit")
    parser.add_argument("--progressive", action="store_true", help="progressive-growing curriculum (training.progressive)")
    parser.add_argument("--cache-dir", help="dataset cache folder (default $DOMRAND_CACHE_DIR or ~/.cache/domrand/datasets)")
    parser.add_argument("--threads", type=cli_args.positive_int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")
    # Under torchrun (WORLD_SIZE > 1) the job is data-parallel: see docs/scaling.md.


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` items plus the NVlabs-style shortcuts ``--mirror``, ``--gamma``, ``--aug`` (which win)."""
    out = parse_overrides(args.set)
    if getattr(args, "mirror", None) is not None:
        out["training.xflip"] = bool(args.mirror)
    if getattr(args, "gamma", None) is not None:
        out["training.r1_gamma"] = float(args.gamma)
    if getattr(args, "aug", None) is not None:
        out["training.ada"] = args.aug == "ada"
    return out


def _command_line(args: argparse.Namespace) -> str:
    argv = sys.argv
    if len(argv) > 1 and "train-generator" in argv:
        return " ".join(shlex.quote(a) for a in ["domrand"] + argv[argv.index("train-generator") :])
    parts = ["domrand", "train-generator"]
    for key in ("data", "config", "init", "out", "kimg", "batch", "device", "seed", "cache_dir", "threads", "mirror", "gamma", "aug"):
        value = getattr(args, key)
        if value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    for pair in args.set:
        parts += ["--set", pair]
    for key in ("resume", "dry_run", "progressive", "no_progress"):
        if getattr(args, key):
            parts.append(f"--{key.replace('_', '-')}")
    return " ".join(shlex.quote(p) for p in parts)


def _train(args: argparse.Namespace, progressive: bool | None, **kwargs: Any):
    """``train.train`` with the options of this command line (plus device, command, ranks)."""
    return train.train(
        args.config if (args.config or args.resume or args.init) else train.DEFAULT_PRESET,
        args.data,
        Path(args.out),
        kimg=args.kimg,
        batch=args.batch,
        progressive=progressive,
        resume=args.resume,
        seed=args.seed,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
        allow_changes=args.allow_changes,
        init=args.init,
        overrides=_overrides(args),
        **kwargs,
    )


def _main_distributed(args: argparse.Namespace, progressive: bool | None) -> int:
    """One rank of a torchrun job: join the process group, train, leave the group."""
    ctx = distributed.init(args.device)
    try:
        result = _train(
            args,
            progressive,
            device=ctx.device,
            command=_command_line(args) + f"  # torchrun, {ctx.world_size} ranks ({ctx.backend})",
            rank=ctx.rank,
            world_size=ctx.world_size,
            reduce=ctx.reduce,
        )
        ctx.barrier()
    finally:
        ctx.shutdown()
    if ctx.is_main:
        last = f", SWD {result.swd[-1][1]:.1f}" if result.swd else ""
        print(
            f"trained to kimg {result.kimg:.3f} (step {result.step}) on {ctx.world_size} ranks at "
            f"{result.img_per_s:.1f} img/s{last}; generator: {Path(args.out) / runs.G_EMA}"
        )
    return 0


def main(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    progressive = True if args.progressive else None
    if distributed.launched():
        if not args.dry_run:
            return _main_distributed(args, progressive)
        if int(os.environ.get("RANK", "0")) != 0:  # --dry-run under torchrun: rank 0 prints
            return 0
    resume_from = train.prepare_run_dir(out, args.resume, log=train._info if args.dry_run else None)
    if not args.dry_run:
        resolve_device(args.device)  # fail early on a missing GPU

    if not args.dry_run:
        result = _train(args, progressive, device=args.device, command=_command_line(args))
        last = f", SWD {result.swd[-1][1]:.1f}" if result.swd else ""
        print(
            f"trained to kimg {result.kimg:.3f} (step {result.step}) at {result.img_per_s:.1f} img/s{last}; "
            f"generator: {out / runs.G_EMA}"
        )
        return 0

    # --dry-run: resolved config + dataset summary, nothing written.
    print(train.dry_run_summary(out, resume_from, args.config, args.data, init=args.init, overrides=_overrides(args),
                                kimg=args.kimg, batch=args.batch, progressive=progressive, cache_dir=args.cache_dir,
                                progress=not args.no_progress, seed=args.seed, device=args.device), end="")  # fmt: skip
    return 0
