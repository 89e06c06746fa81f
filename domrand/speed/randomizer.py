"""``domrand speed randomizer``: full randomizer (inverter + generator) frames/s and latency.

For each preset, ops backend and batch size, times ``StyleRandomizer.randomize`` on uint8 frames
at the generator's resolution (styles resampled once beforehand): median of ``--repeats`` timed
calls after ``--warmup`` untimed ones. Uses untrained networks of the preset's shape (the inverter preset of
the same name, or ``small64``'s where none exists) unless ``--bundle`` names a trained bundle (speed
does not depend on the weights). ``--model teacher,student`` times the distilled student beside the
teacher (the bundle's student, or an untrained ``StudentNet`` of the default shape) and prints the
speed-up per batch size, measured in the same run. ``--path reference,fast`` times the pure-torch
reference path (float32, NCHW weights, ``ops.reference_only()``: the function the fast path is
tested against) beside what ``StyleRandomizer`` runs (``--dtype``, default auto; channels-last;
the ops' inference forms) and prints fast / reference per batch size.
"""

from __future__ import annotations

import contextlib
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
from domrand.generator.nn import ops
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.randomizer import StyleRandomizer


OPS = ("torch", "cuda")
PATHS = ("fast", "reference")


def _reference_path(R: StyleRandomizer) -> StyleRandomizer:
    """``R`` set to the reference path: float32 compute and NCHW weights (run it in ``ops.reference_only()``)."""
    R.dtype = torch.float32
    for net in (R.G, R.E, R.student):
        if net is not None:
            net.to(memory_format=torch.contiguous_format)
    return R


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
    paths = list(args.path)
    header = f"{'model':<20}{'path':>10}{'dtype':>10}{'ops':>6}{'batch':>7}{'frames/s':>11}{'ms/batch':>11}{'ms/frame':>10}"
    print(header)
    print("-" * len(header))
    models = [("bundle", None)] if args.bundle else [(p, p) for p in args.preset]
    old_ops = os.environ.get("DOMRAND_OPS")
    try:
        rates: dict[tuple[str, str, int], dict[str, float]] = {}
        path_rates: dict[tuple[str, str, int], dict[str, float]] = {}
        for (label, preset), kind, path in [(m, k, p) for m in models for k in args.model for p in paths]:
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
            if path == "reference":
                _reference_path(R)
            res = R.resolution
            name = f"{label}/{kind}"
            for backend in backends:
                os.environ["DOMRAND_OPS"] = backend
                for batch in batches:
                    frames = np.random.default_rng(0).integers(0, 256, (batch, res, res, 3), dtype=np.uint8)
                    ids = list(range(batch))
                    R.resample(ids, seed=0)
                    times = []
                    with ops.reference_only() if path == "reference" else contextlib.nullcontext():
                        for i in range(args.warmup + args.repeats):
                            _sync(device)
                            start = now()
                            R.randomize(frames, env_ids=ids)
                            _sync(device)
                            if i >= args.warmup:
                                times.append(now() - start)
                    sec = statistics.median(times)
                    if path == paths[0]:
                        rates.setdefault((label, backend, batch), {})[kind] = batch / sec
                    path_rates.setdefault((name, backend, batch), {})[path] = batch / sec
                    dtype = str(R.dtype).removeprefix("torch.")
                    print(f"{name:<20}{path:>10}{dtype:>10}{backend:>6}{batch:>7}{batch / sec:>11.1f}"
                          f"{sec * 1e3:>11.1f}{sec * 1e3 / batch:>10.2f}")  # fmt: skip
        for (label, backend, batch), r in rates.items():
            if len(r) == 2:
                print(f"student / teacher frames/s, {label}, {backend}, batch {batch}: {r['student'] / r['teacher']:.2f}x")
        for (name, backend, batch), r in path_rates.items():
            if len(r) == 2:
                print(f"fast / reference frames/s, {name}, {backend}, batch {batch}: {r['fast'] / r['reference']:.2f}x")
    finally:
        if old_ops is None:
            os.environ.pop("DOMRAND_OPS", None)
        else:
            os.environ["DOMRAND_OPS"] = old_ops
    return 0
