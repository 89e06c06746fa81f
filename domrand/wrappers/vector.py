"""``VectorStyleRandomization``: all sub-environments' frames in one batched forward.

Works with Gymnasium vector envs in ``NEXT_STEP`` autoreset mode (the default; an env that ended on
step t is reset on step t+1, and exactly those sub-environments get a new style on that step) and in
``DISABLED`` mode (styles change on ``reset``, including partial resets with
``options={"reset_mask": mask}``). ``VectorObservationWrapper`` itself rejects ``SAME_STEP``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorObservationWrapper

from domrand.wrappers.style import (
    _STYLE_SALT,
    FrameTransform,
    check_frames,
    find_pixels,
    make_randomizer,
    parse_resample,
    pixel_shape,
    resample_envs,
)


class VectorPixelTransform(VectorObservationWrapper):
    """Base of the vector pixel wrappers: one batched ``transform.randomize`` per step."""

    def __init__(
        self,
        env: VectorEnv,
        transform: FrameTransform,  # StyleRandomizer, ImageAugmenter, ...
        pixel_key: str | None = None,  # Dict observations: the image entry (default "pixels")
        resample: str | int = "episode",  # "episode" | "step" | k
        from_render: bool = False,  # the sub-envs' render() frames (rgb_array) become the observations
    ):
        super().__init__(env)
        self.from_render = bool(from_render)
        if self.from_render:
            if pixel_key is not None:
                raise ValueError("from_render=True replaces the observation with the rendered frame; pixel_key does not apply")
            self._use_render_space(env)
        self.pixel_key, self.channels_first = find_pixels(self.single_observation_space, pixel_key)
        self.frame_shape = (int(env.num_envs), *pixel_shape(self.single_observation_space, self.pixel_key))
        self.resample_every = parse_resample(resample)
        self.transform = transform
        self.env_ids = transform.allocate_env_ids(self.num_envs)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._pending_reset = np.zeros(self.num_envs, dtype=bool)
        self.last_resampled = np.zeros(self.num_envs, dtype=bool)  # which sub-envs got a new style last call

    def _use_render_space(self, env: VectorEnv) -> None:
        """Observation spaces of the rendered frames (one reset and render() to learn their size, as
        Gymnasium's single-env ``AddRenderObservation`` does)."""
        from gymnasium import spaces
        from gymnasium.vector.utils import batch_space

        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(f"from_render=True needs a vector env made with render_mode='rgb_array'; found {getattr(env, 'render_mode', None)!r}")
        env.reset()
        frames = self._rendered()
        self.single_observation_space = spaces.Box(0, 255, frames.shape[1:], np.uint8)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def _rendered(self) -> np.ndarray:
        frames = self.env.render()
        try:
            return np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"from_render=True: the vector env's render() did not return one rgb array per sub-env ({exc})") from None

    def _resample(self, mask: np.ndarray, immediate: bool) -> None:
        resample_envs(self.transform, self.env_ids, self._rngs, mask, immediate)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
            for i, s in enumerate(seeds):
                if s is not None and mask[i]:
                    self._rngs[i] = np.random.default_rng([int(s), _STYLE_SALT])
        self._resample(mask, immediate=True)
        self._steps[mask] = 0
        self._pending_reset[mask] = False
        self.last_resampled = mask.copy()
        return self.observations(obs), info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            reset_now = self._pending_reset
            self._pending_reset = np.logical_or(terminations, truncations)
        else:  # DISABLED: the user resets explicitly
            reset_now = np.zeros(self.num_envs, dtype=bool)
        self._steps = np.where(reset_now, 0, self._steps + 1)
        periodic = np.zeros(self.num_envs, dtype=bool)
        if self.resample_every is not None:
            periodic = ~reset_now & (self._steps > 0) & (self._steps % self.resample_every == 0)
        self._resample(reset_now, immediate=True)
        self._resample(periodic, immediate=False)
        self.last_resampled = reset_now | periodic
        return self.observations(obs), rewards, terminations, truncations, infos

    def observations(self, observations: Any) -> Any:
        if self.from_render:
            observations = self._rendered()
        if self.pixel_key is None:
            check_frames(observations, self.frame_shape, "observations")
            return self.transform.randomize(observations, self.env_ids, channels_first=self.channels_first)
        check_frames(observations[self.pixel_key], self.frame_shape, f"observations[{self.pixel_key!r}]")
        out = dict(observations)
        out[self.pixel_key] = self.transform.randomize(
            observations[self.pixel_key], self.env_ids, channels_first=self.channels_first
        )
        return type(observations)(out) if isinstance(observations, dict) else out


class VectorStyleRandomization(VectorPixelTransform):
    """Vector version of ``StyleRandomizationObservation``: one batched randomizer forward per step.

    vector_env: a Gymnasium ``VectorEnv`` whose single observation space is a uint8 image ``Box`` or a
    ``Dict`` with one under ``pixel_key``; or, with ``from_render=True``, any vector env made with
    ``render_mode="rgb_array"`` (e.g. ``gymnasium.make_vec("CartPole-v1", 4, render_mode="rgb_array")``),
    whose rendered frames then become the observations. Sub-environments that auto-reset (and only those) get a new
    style, seeded per sub-env from the ``reset`` seed (``seed + i``, like the vector env itself).
    """

    def __init__(
        self,
        vector_env: VectorEnv,
        randomizer_or_bundle: Any = None,
        pixel_key: str | None = None,
        resample: str | int = "episode",
        device: str = "auto",
        threads: int | None = None,  # torch CPU threads for this process (None: unchanged)
        from_render: bool = False,  # sub-envs made with render_mode="rgb_array": their rendered frames become the observations
        **randomizer_options: Any,
    ):
        randomizer = make_randomizer(randomizer_or_bundle, device=device, threads=threads, **randomizer_options)
        super().__init__(vector_env, randomizer, pixel_key=pixel_key, resample=resample, from_render=from_render)
        self.randomizer = randomizer
