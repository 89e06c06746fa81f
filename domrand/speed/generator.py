"""``domrand speed generator``: generation images/s and ms/batch per batch size, and peak memory.

Times ``G(z)`` (mapping + synthesis, const noise, no grad) in eval mode: median of ``--repeats``
timed calls after ``--warmup`` untimed ones (``--clock cpu``: CPU time of this process, the
figure to quote from a busy shared machine). ``--modconv`` also times the fused and non-fused
modulated-convolution paths side by side. ``--path reference,fast`` times the pure-torch reference
(float32, NCHW, ``ops.reference_only()``) beside the fast path (``--dtype``, default auto =
bfloat16 autocast on a CPU with native bfloat16; channels-last; the ops' inference forms).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from typing import Any

import torch

from domrand.config import load_config

from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn import ops
from domrand.generator.nn.networks import Generator
from domrand.randomizer import auto_dtype
from domrand.utils import parse_dtype, prepare_cpu_networks, resolve_device


def bench_device(device: str, threads: int | None, clock: str) -> torch.device:
    """Resolve ``--device``, apply ``--threads`` and check ``--clock`` (shared by the bench targets)."""
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if clock == "cpu" and dev.type != "cpu":
        raise ValueError("--clock cpu measures CPU time and only makes sense with --device cpu")
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generator(
    G: Generator,
    batch: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    fused: bool | None = None,
    clock: str = "wall",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Median seconds per ``G(z)`` call at this batch size (``clock="cpu"``: process CPU seconds;
    ``dtype`` other than float32: autocast)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    z = torch.randn(batch, G.z_dim, device=device)
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for i in range(warmup + repeats):
            _sync(device)
            start = now()
            G(z, noise_mode="const", fused=fused)
            _sync(device)
            if i >= warmup:
                times.append(now() - start)
    return statistics.median(times)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def run(args: Any) -> int:
    device = bench_device(args.device, args.threads, args.clock)
    batches = list(args.batch)
    print(
        f"device={device} threads={torch.get_num_threads()} clock={args.clock} "
        f"repeats={args.repeats} (median) warmup={args.warmup}"
    )
    header = f"{'preset':<10}{'params(M)':>10}{'batch':>7}{'path/dtype':>18}{'modconv':>10}{'img/s':>10}{'ms/batch':>10}{'peak MiB':>10}"
    print(header)
    print("-" * len(header))
    fast_dtype = auto_dtype(device) if args.dtype == "auto" else parse_dtype(args.dtype)
    rates: dict[tuple[str, int], dict[str, float]] = {}
    for preset in args.preset:
        cfg = load_config(preset, GeneratorConfig).network
        torch.manual_seed(0)
        G = Generator(cfg).to(device).eval()
        params = sum(p.numel() for p in G.parameters()) / 1e6
        for path in args.path:
            if path == "fast" and device.type == "cpu":
                prepare_cpu_networks(G)
            else:
                G.to(memory_format=torch.contiguous_format)
            dtype = fast_dtype if path == "fast" else torch.float32
            for batch in batches:
                modes = [("fused", True), ("nonfused", False)] if args.modconv else [("auto", None)]
                for label, fused in modes:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    with ops.reference_only() if path == "reference" else contextlib.nullcontext():
                        sec = time_generator(G, batch, device, args.repeats, args.warmup, fused, args.clock, dtype)
                    rates.setdefault((preset, batch), {})[path] = batch / sec
                    name = f"{path}/{str(dtype).removeprefix('torch.')}"
                    print(f"{preset:<10}{params:>10.2f}{batch:>7}{name:>18}{label:>10}{batch / sec:>10.1f}"
                          f"{sec * 1e3:>10.1f}{_peak_memory_mb(device):>10.0f}")  # fmt: skip
    for (preset, batch), r in rates.items():
        if len(r) == 2:
            print(f"fast / reference img/s, {preset}, batch {batch}: {r['fast'] / r['reference']:.2f}x")
    return 0
