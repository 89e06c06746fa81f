"""``domrand bench wrapper``: env steps/s unwrapped, with the style wrapper and with the augmentation
baseline, for one env and for a vector of ``--num-envs`` envs (one batched randomizer forward per
vector step).

Without ``--bundle`` the randomizer uses an untrained generator (``--generator`` preset, default
``small64``) and an untrained inverter (``--inverter`` preset) built for it: same cost as trained
weights, since only speed is measured. Steps use random actions; resets are included as in RL.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any, Callable

from domrand import cli_args
from domrand.benchmarks.cli import report

MODES = ("unwrapped", "style", "student", "augment")  # student: the style wrapper running the bundle's distilled student


def add_randomizer_arguments(parser: argparse.ArgumentParser) -> None:
    """The env and randomizer options shared by ``bench wrapper`` and ``bench vector``."""
    parser.add_argument("--env", type=cli_args.env_id, default="domrand/Reach-v0", help="env id (pixel observations)")
    parser.add_argument("--image-size", type=cli_args.image_size, default=64, help="env frame size")
    parser.add_argument("--bundle", type=cli_args.existing_path, default=None, help="bundle to use (default: untrained --generator/--inverter)")
    parser.add_argument("--generator", type=cli_args.preset("generator"), default="small64", help="generator preset when no bundle is given")
    parser.add_argument("--inverter", type=cli_args.preset("inverter"), default="small64", help="inverter preset when no bundle is given")
    parser.add_argument("--device", type=cli_args.device_name, default="cpu", help="randomizer device: cpu | cuda | auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_randomizer_arguments(parser)
    parser.add_argument("--dtype", type=cli_args.dtype_name, default="float32", help="randomizer compute dtype")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--num-envs", type=cli_args.positive_int, default=16, help="sub-environments of the vector runs")
    parser.add_argument("--steps", type=cli_args.positive_int, default=100, help="steps per timed repeat (single env)")
    parser.add_argument("--vector-steps", type=cli_args.positive_int, default=20, help="vector steps per timed repeat")
    parser.add_argument("--repeats", type=cli_args.positive_int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=cli_args.nonnegative_int, default=5, help="untimed steps first")
    parser.add_argument("--modes", nargs="+", default=["unwrapped", "style", "augment"], choices=MODES,
                        help="what to time (student: the style wrapper on the bundle's distilled student)")
    parser.add_argument("--no-vector", action="store_true", help="skip the vector runs")
    parser.add_argument(
        "--clock", default="wall", choices=("wall", "cpu"), help="wall: elapsed; cpu: this process's CPU time"
    )
    parser.add_argument("--out", type=cli_args.output_file, default=None, help="also write the table as Markdown to this file")


def build_randomizer(args: argparse.Namespace, model: str = "teacher"):
    """A ``StyleRandomizer`` from ``--bundle`` or from untrained presets (``model="student"``: the
    bundle's student, or an untrained ``StudentNet`` of the default shape)."""
    from domrand.randomizer import StyleRandomizer
    from domrand.utils import resolve_device

    if args.bundle:
        return StyleRandomizer.from_bundle(args.bundle, device=args.device, seed=0, dtype=args.dtype, model=model, ood_reference=None)
    from domrand.generator.student import StudentConfig, StudentNet

    G, E = untrained_networks(args.generator, args.inverter, resolve_device(args.device))
    S = StudentNet(StudentConfig(resolution=int(G.img_resolution), w_dim=int(G.w_dim))).to(next(G.parameters()).device)
    return StyleRandomizer(G, E, seed=0, dtype=args.dtype, model=model, student=S)


def untrained_networks(generator_preset: str, inverter_preset: str, device):
    """Untrained G and its E (seeded, eval mode) of the named presets: the speed of trained ones."""
    import torch

    from domrand.config import GeneratorConfig, load_config
    from domrand.generator.inverter import Inverter, InverterConfig
    from domrand.generator.networks import Generator

    torch.manual_seed(0)
    G = Generator(load_config(generator_preset, GeneratorConfig).network).to(device).eval()
    cfg = load_config(inverter_preset, InverterConfig, kind="inverter")
    with torch.no_grad():
        E = Inverter.for_generator(G, cfg.network, samples=64).to(device).eval()
    return G, E


def _timed(step: Callable[[], None], n: int, repeats: int, warmup: int, clock: str, sync: Callable[[], None]) -> list[float]:
    timer = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):
        step()
    sync()
    rates = []
    for _ in range(repeats):
        t0 = timer()
        for _ in range(n):
            step()
        sync()
        rates.append(n / max(timer() - t0, 1e-9))
    return rates


