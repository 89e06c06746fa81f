"""``VecStyleRandomization``: an SB3 VecEnvWrapper that randomizes every sub-env in one batched
forward, keeps episode styles (terminal observations included), seeds styles, and trains PPO."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from domrand.wrappers.sb3 import VecStyleRandomization


class _Pixels(gym.Env):
    """64x64 frames, episodes of 3 steps; the frame's brightness is the step count."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.full((64, 64, 3), 60, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((64, 64, 3), 60 + 40 * self.t, np.uint8), float(action), self.t >= 3, False, {}


def _venv(tiny_bundle, n=3):
    venv = VecStyleRandomization(DummyVecEnv([_Pixels] * n), tiny_bundle, device="cpu")
    venv.seed(5)
    return venv


def test_styles_are_per_episode_and_terminal_observations_keep_theirs(tiny_bundle):
    venv = _venv(tiny_bundle)
    obs = venv.reset()
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    assert np.abs(obs[0].astype(int) - obs[1].astype(int)).mean() > 0.5  # sub-envs draw different styles
    styles = venv.randomizer.styles(venv.env_ids).clone()
    for _ in range(2):
        obs, _, dones, infos = venv.step(np.zeros(3, int))
        assert not dones.any()
    assert (venv.randomizer.styles(venv.env_ids) == styles).all()  # held within the episode
    obs, _, dones, infos = venv.step(np.zeros(3, int))
    assert dones.all()
    final = infos[0]["terminal_observation"]
    assert final.shape == (64, 64, 3) and final.dtype == np.uint8 and not (final == 180).all()  # randomized
    assert not (venv.randomizer.styles(venv.env_ids) == styles).all()  # the next episode has a new style
    again = _venv(tiny_bundle)
    again.reset()
    assert (again.randomizer.styles(again.env_ids) == styles).all()  # seed(5) -> the same styles


def test_ppo_trains_on_randomized_frames(tiny_bundle):
    from stable_baselines3 import PPO

    venv = _venv(tiny_bundle, n=2)
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    assert model.num_timesteps >= 16
    obs = venv.reset()
    action, _ = model.predict(obs)
    assert action.shape == (2,)
