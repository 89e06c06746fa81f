"""``domrand distill``: train a small student network to stand in for a bundle's randomizer.

Example::

    domrand distill --config default --bundle domrand/assets/bundle --sim-data data/sim/frames \\
        --sim-masks auto --out runs/student --max-minutes 60 --bundle-out bundles/with_student
    domrand distill --out runs/student --resume --kimg 160
    StyleRandomizationObservation(env, "bundles/with_student", model="student")

See ``domrand.generator.train.distill`` (the losses, the teacher pairs) and ``domrand.generator.nn.student``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from domrand.bundle import add_student, load_bundle
from domrand.commands import cli_args
from domrand.config import dump_yaml
from domrand.generator.train.distill import distill, DistillConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="distill preset name (default, tiny) or YAML path; a resume uses the run's")
    parser.add_argument("--bundle", default=None, help="the teacher: a bundle folder or file")
    parser.add_argument("--sim-data", default=None, help="simulator frames: folder or .npy/.npz")
    parser.add_argument("--sim-masks", default=None, metavar="DIR|FILE|auto",
                        help="class masks of the sim frames ('auto': masks/ beside a frames/ folder): weights the object's pixels")  # fmt: skip
    parser.add_argument("--out", required=True, help="run directory (runs/NAME)")
    parser.add_argument("--kimg", type=cli_args.positive_float, default=None, help="train until this many thousand teacher pairs (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue the newest intact checkpoint in --out exactly")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="initialization, styles and batch RNG seed")
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--max-minutes", type=cli_args.positive_float, default=None, help="stop (with a checkpoint) after this wall time")
    parser.add_argument("--bundle-out", default=None, metavar="DIR",
                        help="when done, write the teacher bundle with this student in it (a folder)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. training.edge_weight=2")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per log step instead)")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    config = cli_args.run_config(args, DistillConfig, "distill", "default")
    if args.dry_run:
        print(dump_yaml(config) if config is not None else "(the run's stored config)")
        return 0
    command = "domrand distill " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    trainer, last = distill(config, args.bundle, args.out, sim_data=args.sim_data, sim_masks=args.sim_masks, kimg=args.kimg,
                            resume=args.resume, seed=args.seed, device=args.device, progress=not args.no_progress,
                            max_seconds=None if args.max_minutes is None else args.max_minutes * 60, command=command)  # fmt: skip
    if last:
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    if args.bundle_out:
        path = attach_student(args.out, trainer, last, args.bundle_out)
        print(f"wrote bundle {path} with the student (PSNR to the teacher {last.get('psnr/teacher', float('nan')):.2f} dB)")
    return 0


def attach_student(run: str, trainer, last: dict, out: str):
    """Copy the run's teacher bundle to ``out`` (a folder; its files byte-identical) and put the
    trained student into it."""
    import json
    import shutil
    from pathlib import Path

    setup = json.loads((Path(run) / "data.json").read_text())
    src, out = Path(setup["bundle"]), Path(out)
    if not src.is_dir():
        raise ValueError(f"--bundle-out: the teacher {src} is a single-file bundle; a student goes into folder bundles only")
    if out.resolve() != src.resolve():
        shutil.copytree(src, out, dirs_exist_ok=True)
    about = {"distilled_from": str(src), "teacher_generator_hash": setup["teacher_generator_hash"], "run": str(Path(run).resolve()),
             "kimg": trainer.kimg, "metrics": last}  # fmt: skip
    path = add_student(out, trainer.student.cpu().eval(), about)
    load_bundle(path, device="cpu")  # verifies the written bundle
    return path
