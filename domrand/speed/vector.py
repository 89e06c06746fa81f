"""``domrand speed vector``: ``VectorStyleRandomization`` over ``SyncVectorEnv`` (all sub-envs in
this process) and ``AsyncVectorEnv`` (one worker process per sub-env, rendering in parallel), for
1, 2 and 4 sub-environments/workers; the randomizer always runs once per step, batched, here.

Reported per configuration: vector steps/s, frames/s (sub-env steps/s), and where the time of one
vector step goes: ``env`` (the vector env's ``step``: for Async, sending actions and waiting for
the workers' frames; for Sync, stepping and rendering every sub-env in turn), ``randomizer`` (the
batched encoder + generator forward on all frames) and ``other`` (wrapper bookkeeping).

Without ``--bundle`` an untrained ``--generator``/``--inverter`` (default ``small64``) stands in:
the same cost as trained weights. Actions are random; resets happen as in RL (``--max-steps``).
"""

from __future__ import annotations

import platform
import statistics
import time
from types import SimpleNamespace
from typing import Any, Callable

from domrand.speed.wrapper import build_randomizer
from domrand.wrappers.vector import VectorStyleRandomization


class _Clock:
    """Accumulates the wall time spent inside a wrapped callable."""

    def __init__(self, fn: Callable[..., Any], sync: Callable[[], None] = lambda: None):
        self.fn, self.sync, self.seconds = fn, sync, 0.0

    def __call__(self, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = self.fn(*a, **kw)
        self.sync()
        self.seconds += time.perf_counter() - t0
        return out


def _env_fn(env_id: str, image_size: int, max_steps: int) -> Callable[[], Any]:
    def thunk():
        import gymnasium as gym

        import domrand  # noqa: F401  (a spawned worker registers the envs itself)

        return gym.make(env_id, obs_mode="pixels", image_size=image_size, max_episode_steps=max_steps)

    return thunk


def measure(args: Any, kind: str, n: int, randomizer: Any, sync: Callable[[], None]) -> dict[str, float]:
    import gymnasium as gym
    import numpy as np

    fns = [_env_fn(args.env, args.image_size, args.max_steps) for _ in range(n)]
    t_start = time.perf_counter()
    if kind == "async":
        inner = gym.vector.AsyncVectorEnv(fns, context=args.context)
    else:
        inner = gym.vector.SyncVectorEnv(fns)
    startup = time.perf_counter() - t_start
    env_clock = _Clock(inner.step)
    inner.step = env_clock  # the wrapper calls self.env.step
    env = inner
    rand_clock = None
    if randomizer is not None:
        env = VectorStyleRandomization(inner, randomizer)
        rand_clock = _Clock(env.transform.randomize, sync)
        env.transform = _TransformProxy(env.transform, rand_clock)
    try:
        env.reset(seed=0)
        space = env.single_action_space
        rng = np.random.default_rng(0)

        def actions():
            return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)

        for _ in range(args.warmup):
            env.step(actions())
        rates, env_s, rand_s, totals = [], [], [], []
        for _ in range(args.repeats):
            env_clock.seconds = 0.0
            if rand_clock is not None:
                rand_clock.seconds = 0.0
            t0 = time.perf_counter()
            for _ in range(args.steps):
                env.step(actions())
            sync()
            total = time.perf_counter() - t0
            totals.append(total)
            rates.append(args.steps / total)
            env_s.append(env_clock.seconds)
            rand_s.append(rand_clock.seconds if rand_clock is not None else 0.0)
        i = rates.index(statistics.median(rates)) if len(rates) % 2 else int(np.argsort(rates)[len(rates) // 2])
        per = 1000.0 / args.steps
        return {
            "steps_s": rates[i],
            "frames_s": rates[i] * n,
            "env_ms": env_s[i] * per,
            "rand_ms": rand_s[i] * per,
            "other_ms": max(totals[i] - env_s[i] - rand_s[i], 0.0) * per,
            "startup_s": startup,
        }
    finally:
        env.close()


class _TransformProxy:
    """The randomizer with ``randomize`` timed; every other attribute passes through."""

    def __init__(self, transform: Any, clock: _Clock):
        self._t, self.randomize = transform, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def run(args: Any) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    randomizer, sync = None, (lambda: None)
    what = "none (bare vector envs)"
    if not args.no_randomizer:
        ns = SimpleNamespace(bundle=args.bundle, generator=args.generator, inverter=args.inverter,
                                device=args.device, dtype="float32")
        randomizer = build_randomizer(ns)
        what = args.bundle or f"untrained generator {args.generator} + inverter {args.inverter}"
        if str(randomizer.device).startswith("cuda"):
            sync = torch.cuda.synchronize
    rows = []
    for n in args.workers:
        for kind in args.kinds:
            r = measure(args, kind, n, randomizer, sync)
            rows.append((kind, n, r))
            print(
                f"{kind:5s} {n} env(s): {r['steps_s']:7.1f} vector steps/s = {r['frames_s']:7.1f} frames/s | per step: "
                f"env {r['env_ms']:6.1f} ms, randomizer {r['rand_ms']:6.1f} ms, other {r['other_ms']:5.1f} ms "
                f"(start {r['startup_s']:.1f} s)",
                flush=True,
            )
    lines = [
        f"`domrand speed vector` on {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"thread(s) in the main process, env {args.env} at {args.image_size}px, randomizer: {what} on {args.device}, "
        f"AsyncVectorEnv context {args.context}, {args.steps} steps x {args.repeats} repeats (median)",
        "",
        "| vector env | sub-envs (workers) | vector steps/s | frames/s | env ms/step | randomizer ms/step | other ms/step |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, n, r in rows:
        name = "AsyncVectorEnv" if kind == "async" else "SyncVectorEnv"
        lines.append(
            f"| {name} | {n} | {r['steps_s']:.1f} | {r['frames_s']:.1f} | {r['env_ms']:.1f} | {r['rand_ms']:.1f} | {r['other_ms']:.1f} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 0
