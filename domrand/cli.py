"""``domrand <command>``: the command-line front door.

Commands are registered by name with the module that implements them. A command module provides
``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when its command runs, so
``domrand --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from domrand.commands import CommandParser, DefaultsHelp

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("domrand.commands.demo", "run an env with the bundled model and write a grid PNG and an episode GIF"),
    "train-generator": ("domrand.commands.train_generator", "train a StyleGAN2 generator on a folder of images"),
    "generate": ("domrand.commands.generate", "images from a generator by seed (--trunc) and a style-mixing figure"),
    "eval-generator": ("domrand.commands.eval_generator", "compute SWD (and FID with a local Inception file) for a run"),
    "train-inverter": ("domrand.commands.train_inverter", "train the encoder that inverts frames into W+"),
    "train-pair": ("domrand.commands.train_pair", "train a sim/target-aligned generator + inverter pair (layout from the sim frame)"),
    "distill": ("domrand.commands.distill", "train a small student network to stand in for a bundle's randomizer (fast)"),
    "eval-inverter": ("domrand.commands.eval_inverter", "reconstruction PSNR/SSIM, geometry score, latency"),
    "eval-bundle": ("domrand.commands.eval_bundle", "a bundle's geometry, oracle probe, SWD, diversity and sim reconstruction via StyleRandomizer"),
    "bundle": ("domrand.commands.bundle", "pack a generator and its inverter into a randomizer bundle"),
    "randomize": ("domrand.commands.randomize", "randomize your own frames (a folder or an image) with a bundle"),
    "collect": ("domrand.commands.collect", "frames from any Gymnasium env (pixels or render()) to train a bundle for it"),
    "export-frames": ("domrand.commands.export_frames", "render frames (+labels, masks) from a domrand env"),
    "speed": ("domrand.commands.speed", "speed and memory benchmarks: generator, env, wrapper, vector, randomizer (also: bench)"),
    "gpu-check": ("domrand.commands.gpu_check", "the prepared GPU check: kernels, speed, precision and a training run on one GPU, one output folder"),
    "transfer": ("domrand.commands.transfer", "transfer benchmark: does StyleGAN randomization beat the baselines? (also: benchmark)"),
    "bench": ("domrand.commands.speed", "the same as 'domrand speed' (the old name)"),
    "benchmark": ("domrand.commands.transfer", "the same as 'domrand transfer' (the old name)"),
}


def _show_traceback(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "traceback", False) or os.environ.get("DOMRAND_TRACEBACK"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="domrand",
        description="StyleGAN visual domain randomization for sim-to-real robot learning.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)
        if args.version:
            from domrand import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])  # only the command that runs is imported
    sub = CommandParser(prog=f"domrand {name}", description=COMMANDS[name][1], formatter_class=DefaultsHelp)
    module.add_arguments(sub)
    args = sub.parse_args(rest)  # --help exits 0; a bad argument exits 2 after one line (CommandParser.error)
    args.command_name = name  # the name it was called by (commands with sub-targets name themselves with it)
    from domrand.cuda.dispatch import CudaUnavailableError

    try:
        code = int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("domrand: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, CudaUnavailableError) as exc:
        # User-facing errors (bad config, data, checkpoint, paths, DOMRAND_OPS) are one clear line.
        if _show_traceback(args):
            raise
        print(f"domrand {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug or an unforeseen input: still one line, the trace on request
        if _show_traceback(args):
            raise
        print(
            f"domrand {name}: error: {type(exc).__name__}: {_one_line(exc)} (rerun with DOMRAND_TRACEBACK=1 for the full trace)",
            file=sys.stderr,
        )
        return 1
    _exit_if_torchrun_worker(code)
    return code


def _exit_if_torchrun_worker(code: int) -> None:
    """End a torchrun worker at once, once its command has finished and left the process group.

    Interpreter teardown in a gloo worker occasionally aborted the process ("terminate called
    without an active exception", SIGABRT) after all work was done, and torchrun then reports the
    whole job as failed. Everything is written and flushed by now, so skip that teardown.
    """
    from domrand import distributed

    if distributed.launched():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
