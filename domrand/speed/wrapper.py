"""``domrand speed wrapper``: env steps/s unwrapped, with the style wrapper and with the augmentation
baseline, for one env and for a vector of ``--num-envs`` envs (one batched randomizer forward per
vector step).

Without ``--bundle`` the randomizer uses an untrained generator (``--generator`` preset, default
``small64``) and an untrained inverter (``--inverter`` preset) built for it: same cost as trained
weights, since only speed is measured. Steps use random actions; resets are included as in RL.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any, Callable

from domrand.speed.common import report
from domrand.config import load_config
from domrand.generator.nn.inverter import Inverter
from domrand.generator.nn.networks import Generator
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.generator.train.inverter import InverterConfig
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.randomizer import StyleRandomizer
from domrand.utils import resolve_device
from domrand.wrappers import (
    AugmentationObservation,
    StyleRandomizationObservation,
    VectorAugmentation,
    VectorStyleRandomization,
)

MODES = ("unwrapped", "style", "student", "augment")  # student: the style wrapper running the bundle's distilled student


def build_randomizer(args: Any, model: str = "teacher"):
    """A ``StyleRandomizer`` from ``--bundle`` or from untrained presets (``model="student"``: the
    bundle's student, or an untrained ``StudentNet`` of the default shape)."""
    if args.bundle:
        return StyleRandomizer.from_bundle(args.bundle, device=args.device, seed=0, dtype=args.dtype, model=model, ood_reference=None)

    G, E = untrained_networks(args.generator, args.inverter, resolve_device(args.device))
    S = StudentNet(StudentConfig(resolution=int(G.img_resolution), w_dim=int(G.w_dim))).to(next(G.parameters()).device)
    return StyleRandomizer(G, E, seed=0, dtype=args.dtype, model=model, student=S)


def untrained_networks(generator_preset: str, inverter_preset: str, device):
    """Untrained G and its E (seeded, eval mode) of the named presets: the speed of trained ones."""
    import torch

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


def measure_single(args: Any, mode: str, randomizer: Any, sync: Callable[[], None]) -> float:
    import gymnasium as gym

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


def measure_vector(args: Any, mode: str, randomizer: Any, sync: Callable[[], None]) -> float:
    import gymnasium as gym

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


def run(args: Any) -> int:
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
