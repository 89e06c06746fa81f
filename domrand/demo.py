"""The demo (``domrand demo``): run an env with its scripted expert, randomize its frames, write pictures.

Without ``--bundle`` it uses the bundled default model (``domrand/assets/bundle/``); if none is
installed it stops with a message that says so and how to make one.

Writes ``<out>/grid.png`` (rows: sim frame, reconstruction, several randomizations of the same
frames) and ``<out>/episode.gif`` (sim | randomized side by side, one style per episode),
then prints where they are, the frames/s achieved and how to use the wrapper in code.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from domrand.bundle import default_bundle_path
from domrand.envs.experts import expert_action
from domrand.randomizer import StyleRandomizer
from domrand.utils import atomic_path, atomic_write_bytes, resolve_device

UPSCALE = 2  # pixels are shown 2x (nearest) so 64x64 frames are legible
LABEL_WIDTH = 92


def record_frames(env_id: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` sim-domain frames uint8 ``[steps, H, W, 3]`` of expert episodes, and the episode
    index of each frame ``[steps]`` (a finished episode is followed by a fresh reset)."""
    env = gym.make(env_id, obs_mode="pixels", visual_domain="sim")
    frames, episodes, episode = [], [], 0
    try:
        obs, _ = env.reset(seed=seed)
        while len(frames) < steps:
            frames.append(obs)
            episodes.append(episode)
            obs, _, terminated, truncated, _ = env.step(expert_action(env))
            if terminated or truncated:
                frames.append(obs)
                episodes.append(episode)
                episode += 1
                obs, _ = env.reset()
    finally:
        env.close()
    return np.stack(frames[:steps]), np.asarray(episodes[:steps])


def _label(row: np.ndarray, text: str) -> np.ndarray:
    pad = np.full((row.shape[0], LABEL_WIDTH, 3), 255, np.uint8)
    cv2.putText(pad, text, (4, row.shape[0] // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([pad, row], axis=1)


def _row(frames: np.ndarray) -> np.ndarray:
    big = [cv2.resize(f, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_NEAREST) for f in frames]
    gap = np.full((big[0].shape[0], 2, 3), 255, np.uint8)
    parts = []
    for b in big:
        parts += [b, gap]
    return np.concatenate(parts[:-1], axis=1)


def make_grid(rows: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Labelled rows of frames ``[K, H, W, 3]`` -> one uint8 RGB picture."""
    out = []
    for label, frames in rows:
        row = _label(_row(frames), label)
        out += [row, np.full((2, row.shape[1], 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def write_gif(path: Path, left: list[np.ndarray], right: list[np.ndarray], fps: int = 10) -> None:
    """Side-by-side GIF of two equally long frame sequences."""
    pics = [Image.fromarray(_row(np.stack([a, b]))) for a, b in zip(left, right)]
    with atomic_path(path) as tmp:
        pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=int(1000 / fps), loop=0)


def run_demo(
    env_id: str = "domrand/Reach-v0",
    out: str | Path = "demo",
    steps: int = 40,
    device: str = "auto",
    threads: int | None = 1,
    bundle: str | Path | None = None,
    styles: int = 4,
    columns: int = 5,
    seed: int = 0,
) -> dict[str, Path]:
    """Record ``steps`` expert frames of ``env_id``, randomize them with ``bundle`` (default: the
    bundled model) and write ``out/grid.png`` and ``out/episode.gif``; prints a summary. Returns
    the paths written (``{"grid": ..., "gif": ...}``)."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    bundle_path = Path(bundle) if bundle else default_bundle_path()
    if steps < 2:
        raise ValueError(f"--steps must be at least 2, got {steps}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; accepted: a folder (created when missing)")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    frames, episodes = record_frames(env_id, steps, seed)
    t_env = time.perf_counter() - t0
    R = StyleRandomizer.from_bundle(bundle_path, device=device, seed=seed)

    # Episodes: one style per episode (env id = 100 + episode index), held for all its frames.
    ids = [100 + int(e) for e in episodes]
    R.resample(sorted(set(ids)), seed=seed)
    t0 = time.perf_counter()
    randomized = R.randomize(frames, env_ids=ids)
    t_rand = time.perf_counter() - t0

    # Grid: the same few frames, reconstructed (own fine styles) and under several styles.
    cols = np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)
    picked = frames[cols]
    mix, noise = R.mix, R.noise
    R.mix, R.noise = 0.0, "const"
    R.resample([0], seed=seed)
    recon = R.randomize(picked, env_ids=[0] * len(picked))
    R.mix, R.noise = mix, noise
    rows = [("sim", picked), ("reconstruction", recon)]
    for k in range(styles):
        style_id = 1 + k
        R.resample([style_id], seed=seed * 1000 + style_id)
        rows.append((f"style {k + 1}", R.randomize(picked, env_ids=[style_id] * len(picked))))
    grid = make_grid(rows)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 failing to encode a uint8 image
        raise RuntimeError("could not encode grid.png")
    atomic_write_bytes(out / "grid.png", png.tobytes())
    write_gif(out / "episode.gif", list(frames), list(randomized))

    fps = len(frames) / max(t_rand, 1e-9)
    print(
        f"wrote {out / 'grid.png'} ({grid.shape[1]}x{grid.shape[0]}) and {out / 'episode.gif'} "
        f"({len(frames)} frames, {int(episodes[-1]) + 1} episodes, one style each)"
    )
    print(f"bundle: {bundle_path}")
    print(f"env: {env_id}, {len(frames)} steps in {t_env:.1f}s; randomizer: {fps:.1f} frames/s on {device} (batch {len(frames)})")
    print("use it in code:")
    print("    import gymnasium as gym, domrand")
    print("    from domrand.wrappers import StyleRandomizationObservation")
    where = "" if bundle is None else f", {str(bundle_path)!r}"  # no argument = the bundled model
    print(f"    env = StyleRandomizationObservation(gym.make({env_id!r}, obs_mode='pixels'){where})")
    return {"grid": out / "grid.png", "gif": out / "episode.gif"}
