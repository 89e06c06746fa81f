"""``VectorStyleRandomization`` over ``gymnasium.vector.AsyncVectorEnv``: sub-environments step in
their own processes, the randomizer runs once per step, batched, in this process (issue 10)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

import domrand  # noqa: F401  (registers the envs)
from domrand.wrappers.vector import VectorStyleRandomization


def _make(max_steps: int):
    def thunk():
        import domrand  # noqa: F401  (a spawned worker registers the envs itself)

        return gym.make("domrand/Reach-v0", obs_mode="pixels", visual_domain="sim", image_size=32, max_episode_steps=max_steps)

    return thunk


def _run(vec_cls, bundle, steps: int, **kw):
    fns = [_make(3), _make(50)]  # sub-env 0 is truncated after 3 steps, sub-env 1 never here
    env = VectorStyleRandomization(vec_cls(fns, **kw), str(bundle), device="cpu", seed=0)
    try:
        obs, _ = env.reset(seed=11)
        frames, resampled = [obs], [env.last_resampled.copy()]
        actions = np.zeros((2, *env.single_action_space.shape), dtype=env.single_action_space.dtype)
        for _ in range(steps):
            obs, _, term, trunc, _ = env.step(actions)
            frames.append(obs)
            resampled.append(env.last_resampled.copy())
    finally:
        env.close()
    return np.stack(frames), np.stack(resampled)


def test_async_vector_env_matches_sync_and_resamples_only_reset_envs(tiny_bundle) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sync_frames, sync_resampled = _run(gym.vector.SyncVectorEnv, tiny_bundle, 5)
        async_frames, async_resampled = _run(gym.vector.AsyncVectorEnv, tiny_bundle, 5, context="spawn")
    finally:
        torch.set_num_threads(threads)
    assert async_frames.shape == (6, 2, 32, 32, 3) and async_frames.dtype == np.uint8
    # reset: both; steps 1-3: nobody; step 4: sub-env 0 auto-resets (truncated at step 3); step 5: nobody.
    expected = np.array([[1, 1], [0, 0], [0, 0], [0, 0], [1, 0], [0, 0]], dtype=bool)
    assert np.array_equal(async_resampled, expected)
    assert np.array_equal(sync_resampled, expected)
    # Workers in their own processes change nothing: the same frames as the in-process vector env.
    assert np.array_equal(async_frames, sync_frames)


def test_bench_vector_smoke(tmp_path, capsys) -> None:
    from domrand.cli import main

    threads = torch.get_num_threads()
    try:
        argv = ["bench", "vector", "--generator", "tiny", "--inverter", "tiny", "--image-size", "32", "--workers", "1", "2",
                "--steps", "3", "--repeats", "1", "--warmup", "1", "--out", str(tmp_path / "t.md")]  # fmt: skip
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    table = (tmp_path / "t.md").read_text()
    assert table.count("| AsyncVectorEnv |") == 2 and table.count("| SyncVectorEnv |") == 2
    assert "randomizer ms/step" in table and "frames/s" in capsys.readouterr().out
