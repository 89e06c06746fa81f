"""``domrand speed train``: generator training speed (images/s) per preset and batch size.

One step = the whole StyleGAN2 + ADA update of ``Trainer.train_step``: the G pass, the D pass, lazy
path length (every ``pl_interval`` steps), lazy R1 (every ``r1_interval`` steps), the EMA and the
ADA update. Each repeat times ``--steps`` consecutive steps after ``--warmup`` untimed ones; use
``--steps`` that is a multiple of ``r1_interval`` (16) so every repeat holds the same mix of
regularization steps. Images: ``--data`` (a folder or .npy/.npz), else seeded random pixels (the
speed does not depend on the content).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from domrand.speed.generator import _peak_memory_mb, _sync, bench_device
from domrand.generator.train.dataset import load_images
from domrand.generator.train.stylegan import resolve_config, Trainer


def _images(data: str | None, resolution: int) -> np.ndarray:
    if data:
        return load_images(data, resolution, progress=False)
    return np.random.default_rng(0).integers(0, 256, (64, resolution, resolution, 3), dtype=np.uint8)


def time_training(preset: str, batch: int, device: torch.device, steps: int, repeats: int, warmup: int,
                  data: str | None = None, clock: str = "wall", cpu_amp: bool = False) -> list[float]:
    """Images/s of each timed repeat of ``steps`` training steps (``clock="cpu"``: per CPU-second;
    ``cpu_amp``: ``training.cpu_amp``, bfloat16 autocast on a CPU with native bfloat16)."""
    cfg = resolve_config(preset, batch=batch, overrides={"training.cpu_amp": cpu_amp})
    trainer = Trainer(cfg, _images(data, cfg.network.resolution), device=device, seed=0)
    now = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):
        trainer.train_step()
    rates = []
    for _ in range(repeats):
        _sync(device)
        start = now()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        rates.append(steps * batch / (now() - start))
    return rates


def run(args: Any) -> int:
    device = bench_device(args.device, args.threads, args.clock)
    if args.steps < 1 or args.repeats < 1:
        raise ValueError(f"--steps and --repeats must be at least 1, got {args.steps} and {args.repeats}")
    print(f"device={device} threads={torch.get_num_threads()} clock={args.clock} steps={args.steps} "
          f"repeats={args.repeats} (median) warmup={args.warmup} data={args.data or 'random pixels'}")
    print(f"{'preset':<10}{'batch':>7}{'img/s':>10}{'ms/step':>10}{'peak MiB':>10}{'cpu_amp':>9}  repeats (img/s)")
    for preset in args.preset:
        for batch in args.batch:
            for amp in [a == "on" for a in args.cpu_amp]:
                rates = time_training(preset, batch, device, args.steps, args.repeats, args.warmup, args.data, args.clock, amp)
                med = statistics.median(rates)
                print(f"{preset:<10}{batch:>7}{med:>10.2f}{1000 * batch / med:>10.1f}{_peak_memory_mb(device):>10.0f}"
                      f"{'on' if amp else 'off':>9}  " + ", ".join(f"{r:.2f}" for r in rates))
    return 0
