"""``domrand speed <target>`` (also ``domrand bench``): speed and memory benchmarks.

The measuring code lives in ``domrand/speed/<target>.py`` (``run(args) -> int``); this file
holds each target's options. Figures are medians over repeats after warm-up; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from typing import Callable

from domrand.commands import cli_args
from domrand.speed import env, generator, precision, randomizer, train, vector, wrapper
from domrand.commands import CommandParser

def _randomizer_options(parser: argparse.ArgumentParser) -> None:
    """The env and randomizer options shared by ``bench wrapper`` and ``bench vector``."""
    parser.add_argument("--env", type=cli_args.env_id, default="domrand/Reach-v0", help="env id (pixel observations)")
    parser.add_argument("--image-size", type=cli_args.image_size, default=64, help="env frame size")
    parser.add_argument("--bundle", type=cli_args.existing_path, default=None, help="bundle to use (default: untrained --generator/--inverter)")
    parser.add_argument("--generator", type=cli_args.preset("generator"), default="small64", help="generator preset when no bundle is given")
    parser.add_argument("--inverter", type=cli_args.preset("inverter"), default="small64", help="inverter preset when no bundle is given")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="randomizer device: cpu | cuda | auto")


def _generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", type=cli_args.preset_list("generator"), default="small64", help="generator preset name(s), comma-separated")
    parser.add_argument("--batch", type=cli_args.positive_int_list, default="1,16,64", help="batch sizes, comma-separated")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=5, help="timed calls per setting (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=2, help="untimed calls before timing")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--modconv", action="store_true", help="compare fused and non-fused modulated conv")
    parser.add_argument("--dtype", type=cli_args.dtype_or_auto, default="auto",
                        help="compute dtype of the fast path: auto (default: bfloat16 on a CPU with native bfloat16) | float32 | bfloat16 | float16")
    parser.add_argument("--path", type=cli_args.choice_list(("fast", "reference"), "path"), default="fast",
                        help="fast (channels-last, --dtype, inference forms) and/or reference (float32, NCHW, reference ops); both print the ratio")  # fmt: skip
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or this process's CPU time (what free cores would give on a busy machine; CPU only)",
    )


def _env_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--envs", nargs="+", type=cli_args.env_id, default=list(env.ENVS), help="env ids")
    parser.add_argument("--domains", nargs="+", default=list(env.DOMAINS), choices=env.DOMAINS, help="visual domains")
    parser.add_argument("--steps", type=cli_args.positive_int, default=300, help="steps per timed repeat")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=30, help="untimed steps first")
    parser.add_argument("--image-size", type=cli_args.image_size, default=64, help="frame size in pixels")
    parser.add_argument("--obs-mode", default="pixels", choices=("pixels", "state", "pixels+state"))
    parser.add_argument("--renderer", default="tiny", choices=("auto", "tiny", "egl"))
    parser.add_argument("--randomize-every", type=cli_args.positive_int, default=None, help="randomized: redraw every k steps")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall: elapsed time; cpu: this process's CPU time (robust when other jobs share the cores)",
    )
    parser.add_argument("--out", type=cli_args.output_file, default=None, help="also write the table as Markdown to this file")


def _wrapper_arguments(parser: argparse.ArgumentParser) -> None:
    _randomizer_options(parser)
    parser.add_argument("--dtype", type=cli_args.dtype_or_auto, default="auto", help="randomizer compute dtype (default auto, as StyleRandomizer)")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--num-envs", type=cli_args.positive_int, default=16, help="sub-environments of the vector runs")
    parser.add_argument("--steps", type=cli_args.positive_int, default=100, help="steps per timed repeat (single env)")
    parser.add_argument("--vector-steps", type=cli_args.positive_int, default=20, help="vector steps per timed repeat")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=5, help="untimed steps first")
    parser.add_argument("--modes", nargs="+", default=["unwrapped", "style", "augment"], choices=wrapper.MODES,
                        help="what to time (student: the style wrapper on the bundle's distilled student)")
    parser.add_argument("--no-vector", action="store_true", help="skip the vector runs")
    parser.add_argument(
        "--clock", default="wall", choices=("wall", "cpu"), help="wall: elapsed; cpu: this process's CPU time"
    )
    parser.add_argument("--out", type=cli_args.output_file, default=None, help="also write the table as Markdown to this file")


def _randomizer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", type=cli_args.preset_list("generator"), default="small64",
                        help="generator preset(s), comma-separated (inverter preset of the same name)")
    parser.add_argument("--bundle", type=cli_args.existing_path, default=None, help="time this bundle instead of untrained preset networks")
    parser.add_argument("--batch", type=cli_args.positive_int_list, default="1,16,64", help="batch sizes, comma-separated")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--ops", type=cli_args.choice_list(randomizer.OPS, "ops backend"), default="torch",
                        help="ops backends to compare, comma-separated: torch,cuda")
    parser.add_argument("--dtype", type=cli_args.dtype_or_auto, default="auto",
                        help="compute dtype of the fast path: auto (default: bfloat16 on a CPU with native bfloat16) | float32 | bfloat16 | float16")
    parser.add_argument("--path", type=cli_args.choice_list(randomizer.PATHS, "path"), default="fast",
                        help="fast (what StyleRandomizer runs) and/or reference (float32, NCHW, reference ops: the "
                        "pure-torch path the fast one is tested against), comma-separated; both print the ratio")  # fmt: skip
    parser.add_argument("--repeats", type=cli_args.positive_int, default=5, help="timed calls per setting (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=2, help="untimed calls before timing")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time or process CPU time (CPU only)")
    parser.add_argument("--model", type=cli_args.choice_list(("teacher", "student"), "model"), default="teacher",
                        help="teacher (inverter + generator) and/or student (the distilled network), comma-separated")  # fmt: skip


def _vector_arguments(parser: argparse.ArgumentParser) -> None:
    _randomizer_options(parser)
    parser.add_argument("--threads", type=cli_args.positive_int, default=1, help="torch threads of the main process (default 1)")
    parser.add_argument("--workers", type=cli_args.positive_int, nargs="+", default=[1, 2, 4], help="sub-envs (= worker processes for Async)")
    parser.add_argument("--kinds", nargs="+", default=["sync", "async"], choices=("sync", "async"), help="vector env kinds")
    parser.add_argument("--context", default="spawn", choices=("spawn", "fork", "forkserver"), help="AsyncVectorEnv start method")
    parser.add_argument("--no-randomizer", action="store_true", help="time the bare vector envs only")
    parser.add_argument("--steps", type=cli_args.positive_int, default=20, help="vector steps per timed repeat")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=5, help="untimed vector steps first")
    parser.add_argument("--max-steps", type=cli_args.positive_int, default=50, help="episode length (auto-resets are timed too)")
    parser.add_argument("--out", type=cli_args.output_file, default=None, help="also write the table as Markdown to this file")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", type=cli_args.preset_list("generator"), default="small64", help="generator preset name(s), comma-separated")
    parser.add_argument("--batch", type=cli_args.positive_int_list, default="16", help="global batch sizes, comma-separated")
    parser.add_argument("--steps", type=cli_args.positive_int, default=16, help="training steps per timed repeat (default 16 = one R1 period)")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=2, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=2, help="untimed steps before timing")
    parser.add_argument("--data", type=cli_args.existing_path, default=None, help="training images (folder or .npy/.npz); default random pixels")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time or this process's CPU time (CPU only)")
    parser.add_argument("--cpu-amp", type=cli_args.choice_list(("off", "on"), "cpu-amp"), default="off",
                        help="training.cpu_amp: off and/or on, comma-separated (on: bfloat16 autocast where the CPU computes it natively)")


def _precision_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=cli_args.existing_path, default=None, help="bundle folder or file (default: the bundled model)")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--dtypes", type=cli_args.dtype_list, default="float32,bfloat16,float16",
                        help="compute dtypes, comma-separated; float32 is always run first as the reference")
    parser.add_argument("--batch", type=cli_args.positive_int, default=64, help="frames per randomize call (default 64)")
    parser.add_argument("--frames", type=cli_args.existing_path, default=None,
                        help="sim frames to randomize: a folder or .npy/.npz (default: noise)")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=5, help="timed calls per dtype (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=2, help="untimed calls before timing")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=cli_args.output_file, default=None, help="also write the rows as JSON to this file")


# target -> (one line of help, its options, the benchmark)
TARGETS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {
    "generator": ("generation images/s and ms/batch per batch size, peak memory", _generator_arguments, generator.run),
    "env": ("env steps/s per env and visual domain", _env_arguments, env.run),
    "wrapper": ("env steps/s unwrapped, with the style wrapper and with the augmentation baseline", _wrapper_arguments, wrapper.run),
    "randomizer": ("randomizer frames/s and latency per batch, preset and ops backend", _randomizer_arguments, randomizer.run),
    "vector": ("VectorStyleRandomization steps/s over Sync/AsyncVectorEnv with 1, 2, 4 workers, time breakdown", _vector_arguments, vector.run),
    "train": ("generator training images/s (full StyleGAN2 + ADA step) per preset and batch size", _train_arguments, train.run),
    "precision": ("randomizer frames/s and output PSNR vs float32 per compute dtype (float32, bfloat16, float16)", _precision_arguments, precision.run),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")


def main(args: argparse.Namespace) -> int:
    name = getattr(args, "command_name", "speed")
    description, add_options, run = TARGETS[args.target]
    sub = CommandParser(prog=f"domrand {name} {args.target}", description=description)
    add_options(sub)
    return int(run(sub.parse_args(args.rest)) or 0)
