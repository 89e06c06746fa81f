"""``domrand collect``: frames from any registered Gymnasium env, to train a bundle for that env.

Example (a classic-control env has no pixel observation: its ``render()`` is used)::

    domrand collect --env CartPole-v1 --n 4000 --out data/cartpole_sim --size 64
    domrand collect --env PandaReach-v3 --env-kwargs '{"render_mode": "rgb_array"}' --n 4000 --out data/panda

Frame source (``--source auto``): a pixel observation (a ``Box`` shaped ``H x W x 3`` or
``3 x H x W``), else the one image entry of a ``Dict`` observation (``--obs-key`` picks one), else
``env.render()`` with ``render_mode="rgb_array"``. Frames are fitted to ``--size`` squares with
``--fit`` (``pad`` keeps the aspect ratio, the default; ``crop``; ``stretch``; see
``domrand.frames``).

Policy: ``random`` (the action space's ``sample``, seeded), ``expert`` (the scripted expert of the
domrand envs) or ``MODULE:FUNCTION``, called as ``FUNCTION(env, obs) -> action``.

Writes ``DIR/frames/000000.png ...``, ``DIR/index.csv`` (frame, episode, step) and
``DIR/manifest.json`` (env, kwargs, policy, source, sizes, seed, counts, command): the folder is
``--sim-data`` or ``--target-data`` of ``train-generator`` / ``train-inverter`` / ``train-pair``.
"""

from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from domrand.envs.experts import expert_action
from domrand.frames import FIT_MODES, fit_frames


def _image_shape(space: Any) -> bool:
    shape = getattr(space, "shape", None)
    return shape is not None and len(shape) == 3 and (shape[-1] == 3 or shape[0] == 3) and min(shape[:2] if shape[-1] == 3 else shape[1:]) >= 8


def frame_source(env: Any, obs_key: str | None = None) -> tuple[str, str | None]:
    """``("obs", None)``, ``("obs", key)`` or ``("render", None)``: where an env's frames come from."""
    space = env.observation_space
    if obs_key is not None:
        if not isinstance(space, spaces.Dict) or obs_key not in space.spaces:
            keys = list(space.spaces) if isinstance(space, spaces.Dict) else []
            raise ValueError(f"--obs-key {obs_key!r}: the observation is not a Dict with that key (keys: {keys or 'none, not a Dict'})")
        if not _image_shape(space.spaces[obs_key]):
            raise ValueError(f"--obs-key {obs_key!r}: shape {space.spaces[obs_key].shape} is not an image (H x W x 3 or 3 x H x W)")
        return "obs", obs_key
    if isinstance(space, spaces.Box) and _image_shape(space):
        return "obs", None
    if isinstance(space, spaces.Dict):
        images = [k for k, s in space.spaces.items() if _image_shape(s)]
        if len(images) == 1:
            return "obs", images[0]
        if len(images) > 1:
            raise ValueError(f"the Dict observation has several image entries {images}; pick one with --obs-key")
    return "render", None


def to_hwc_uint8(frame: Any, where: str) -> np.ndarray:
    """An RGB frame ``H x W x 3`` or ``3 x H x W`` (uint8, or float in [0, 1] / [0, 255]) -> uint8 ``H x W x 3``."""
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"{where}: expected an RGB frame H x W x 3 (or 3 x H x W), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        a = a.clip(0, 255).round().astype(np.uint8)
    return a


def load_policy(spec: str, env: Any) -> Callable[[Any, Any], Any]:
    """``random`` | ``expert`` | ``MODULE:FUNCTION`` -> ``policy(env, obs) -> action``."""
    if spec == "random":
        return lambda e, obs: e.action_space.sample()
    if spec == "expert":
        if not str(getattr(env.spec, "id", "")).startswith("domrand/"):
            raise ValueError(f"--policy expert: scripted experts exist for the domrand envs only, not {env.spec.id}; use random or MODULE:FUNCTION")
        return lambda e, obs: expert_action(e.unwrapped)
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"--policy: expected random, expert or MODULE:FUNCTION, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--policy {spec}: cannot load it ({exc})") from None
    if not callable(fn):
        raise ValueError(f"--policy {spec}: {name} is not callable")
    return fn


def make_env(env_id: str, kwargs: dict[str, Any], obs_key: str | None, source: str = "auto") -> tuple[Any, str, str | None]:
    """The env plus its frame source; ``render`` sources get ``render_mode="rgb_array"`` unless set."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise ValueError(f"--env {env_id}: {exc}") from None
    kind, key = frame_source(env, obs_key) if source == "auto" else (source, obs_key)
    if kind == "obs" and source == "obs" and key is None and not _image_shape(env.observation_space):
        raise ValueError(f"--source obs: the observation space {env.observation_space} is not an image; use --source render")
    if kind == "render" and env.render_mode != "rgb_array":
        if "render_mode" in kwargs:
            raise ValueError(f"frames come from render(), which needs render_mode='rgb_array'; --env-kwargs sets {kwargs['render_mode']!r}")
        env.close()
        env = gym.make(env_id, **kwargs, render_mode="rgb_array")
    return env, kind, key


def collect(
    env_id: str,
    n: int,
    out: str | Path,
    *,
    env_kwargs: dict[str, Any] | None = None,
    policy: str = "random",
    size: int = 64,
    fit: str = "pad",
    seed: int = 0,
    every: int = 1,
    obs_key: str | None = None,
    source: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``n`` frames of ``env_id`` to ``out`` (see the module docstring); returns the manifest."""
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a collection (manifest.json); choose another --out or pass --overwrite")
    if fit not in FIT_MODES:
        raise ValueError(f"--fit must be one of {', '.join(FIT_MODES)}, got {fit!r}")
    env, kind, key = make_env(env_id, dict(env_kwargs or {}), obs_key, source)
    act = load_policy(policy, env)
    env.action_space.seed(seed)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int, int]] = []
    episode, step = 0, 0
    obs, _ = env.reset(seed=seed)
    original: tuple[int, ...] | None = None
    bar = tqdm(total=n, unit="frame", disable=not progress, desc=f"collect {env_id}")
    try:
        while len(rows) < n:
            if step % every == 0:
                raw = (obs[key] if key is not None else obs) if kind == "obs" else env.render()
                frame = to_hwc_uint8(raw, f"{env_id} {'render()' if kind == 'render' else 'observation'}")
                original = original or frame.shape[:2]
                name = f"frames/{len(rows):06d}.png"
                img = fit_frames(frame[None], size, fit)[0]
                if not cv2.imwrite(str(out / name), np.ascontiguousarray(img[..., ::-1])):
                    raise OSError(f"cannot write {out / name}")
                rows.append((name, episode, step))
                bar.update(1)
            obs, _, terminated, truncated, _ = env.step(act(env, obs))
            step += 1
            if terminated or truncated:
                obs, _ = env.reset()
                episode, step = episode + 1, 0
    finally:
        bar.close()
        env.close()
    with open(out / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "episode", "step"])
        w.writerows(rows)
    manifest = {"env": env_id, "env_kwargs": env_kwargs or {}, "policy": policy, "source": kind, "obs_key": key,
                "n": n, "episodes": episode + 1, "seed": seed, "every": every, "size": size, "fit": fit,
                "original_size": list(original or ()), "command": "domrand " + " ".join(sys.argv[1:])}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
