"""``domrand speed randomizer``: full randomizer (inverter + generator) frames/s and latency.

For each preset, ops backend and batch size, times ``StyleRandomizer.randomize`` on uint8 frames
at the generator's resolution (styles resampled once beforehand): median of ``--repeats`` timed
calls after ``--warmup`` untimed ones. Uses untrained networks of the preset's shape (the inverter preset of
the same name, or ``small64``'s where none exists) unless ``--bundle`` names a trained bundle (speed
does not depend on the weights). ``--model teacher,student`` times the distilled student beside the
teacher (the bundle's student, or an untrained ``StudentNet`` of the default shape) and prints the
speed-up per batch size, measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from domrand import cuda
from domrand.speed.generator import bench_device
from domrand.speed.wrapper import untrained_networks
from domrand.config import preset_names
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.randomizer import StyleRandomizer


OPS = ("torch", "cuda")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: Any) -> int:
    device = bench_device(args.device, args.threads, args.clock)
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    batches = list(args.batch)
    backends = list(args.ops)
    if "cuda" in backends:
        if device.type != "cuda" or not cuda.available():
            raise ValueError(f"--ops cuda needs --device cuda and built kernels: {cuda.unavailable_reason() or 'device is not cuda'}")
    print(f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} clock={args.clock} repeats={args.repeats} (median)")
    header = f"{'model':<20}{'ops':>6}{'batch':>7}{'frames/s':>11}{'ms/batch':>11}{'ms/frame':>10}"
    print(header)
    print("-" * len(header))
    models = [("bundle", None)] if args.bundle else [(p, p) for p in args.preset]
    old_ops = os.environ.get("DOMRAND_OPS")
    try:
        rates: dict[tuple[str, str, int], dict[str, float]] = {}
        for (label, preset), kind in [(m, k) for m in models for k in args.model]:
            if preset is None:
                R = StyleRandomizer.from_bundle(args.bundle, device=device, seed=0, dtype=args.dtype, model=kind,
                                                max_batch=max(batches), ood_reference=None)  # fmt: skip
            else:
                # An inverter preset of the generator's name if one exists, else the small64 inverter
                # (Inverter.for_generator sizes it to the generator).
                inverter = preset if preset in preset_names("inverter") else "small64"
                G, E = untrained_networks(preset, inverter, device)
                S = StudentNet(StudentConfig(resolution=int(G.img_resolution), w_dim=int(G.w_dim))).to(device)
                R = StyleRandomizer(G, E, seed=0, dtype=args.dtype, max_batch=max(batches), model=kind, student=S)
            res = R.resolution
            name = f"{label}/{kind}"
            for backend in backends:
                os.environ["DOMRAND_OPS"] = backend
                for batch in batches:
                    frames = np.random.default_rng(0).integers(0, 256, (batch, res, res, 3), dtype=np.uint8)
                    ids = list(range(batch))
                    R.resample(ids, seed=0)
                    times = []
                    for i in range(args.warmup + args.repeats):
                        _sync(device)
                        start = now()
                        R.randomize(frames, env_ids=ids)
                        _sync(device)
                        if i >= args.warmup:
                            times.append(now() - start)
                    sec = statistics.median(times)
                    rates.setdefault((label, backend, batch), {})[kind] = batch / sec
                    print(f"{name:<20}{backend:>6}{batch:>7}{batch / sec:>11.1f}{sec * 1e3:>11.1f}{sec * 1e3 / batch:>10.2f}")
        for (label, backend, batch), r in rates.items():
            if len(r) == 2:
                print(f"student / teacher frames/s, {label}, {backend}, batch {batch}: {r['student'] / r['teacher']:.2f}x")
    finally:
        if old_ops is None:
            os.environ.pop("DOMRAND_OPS", None)
        else:
            os.environ["DOMRAND_OPS"] = old_ops
    return 0
