"""``domrand train-inverter``: train the encoder that inverts frames into a generator's W+.

Example::

    domrand train-inverter --generator runs/target64 --config configs/inverter/small64.yaml \\
        --out runs/target64-E --target-data data/target --sim-data data/sim --kimg 50
    domrand train-inverter --generator runs/target64 --out runs/target64-E --resume --kimg 100

Data-parallel over K GPUs (or K CPU processes with gloo) through PyTorch's launcher; the batch
sizes of the config are global and split evenly over the ranks (docs/scaling.md)::

    torchrun --nproc_per_node=K -m domrand train-inverter --generator runs/target64 \
        --config small64 --out runs/target64-E --target-data data/target --sim-data data/sim

Object-aware in-domain inversion (the aligned-pair design: E inverts sim frames into G_sim, a
generator trained on the same sim frames). ``domrand export-frames --masks --out data/sim`` writes
``data/sim/frames/`` and ``data/sim/masks/`` (uint8 class ids, names in ``data/sim/meta.json``);
``--sim-masks auto`` takes the ``masks/`` folder beside the ``frames/`` folder given as
``--sim-data``::

    domrand train-inverter --generator runs/sim64 --config small64 --out runs/sim64-E \
        --sim-data data/sim/frames --sim-masks auto \
        --set training.sim_recon_weight=1 --set training.structure_weight=0 \
        --set 'training.class_weights={object: 20, distractor: 5}'
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from domrand import distributed
from domrand.commands import cli_args
from domrand.config import dump_yaml, from_dict, load_config, parse_overrides, replace, to_dict
from domrand.generator.train.inverter import InverterConfig, train_inverter
from domrand.utils import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="generator run dir, checkpoint dir or G_ema .safetensors file")
    parser.add_argument("--config", default=None, help="inverter preset name (tiny, small64) or YAML path; a resume uses the run's")
    parser.add_argument("--out", required=True, help="run directory (runs/NAME)")
    parser.add_argument("--target-data", default=None, help="target-domain images (the generator's training set): folder or .npy/.npz")
    parser.add_argument("--sim-data", default=None, help="simulator frames: folder or .npy/.npz (for --sim-masks auto: the frames/ folder of export-frames --masks)")
    parser.add_argument(
        "--sim-masks",
        default=None,
        metavar="DIR|FILE|auto",
        help=(
            "class-id masks of the --sim-data frames for the object-aware loss: a folder of uint8 PNGs with the frames' "
            "file names (export-frames --masks: DIR/masks/ beside DIR/frames/), a .npy/.npz of uint8 [N, H, W] in the "
            "frames' order, or 'auto' = the masks/ folder beside the frames/ folder; class names from the meta.json "
            "beside it. Active when training.sim_recon_weight > 0 (default 0 = off): per-pixel L2/L1 of E->G's "
            "reconstruction vs the sim frame, weighted by training.class_weights (default object 20, distractor 5, "
            "other classes 1; e.g. --set training.class_weights.object=30, or a whole mapping with --set "
            "'training.class_weights={object: 20, distractor: 5}') and normalized by the "
            "sum of the weights"
        ),
    )
    parser.add_argument("--kimg", type=cli_args.positive_float, default=None, help="train until this many thousand images (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue the newest intact checkpoint in --out exactly")
    parser.add_argument("--allow-changes", action="store_true", help="with --resume: accept other --target-data/--sim-data than the run's")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="data and latent RNG seed")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--max-minutes", type=cli_args.positive_float, default=None, help="stop (with a checkpoint) after this wall time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. training.lr=0.002")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")
    # Under torchrun (WORLD_SIZE > 1) the job is data-parallel: see docs/scaling.md.


def main(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    config = None
    if args.config is not None:
        config = load_config(args.config, InverterConfig, kind="inverter")
        sets = parse_overrides(args.set)
        prefix = "training.class_weights."
        per_class = {k[len(prefix):]: v for k, v in sets.items() if k.startswith(prefix)}
        if per_class:  # --set training.class_weights.object=30 changes one class, keeping the others
            sets = {k: v for k, v in sets.items() if not k.startswith(prefix)}
            merged = dict(sets.get("training.class_weights", config.training.class_weights))
            merged.update(per_class)
            sets["training.class_weights"] = merged
        if sets:
            config = replace(config, **sets)
            config = from_dict(InverterConfig, to_dict(config), "config")  # re-check types
    elif args.set:
        raise ValueError("--set needs --config")
    if args.dry_run:
        if distributed.launched() and int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 prints
            return 0
        print(dump_yaml(config) if config is not None else "(resume: the run's stored config.yaml)")
        return 0
    command = "domrand train-inverter " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    kwargs = dict(
        target_data=args.target_data,
        sim_data=args.sim_data,
        sim_masks=args.sim_masks,
        kimg=args.kimg,
        resume=args.resume,
        allow_changes=args.allow_changes,
        seed=args.seed,
        progress=not args.no_progress,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
    )
    if distributed.launched():  # one rank of a torchrun job: join the group, train, leave it
        ctx = distributed.init(args.device)
        try:
            record = train_inverter(
                args.generator, config, args.out, device=ctx.device,
                command=command + f"  # torchrun, {ctx.world_size} ranks ({ctx.backend})",
                rank=ctx.rank, world_size=ctx.world_size, reduce=ctx.reduce, **kwargs,
            )  # fmt: skip
            ctx.barrier()  # rank 0 writes the last checkpoint while the others wait here
        finally:
            ctx.shutdown()
        if not ctx.is_main:
            return 0
    else:
        device = resolve_device(args.device)
        record = train_inverter(args.generator, config, args.out, device=device, command=command, **kwargs)
    if record:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items() if k.startswith(("psnr", "ssim", "kimg"))}
        print(f"train-inverter: done; {shown}; inverter at {args.out}/E.safetensors")
    return 0
