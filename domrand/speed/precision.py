"""``domrand speed precision``: randomizer speed and output fidelity per compute dtype.

For each dtype (float32 first, as the reference), builds the randomizer of one bundle with the same
seed, draws the same fine styles, runs it with constant fine noise (so the output depends only on the
frames, styles and arithmetic) and reports the median frames/s over ``--repeats`` timed calls and the
PSNR of its uint8 output against float32's (``inf``: identical). Frames are sim frames from
``--frames`` (a folder or .npy/.npz of images) when given, else uniform noise frames.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domrand.speed.generator import bench_device
from domrand.bundle import default_bundle_path
from domrand.generator.train.dataset import load_images
from domrand.metrics import psnr
from domrand.randomizer import StyleRandomizer
from domrand.utils import atomic_write_text


DTYPES = ("float32", "bfloat16", "float16")


def _frames(source: str | None, batch: int, resolution: int) -> np.ndarray:
    """``[batch, R, R, 3]`` uint8: the first frames of ``source``, else seeded noise."""
    if source is None:
        return np.random.default_rng(0).integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)

    images = load_images(source, resolution, progress=False, min_images=batch)  # [N, R, R, 3] uint8
    return np.ascontiguousarray(images[:batch])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    bundle: str | Path | None,
    device: torch.device,
    dtypes: list[str],
    batch: int,
    frames_source: str | None = None,
    repeats: int = 5,
    warmup: int = 2,
) -> list[dict[str, Any]]:
    """One row per dtype: ``dtype, frames_per_s, ms_per_frame, psnr_vs_float32, speedup``."""
    path = bundle if bundle is not None else default_bundle_path()
    order = ["float32"] + [d for d in dtypes if d != "float32"]
    rows: list[dict[str, Any]] = []
    reference: torch.Tensor | None = None
    frames: np.ndarray | None = None
    for dtype in order:
        R = StyleRandomizer.from_bundle(path, device=device, seed=0, dtype=dtype, noise="const", max_batch=batch)
        if frames is None:
            frames = _frames(frames_source, batch, R.resolution)
        ids = list(range(batch))
        R.resample(ids, seed=0)
        times = []
        out = None
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            out = R.randomize(frames, env_ids=ids)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        got = torch.from_numpy(np.asarray(out)).permute(0, 3, 1, 2).float() / 127.5 - 1
        if reference is None:
            reference = got
        quality = psnr(got, reference).clamp(max=99.0)  # identical frames: capped at 99 dB
        sec = statistics.median(times)
        rows.append({
            "dtype": dtype,
            "frames_per_s": batch / sec,
            "ms_per_frame": sec * 1e3 / batch,
            "psnr_vs_float32_db": float(quality.mean()),
            "psnr_vs_float32_min_db": float(quality.min()),
        })
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["speedup"] = row["frames_per_s"] / base
    return rows


def run(args: Any) -> int:
    dtypes = list(dict.fromkeys(args.dtypes))  # canonical names (cli_args.dtype_list), each once
    device = bench_device(args.device, args.threads, "wall")
    rows = measure(args.bundle, device, dtypes, args.batch, args.frames, args.repeats, args.warmup)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} repeats={args.repeats} (median), "
          f"constant fine noise, same styles; PSNR of the uint8 output vs float32 (99 = identical)")
    header = f"{'dtype':<10}{'frames/s':>10}{'ms/frame':>10}{'speedup':>9}{'PSNR dB':>9}{'min dB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dtype']:<10}{r['frames_per_s']:>10.1f}{r['ms_per_frame']:>10.2f}{r['speedup']:>9.2f}"
              f"{r['psnr_vs_float32_db']:>9.1f}{r['psnr_vs_float32_min_db']:>8.1f}")
    if args.json:
        atomic_write_text(args.json, json.dumps({"device": str(device), "batch": args.batch, "rows": rows}, indent=2))
    return 0
