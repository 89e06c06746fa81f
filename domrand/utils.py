"""Small shared helpers: shape checks, atomic file writes, device resolution, seeding."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch


def assert_shape(name: str, tensor: torch.Tensor, shape: Sequence[int | None]) -> None:
    """Check ``tensor.shape`` against ``shape`` (``None`` matches any size).

    Raises ``ValueError`` naming the argument, the expected and the actual shape.
    """
    if tensor.ndim != len(shape) or any(
        want is not None and int(want) != got for want, got in zip(shape, tensor.shape)
    ):
        want = "[" + ", ".join("*" if s is None else str(int(s)) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(tensor.shape)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash while writing leaves the old file (if any) untouched and no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks CUDA when available. Asking for CUDA without a GPU raises ``ValueError``.
    """
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but no CUDA device is available; use 'cpu' or 'auto'")
    try:
        return torch.device(text)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; accepted: auto, cpu, cuda, cuda:N") from exc


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32" | "float16" | "bfloat16"`` (or a ``torch.dtype``) -> ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ValueError(f"dtype must be one of float32, float16, bfloat16, got {dtype!r}")
    return _DTYPES[key]


def derive_seed(*entropy: int, bits: int = 63) -> int:
    """A seed of ``bits`` bits (1..64, default 63: non-negative as a signed 64-bit integer) derived
    from integers through ``numpy.random.SeedSequence``, independent of any global RNG; each integer
    is taken modulo ``2**64``. The one seed derivation of domrand (streams, ranks, env styles, frames)."""
    if not 1 <= bits <= 64:
        raise ValueError(f"derive_seed: bits must be in 1..64, got {bits}")
    state = np.random.SeedSequence([int(e) & (2**64 - 1) for e in entropy]).generate_state(1, np.uint64)[0]
    return int(state) >> (64 - bits)



_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks of up to 1 GiB instead of returning them to the OS.

    CPU inference allocates and frees activations of tens of MB per layer; glibc serves blocks
    above its mmap threshold (at most 32 MB) with fresh pages each time, and touching them costs a
    page fault per 4 KB: about a third of the randomizer's CPU time at batch 64
    (docs/benchmarks.md). Raising the mmap and trim thresholds reuses the memory instead; the
    process keeps its peak heap. Once per process, Linux/glibc only; ``DOMRAND_MALLOPT=0`` turns it
    off. Returns whether the thresholds are (now) raised.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("DOMRAND_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 31) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    _ALLOCATOR_TUNED = bool(ok)
    return _ALLOCATOR_TUNED


def prepare_cpu_networks(*modules: torch.nn.Module | None) -> None:
    """Set networks up for the CPU: channels-last weights (oneDNN's convolutions measured
    1.6x faster in float32 and 2.8x in bfloat16 on NHWC activations, which conv outputs then are)
    and ``keep_freed_memory()``. In place; values are unchanged. ``None`` entries are skipped."""
    for net in modules:
        if net is not None:
            net.to(memory_format=torch.channels_last)
    keep_freed_memory()


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles); else torch emulates it,
    measured 10x slower than float32 on an AVX2-only CPU (docs/benchmarks.md)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
