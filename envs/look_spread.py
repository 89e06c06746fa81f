"""How much a target domain's look varies across episodes: the frame-mean colour spread.

Measured by ``python scripts/look_spread.py --presets target-a target-lab --episodes 200``.
"""

from __future__ import annotations


import numpy as np


def frame_mean_colour_spread(frames: np.ndarray) -> float:
    """Frame-mean colour spread of ``frames`` (uint8 ``[N, H, W, 3]``, one frame per episode), in /255.

    Each frame's mean R, G and B (0..255); per channel the standard deviation of those means across
    the N frames (population std, ``ddof=0``); the result is the average of the three channel stds.
    A domain whose every episode looks alike scores near the spread due to the states alone (arm and
    object positions); a camera over a day scores far higher.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"frames must be [N >= 2, H, W, 3], got shape {frames.shape}")
    means = frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)  # [N, 3]
    return float(means.std(axis=0).mean())


def episode_frames(
    preset: str,
    episodes: int = 200,
    env_id: str = "domrand/Reach-v0",
    image_size: int = 64,
    seed: int = 0,
    renderer: str = "tiny",
) -> np.ndarray:
    """The first frame of ``episodes`` episodes (reset seeds ``seed .. seed + episodes - 1``) in
    target preset ``preset`` (or ``"sim"``), uint8 ``[episodes, S, S, 3]``."""
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)

    domain = "sim" if preset == "sim" else "target"
    kwargs = {} if preset == "sim" else {"target_preset": preset}
    env = gym.make(env_id, visual_domain=domain, image_size=image_size, renderer=renderer, **kwargs)
    try:
        out = np.stack([env.reset(seed=seed + i)[0] for i in range(episodes)])
    finally:
        env.close()
    return out
