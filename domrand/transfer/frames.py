"""Frame sets of the benchmark, cached: rendered states (sim, target presets, classic draws) and
sim frames through the augmenter or the style randomizer.

Rendered and transformed frames are cached as ``.npz`` under the cache folder, keyed by everything
that determines them (the env sources hash, size, renderer, seeds, views, bundle fingerprint,
options).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from domrand.randomizer import StyleRandomizer
from domrand.transfer.bundles import bundle_fingerprint
from domrand.transfer.common import (
    FRAMES_VERSION,
    content_hash,
    env_source_hash,
    load_npz,
    progress_bar,
    save_npz,
    split_preset,
    state_seeds,
)
from domrand.utils import derive_seed
from domrand.wrappers.augment import ImageAugmenter

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig


def make_frame_env(cfg: "BenchmarkConfig", env_id: str):
    import gymnasium as gym

    env = gym.make(
        env_id,
        obs_mode="pixels",
        visual_domain="sim",
        image_size=cfg.image_size,
        renderer=cfg.renderer,
        randomize_every=1,  # classic views: each (no-op) step of the unwrapped env is a new draw
    )
    return env


def render_frames(
    cfg: "BenchmarkConfig",
    split: str,
    n: int,
    items: list[str],
    cache: Path,
    progress: bool = False,
    views: int = 1,
) -> dict[str, np.ndarray]:
    """Render states of ``split`` as asked by ``items``; cached per item.

    items: ``"sim"``, ``"target:<preset>"`` or ``"randomized"`` (``views`` classic draws per state).
    Returns ``{"labels": float32 [n, 2] (m), item: uint8 [V, n, H, W, 3]}``.
    """
    env_id = cfg.localization.env
    common = {
        "v": FRAMES_VERSION,
        "env": env_id,
        "env_src": env_source_hash(),
        "size": cfg.image_size,
        "renderer": cfg.renderer,
        "data_seed": cfg.data_seed,
        "split": split,
        "n": n,
    }

    def path_of(item: str) -> Path:
        nv = views if item == "randomized" else 1
        tag = item.replace(":", "-").replace("/", "-")
        return cache / "frames" / f"{split}-{n}-{tag}-{content_hash({**common, 'item': item, 'views': nv})}.npz"

    out: dict[str, np.ndarray] = {}
    missing = []
    for item in items:
        data = load_npz(path_of(item))
        if data is None:
            missing.append(item)
        else:
            out[item], out["labels"] = data["frames"], data["labels"]
    if not missing:
        return out
    env = make_frame_env(cfg, env_id)
    base = env.unwrapped
    size = cfg.image_size
    arrays = {
        item: np.zeros((views if item == "randomized" else 1, n, size, size, 3), np.uint8) for item in missing
    }
    labels = np.zeros((n, 2), np.float32)
    noop = np.zeros(base.action_space.shape, np.float32)
    bar = progress_bar(n, f"render {split} {'+'.join(missing)}", progress)
    try:
        for i, seed in enumerate(state_seeds(cfg, split, n)):
            obs, info = base.reset(seed=seed)
            labels[i] = info["object_xy"]
            for item in missing:
                if item == "sim":
                    arrays[item][0, i] = obs
                elif item.startswith("target:"):
                    # target-lab: test states are rendered with the family's test half of looks
                    arrays[item][0, i] = base.render_as("target", split_preset(item[len("target:") :], split))
                elif item == "randomized":
                    for k in range(views):
                        if k:
                            base.step(noop)  # LocalizeEnv: the scene stays, the randomization draw advances
                        arrays[item][k, i] = base.render_as("randomized")
                else:
                    raise ValueError(f"unknown frame item {item!r}")
            bar.update(1)
    finally:
        bar.close()
        env.close()
    for item, arr in arrays.items():
        save_npz(path_of(item), frames=arr, labels=labels)
        out[item] = arr
    out["labels"] = labels
    return out


def augment_views(cfg: "BenchmarkConfig", frames: np.ndarray, views: int, salt: int = 0) -> np.ndarray:
    """``views`` augmentations of sim frames ``[n, H, W, 3]`` (new parameters per frame) -> ``[V, n, H, W, 3]``.

    ``salt`` picks another parameter stream (the in-domain test frames use 1, training frames 0).
    """
    aug = ImageAugmenter(kinds=cfg.augment.kinds, **augment_options(cfg))
    n = frames.shape[0]
    out = np.zeros((views, *frames.shape), np.uint8)
    chunk = 256
    for k in range(views):
        for j in range(0, n, chunk):
            m = min(chunk, n - j)
            ids = list(range(m))
            aug.resample(ids, seed=[derive_seed(cfg.data_seed, 31, k, j + b, *([salt] if salt else [])) for b in ids])
            out[k, j : j + m] = aug.randomize(frames[j : j + m], env_ids=ids)
    return out


def augment_options(cfg: "BenchmarkConfig") -> dict[str, Any]:
    """``ImageAugmenter`` keyword options of the ``augment`` condition (None values: the augmenter's default)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(cfg.augment).items() if k != "kinds" and v is not None}


def style_options(cfg: "BenchmarkConfig", model: str = "teacher") -> dict[str, Any]:
    """The configured ``StyleRandomizer`` options (``stylegan:``) that apply to ``model``: the student
    renders one way (constant noise, mix 1, the bundle's keep resolution), so it takes only ``psi``."""
    names = ("psi", "mix", "keep_resolution", "noise") if model == "teacher" else ("psi",)
    opts = {k: getattr(cfg.stylegan, k) for k in names}
    return {k: v for k, v in opts.items() if v is not None}


def stylegan_views(
    cfg: "BenchmarkConfig",
    frames: np.ndarray,
    views: int,
    bundle: Path,
    cache: Path,
    split_key: str,
    progress: bool = False,
    salt: int = 0,
    model: str = "teacher",
) -> np.ndarray:
    """``views`` style randomizations of sim frames (a new style per frame), cached per bundle.

    ``salt`` picks another style stream (the in-domain test frames use 1, training frames 0);
    ``model``: the bundle's teacher (inverter + generator) or its distilled student (same styles).
    """
    key = content_hash({"v": FRAMES_VERSION, "frames": split_key, "views": views, "bundle": bundle_fingerprint(bundle),
                "opts": style_options(cfg, model), "data_seed": cfg.data_seed, **({"salt": salt} if salt else {}),
                **({"model": model} if model != "teacher" else {})})  # fmt: skip
    prefix = "stylegan" if model == "teacher" else f"stylegan-{model}"
    path = cache / "frames" / f"{prefix}-{frames.shape[0]}-{key}.npz"
    data = load_npz(path)
    if data is not None:
        return data["frames"]

    rand = StyleRandomizer.from_bundle(bundle, device=cfg.device, model=model, **style_options(cfg, model))
    n = frames.shape[0]
    chunk = max(1, min(64, rand.max_batch))
    out = np.zeros((views, *frames.shape), np.uint8)
    bar = progress_bar(views * n, "stylegan frames", progress)
    try:
        for k in range(views):
            for j in range(0, n, chunk):
                m = min(chunk, n - j)
                ids = list(range(m))
                rand.resample(ids, seed=[derive_seed(cfg.data_seed, 47, k, j + b, *([salt] if salt else [])) for b in ids], immediate=True)
                out[k, j : j + m] = rand.randomize(frames[j : j + m], env_ids=ids)
                bar.update(m)
    finally:
        bar.close()
    save_npz(path, frames=out)
    return out