def measure_single(args: argparse.Namespace, mode: str, randomizer: Any, sync: Callable[[], None]) -> float:
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)
    from domrand.wrappers import AugmentationObservation, StyleRandomizationObservation

    env = gym.make(args.env, obs_mode="pixels", image_size=args.image_size)
    if mode in ("style", "student"):
        env = StyleRandomizationObservation(env, randomizer[mode])
    elif mode == "augment":
        env = AugmentationObservation(env)
    env.action_space.seed(0)
    env.reset(seed=0)

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    rates = _timed(step, args.steps, args.repeats, args.warmup, args.clock, sync)
    env.close()
    return statistics.median(rates)


def measure_vector(args: argparse.Namespace, mode: str, randomizer: Any, sync: Callable[[], None]) -> float:
    import gymnasium as gym

    import domrand  # noqa: F401
    from domrand.wrappers import VectorAugmentation, VectorStyleRandomization

    venv = gym.make_vec(
        args.env, num_envs=args.num_envs, vectorization_mode="sync", obs_mode="pixels", image_size=args.image_size
    )
    if mode in ("style", "student"):
        venv = VectorStyleRandomization(venv, randomizer[mode])
    elif mode == "augment":
        venv = VectorAugmentation(venv)
    venv.action_space.seed(0)
    venv.reset(seed=0)

    def step() -> None:
        venv.step(venv.action_space.sample())  # auto-reset inside the vector env

    rates = _timed(step, args.vector_steps, args.repeats, args.warmup, args.clock, sync)
    venv.close()
    return statistics.median(rates) * args.num_envs


def main(args: argparse.Namespace) -> int:
    import torch

    if args.steps < 1 or args.vector_steps < 1 or args.repeats < 1 or args.num_envs < 1:
        raise ValueError("--steps, --vector-steps, --repeats and --num-envs must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    randomizers = {m: build_randomizer(args, "teacher" if m == "style" else "student") for m in ("style", "student") if m in args.modes}
    randomizer = next(iter(randomizers.values()), None)
    cuda = randomizer is not None and randomizer.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows: list[tuple[str, str, str]] = []
    for mode in args.modes:
        single = measure_single(args, mode, randomizers, sync)
        vector = None if args.no_vector else measure_vector(args, mode, randomizers, sync)
        rows.append((mode, f"{single:.1f}", "-" if vector is None else f"{vector:.1f}"))
    size = args.image_size
    lines = [
        f"| {args.env} pixels {size}x{size} | single env (steps/s) | vector x{args.num_envs} (env steps/s) |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {mode} | {s} | {v} |" for mode, s, v in rows]
    if randomizer is not None:
        source = args.bundle or f"untrained generator '{args.generator}' + inverter '{args.inverter}'"
        desc = (
            f"style: {source}, {randomizer.resolution}x{randomizer.resolution}, keep_resolution "
            f"{randomizer.keep_resolution}, device {randomizer.device}, {args.dtype}"
        )
    else:
        desc = "style not timed"
    device_name = torch.cuda.get_device_name(randomizer.device) if cuda else (platform.processor() or platform.machine())
    note = (
        f"{desc}; augment: color_jitter + random_conv + random_shift. Median of {args.repeats} x {args.steps} "
        f"single / {args.vector_steps} vector random-action steps after {args.warmup} warm-up ({args.clock} clock, "
        f"resets included); {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"python {platform.python_version()}"
    )
    text = "\n".join(lines) + "\n\n" + note + "\n"
    report(text, args.out)
    return 0
