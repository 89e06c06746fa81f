"""``domrand speed env``: env steps/s per env and visual domain (pixels at 64x64 by default).

Each (env, domain) cell: make the env, warm up, then time ``--repeats`` runs of ``--steps`` random
actions (resets included when episodes end, as in RL) and report the median steps/s.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

from domrand.speed.common import report

ENVS = ("domrand/Reach-v0", "domrand/Push-v0", "domrand/Localize-v0")
DOMAINS = ("sim", "target", "randomized")


def measure(
    env_id: str,
    domain: str,
    steps: int = 300,
    repeats: int = 3,
    warmup: int = 30,
    image_size: int = 64,
    obs_mode: str = "pixels",
    renderer: str = "tiny",
    randomize_every: int | None = None,
    clock: str = "wall",
) -> list[float]:
    """steps/s of each timed repeat for one env and visual domain."""
    import gymnasium as gym

    env = gym.make(
        env_id,
        obs_mode=obs_mode,
        visual_domain=domain,
        image_size=image_size,
        renderer=renderer,
        randomize_every=randomize_every,
    )
    env.action_space.seed(0)
    env.reset(seed=0)

    def run(n: int) -> None:
        for _ in range(n):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

    run(warmup)
    timer = time.process_time if clock == "cpu" else time.perf_counter
    rates = []
    for _ in range(repeats):
        t0 = timer()
        run(steps)
        rates.append(steps / max(timer() - t0, 1e-9))
    env.close()
    return rates


def run(args: Any) -> int:
    if args.steps < 1 or args.repeats < 1:
        raise ValueError("--steps and --repeats must be >= 1")
    table: dict[tuple[str, str], float] = {}
    for env_id in args.envs:
        for domain in args.domains:
            rates = measure(
                env_id,
                domain,
                args.steps,
                args.repeats,
                args.warmup,
                args.image_size,
                args.obs_mode,
                args.renderer,
                args.randomize_every,
                args.clock,
            )
            table[env_id, domain] = statistics.median(rates)
    size = args.image_size
    header = f"| env ({args.obs_mode} {size}x{size}, {args.renderer}) | " + " | ".join(args.domains) + " |"
    lines = [header, "|" + " --- |" * (len(args.domains) + 1)]
    for env_id in args.envs:
        cells = " | ".join(f"{table[env_id, d]:.0f}" for d in args.domains)
        lines.append(f"| {env_id} | {cells} |")
    note = (
        f"steps/s ({args.clock} clock), median of {args.repeats} x {args.steps} random-action steps after {args.warmup} warm-up "
        f"(resets included); {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    text = "\n".join(lines) + "\n\n" + note + "\n"
    report(text, args.out)
    return 0
