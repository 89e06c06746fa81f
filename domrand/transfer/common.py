"""Small shared pieces of the transfer benchmark: seeds, hashes, the frame cache, progress, summaries.

Imports nothing else of ``domrand.transfer`` (the bottom layer of the package).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

import domrand.envs
from domrand.envs.target_lab import split_preset as _split_preset
from domrand.utils import atomic_path, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig

FRAMES_VERSION = 1  # bump when the frame generation changes meaning (part of every cache key)
TEST_OFFSET = 5_000_000  # test reset seeds start here (relative to data_seed * 10**7)

Log = Callable[[str], None]


def split_preset(preset: str, split: str) -> str:
    """The target preset that renders ``split`` frames (``target-lab`` test frames use ``target-lab-test``)."""
    return _split_preset(preset, split)


def progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def torch_device(name: str) -> torch.device:
    return resolve_device(name)


def content_hash(obj: Any) -> str:
    """16 hex digits identifying a JSON-able value (cache keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def state_seeds(cfg: "BenchmarkConfig", split: str, n: int) -> list[int]:
    """Reset seeds of the ``train`` or ``test`` states (disjoint ranges)."""
    base = cfg.data_seed * 10**7 + (TEST_OFFSET if split == "test" else 0)
    return [base + i for i in range(n)]


def cache_root(cfg: "BenchmarkConfig") -> Path:
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "domrand" / "transfer"
    root.mkdir(parents=True, exist_ok=True)
    return root


_ENV_HASH: str | None = None


def env_source_hash() -> str:
    """Hash of the envs' source files: cached frames go stale when the envs change."""
    global _ENV_HASH
    if _ENV_HASH is None:
        h = hashlib.sha1()
        for path in sorted(Path(domrand.envs.__file__).parent.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        _ENV_HASH = h.hexdigest()[:16]
    return _ENV_HASH


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache entry atomically (a crash never leaves a half-written file under ``path``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """A cache entry, or None when it is missing or damaged (then it is made again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def summarize(per_seed: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean and std (population, over seeds) of each key, plus the per-seed rows."""
    out: dict[str, Any] = {}
    for k in keys:
        vals = np.array([row[k] for row in per_seed], np.float64)
        out[f"{k}_mean"] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std())
    out["per_seed"] = per_seed
    return out


def mean_rows(seed: int, rows: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, Any]:
    """One per-seed row averaging ``keys`` over ``rows`` (oracle in sim: the mean over its per-preset models)."""
    return {"seed": seed, **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def run_episode(env: Any, seed: int, act: Callable[[Any], Any]) -> tuple[bool, int]:
    """One episode from ``env.reset(seed=seed)`` acting with ``act(obs)``: (success at any step, steps)."""
    obs, info = env.reset(seed=seed)
    success, done, steps = bool(info.get("is_success", False)), False, 0
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs))
        success = success or bool(info.get("is_success", False))
        done = terminated or truncated
        steps += 1
    return success, steps

