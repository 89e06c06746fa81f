"""``VecStyleRandomization``: a Stable-Baselines3 ``VecEnvWrapper`` (needs the ``rl`` extra).

All sub-envs of a ``DummyVecEnv`` / ``SubprocVecEnv`` are randomized in one batched randomizer
forward in the main process (the subprocesses only step their envs)::

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    venv = make_vec_env("domrand/Reach-v0", n_envs=8, env_kwargs={"obs_mode": "pixels"})
    venv = VecStyleRandomization(venv, "my_bundle")
    PPO("CnnPolicy", venv).learn(100_000)

Styles follow SB3's episode boundaries: a sub-env that is done gets a new style for the first frame
of its next episode; ``infos[i]["terminal_observation"]`` is randomized with the style of the
episode it ends. ``venv.seed(s)`` seeds sub-env i's style stream from ``(s + i)``, so a seeded run
draws the same styles every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domrand.wrappers.style import (
    _STYLE_SALT,
    check_frames,
    find_pixels,
    make_randomizer,
    parse_resample,
    pixel_shape,
    resample_envs,
)

try:
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("VecStyleRandomization needs stable-baselines3: pip install 'domrand[rl]'") from exc


class VecStyleRandomization(VecEnvWrapper):
    """Randomize the image observations of an SB3 ``VecEnv`` (uint8 ``HxWx3`` / ``3xHxW`` Box, or a
    ``Dict`` entry named by ``pixel_key``) with a ``StyleRandomizer``; the observation space is unchanged.

    resample: ``"episode"`` (a new style per episode), ``"step"`` or k (also every k steps).
    randomizer_options: ``StyleRandomizer`` keywords when a bundle path is given.
    """

    def __init__(
        self,
        venv: VecEnv,
        randomizer_or_bundle: Any = None,
        pixel_key: str | None = None,
        resample: str | int = "episode",
        device: str = "auto",
        threads: int | None = None,
        **randomizer_options: Any,
    ):
        super().__init__(venv)
        self.pixel_key, self.channels_first = find_pixels(venv.observation_space, pixel_key)
        self.frame_shape = (int(venv.num_envs), *pixel_shape(venv.observation_space, self.pixel_key))
        self.resample_every = parse_resample(resample)
        self.randomizer = make_randomizer(randomizer_or_bundle, device=device, threads=threads, **randomizer_options)
        self.env_ids = self.randomizer.allocate_env_ids(self.num_envs)
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._steps = np.zeros(self.num_envs, dtype=np.int64)

    def seed(self, seed: int | None = None) -> Any:
        if seed is not None:
            self._rngs = [np.random.default_rng([int(seed) + i, _STYLE_SALT]) for i in range(self.num_envs)]
        return self.venv.seed(seed)

    def _randomize(self, obs: Any, ids: list[int]) -> Any:
        if self.pixel_key is None:
            return self.randomizer.randomize(obs, ids, channels_first=self.channels_first)
        out = dict(obs)
        out[self.pixel_key] = self.randomizer.randomize(obs[self.pixel_key], ids, channels_first=self.channels_first)
        return out

    def _checked(self, obs: Any) -> Any:
        frames = obs if self.pixel_key is None else obs[self.pixel_key]
        check_frames(frames, self.frame_shape, "observations" if self.pixel_key is None else f"observations[{self.pixel_key!r}]")
        return self._randomize(obs, self.env_ids)

    def reset(self) -> Any:
        obs = self.venv.reset()
        resample_envs(self.randomizer, self.env_ids, self._rngs, np.ones(self.num_envs, dtype=bool), immediate=True)
        self._steps[:] = 0
        return self._checked(obs)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict]]:
        obs, rewards, dones, infos = self.venv.step_wait()
        dones = np.asarray(dones, dtype=bool)
        ended = [i for i in np.flatnonzero(dones) if "terminal_observation" in infos[i]]
        if ended:  # the last frame of an episode keeps that episode's style
            if self.pixel_key is None:
                finals = np.stack([infos[i]["terminal_observation"] for i in ended])
            else:
                finals = {self.pixel_key: np.stack([infos[i]["terminal_observation"][self.pixel_key] for i in ended])}
            out = self._randomize(finals, [self.env_ids[i] for i in ended])
            for j, i in enumerate(ended):
                if self.pixel_key is None:
                    infos[i]["terminal_observation"] = out[j]
                else:
                    infos[i]["terminal_observation"] = {**infos[i]["terminal_observation"], self.pixel_key: out[self.pixel_key][j]}
        self._steps = np.where(dones, 0, self._steps + 1)
        periodic = np.zeros(self.num_envs, dtype=bool)
        if self.resample_every is not None:
            periodic = ~dones & (self._steps % self.resample_every == 0)
        resample_envs(self.randomizer, self.env_ids, self._rngs, dones | periodic, immediate=True)
        return self._checked(obs), rewards, dones, infos
