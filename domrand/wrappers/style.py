"""``StyleRandomizationObservation``: a Gymnasium observation wrapper over ``StyleRandomizer``.

The wrapper is thin: it finds the pixels in the observation (an image ``Box``, a ``Dict`` entry, or
``env.render()``), hands them to a frame transform with this environment's id and puts the result
back. The observation space never changes.

Styles are drawn on every ``reset`` (seeded from the reset seed, so ``reset(seed=s)`` always gives
the same world) and, if asked, every ``k`` steps. The style RNG is the wrapper's own: it is seeded
from the reset seed and never draws from the wrapped env's ``np_random``, so wrapping an env does not
change its dynamics or its own randomness.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from domrand.bundle import default_bundle_path
from domrand.randomizer import StyleRandomizer

_STYLE_SALT = 0x5EED_57E1  # decorrelates style seeds from the env's own use of the same seed

ACCEPTED = "a uint8 Box of shape (H, W, 3) or (3, H, W), or a Dict holding one under pixel_key"


class FrameTransform(Protocol):
    """What the pixel wrappers drive: ``StyleRandomizer`` and ``ImageAugmenter`` both fit."""

    def allocate_env_ids(self, n: int = 1) -> list[int]: ...

    def resample(self, env_ids: Sequence[int] | None = None, seed: Any = None, immediate: bool | None = None) -> None: ...

    def randomize(self, frames: Any, env_ids: Sequence[int] | None = None, channels_first: bool | None = None) -> Any: ...


def parse_resample(resample: str | int) -> int | None:
    """``"episode"`` -> None (only on reset), ``"step"`` -> 1, an int k >= 1 -> k."""
    if resample == "episode":
        return None
    if resample == "step":
        return 1
    if isinstance(resample, (int, np.integer)) and not isinstance(resample, bool) and int(resample) >= 1:
        return int(resample)
    raise ValueError(f"resample must be 'episode', 'step' or an integer k >= 1, got {resample!r}")


def image_layout(space: spaces.Space, what: str = "observation space") -> bool:
    """Check an image ``Box``; return True when it is channel-first (3xHxW). Ambiguous -> channel-last."""
    if not isinstance(space, spaces.Box):
        raise ValueError(f"{what}: found {space}; accepted: {ACCEPTED}")
    if space.dtype != np.uint8:
        raise ValueError(f"{what}: found dtype {space.dtype} in {space}; accepted: {ACCEPTED}")
    shape = space.shape
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(f"{what}: found shape {shape} in {space} (channel count must be 3); accepted: {ACCEPTED}")
    return shape[-1] != 3  # (3, H, W) with W != 3 -> channel-first


def find_pixels(space: spaces.Space, pixel_key: str | None) -> tuple[str | None, bool]:
    """``(pixel_key or None, channels_first)`` for an observation space, or ``ValueError``."""
    if isinstance(space, spaces.Dict):
        keys = list(space.spaces)
        if pixel_key is None:
            if "pixels" not in space.spaces:
                raise ValueError(f"observation space is a Dict with keys {keys}; pass pixel_key= naming the image entry")
            pixel_key = "pixels"
        if pixel_key not in space.spaces:
            raise ValueError(f"pixel_key {pixel_key!r} not in the observation Dict; found keys {keys}")
        return pixel_key, image_layout(space.spaces[pixel_key], f"observation space[{pixel_key!r}]")
    if pixel_key is not None:
        raise ValueError(f"pixel_key={pixel_key!r} given, but the observation space is {space}, not a Dict")
    return None, image_layout(space)


def pixel_shape(space: spaces.Space, pixel_key: str | None) -> tuple[int, ...]:
    """The declared shape of the image entry of an observation space."""
    return tuple(int(s) for s in (space if pixel_key is None else space[pixel_key]).shape)


def check_frames(frames: Any, shape: tuple[int, ...], what: str = "observation") -> None:
    """Refuse an empty frame, or one whose shape differs from the declared space, in one clear line.

    ``shape``: the expected array shape (for a vector env: ``(num_envs, *single shape)``)."""
    got = tuple(int(s) for s in getattr(frames, "shape", ()))
    if not got or 0 in got:
        raise ValueError(
            f"{what}: the env returned an empty frame (shape {got}); accepted: a uint8 image of the declared shape {shape}"
        )
    if got != shape:
        raise ValueError(
            f"{what}: the env returned a frame of shape {got}, but its observation space declares {shape}; "
            "make the env render at its declared size (or declare the size it renders)"
        )


def resample_envs(transform: FrameTransform, env_ids: Sequence[int], rngs: Sequence[np.random.Generator], mask: np.ndarray,
                  immediate: bool) -> None:  # fmt: skip
    """New styles for the sub-envs where ``mask`` is true, each seeded from its own style stream ``rngs[i]``."""
    idx = np.flatnonzero(mask)
    if idx.size:
        seeds = [int(rngs[i].integers(2**63)) for i in idx]
        transform.resample([env_ids[i] for i in idx], seed=seeds, immediate=immediate)


def render_env(env: gym.Env) -> gym.Env:
    """Make ``env.render()`` (rgb_array) the observation, like ``AddRenderObservation(render_only=True)``."""
    mode = getattr(env, "render_mode", None)
    if mode != "rgb_array":
        raise ValueError(
            f"from_render=True needs an env made with render_mode='rgb_array'; found render_mode={mode!r}"
        )
    from gymnasium.wrappers import AddRenderObservation

    try:
        return AddRenderObservation(env, render_only=True)
    except TypeError as exc:  # render() returned something that is not an image array
        raise ValueError(f"from_render=True: env.render() did not return an rgb array ({exc})") from None


class PixelTransformObservation(gym.ObservationWrapper):
    """Base of the single-env pixel wrappers: validation, pixel routing, resample schedule, seeding.

    Controls (as in robosuite's domain-randomization wrapper): ``enabled`` (False passes
    observations through untouched), ``frozen`` (True keeps the current style across resets and
    steps), ``randomize_domain(seed=None)`` draws a new style now, and ``info["style_seed"]`` (at
    reset and step) is the seed of the style in use, so any frame can be reproduced.
    """

    def __init__(
        self,
        env: gym.Env,
        transform: FrameTransform,  # StyleRandomizer, ImageAugmenter, ... (see FrameTransform)
        pixel_key: str | None = None,  # Dict observations: the image entry (default "pixels")
        from_render: bool = False,  # use env.render() (rgb_array) as the observation
        resample: str | int = "episode",  # "episode" | "step" | k: when to draw a new style
        render_randomized: bool = False,  # render() returns the last randomized frame (so RecordVideo records what the policy sees)
        randomize_on_reset: bool = True,  # robosuite's name: False keeps the style across resets (the schedule still applies)
        randomize_every_n_steps: int | None = None,  # robosuite's name for resample=k
    ):
        if randomize_every_n_steps is not None:
            if resample != "episode":
                raise ValueError("give resample= or randomize_every_n_steps=, not both (randomize_every_n_steps=k is resample=k)")
            resample = int(randomize_every_n_steps)
        if from_render:
            env = render_env(env)
        super().__init__(env)
        self.render_randomized = bool(render_randomized)
        self.randomize_on_reset = bool(randomize_on_reset)
        self._last_frame: Any = None
        self.pixel_key, self.channels_first = find_pixels(env.observation_space, pixel_key)
        self.frame_shape = pixel_shape(env.observation_space, self.pixel_key)
        self.resample_every = parse_resample(resample)
        self.transform = transform
        (self.env_id,) = transform.allocate_env_ids(1)
        self._style_rng = np.random.default_rng()
        self._steps = 0
        self.enabled = True  # False: observations pass through unchanged
        self.frozen = False  # True: no new style on reset or by the schedule (randomize_domain still draws)
        self.style_seed: int | None = None  # the seed of the current style

    def _resample(self, immediate: bool, seed: int | None = None) -> None:
        self.style_seed = int(self._style_rng.integers(2**63)) if seed is None else int(seed)
        self.transform.resample([self.env_id], seed=[self.style_seed], immediate=immediate)

    def randomize_domain(self, seed: int | None = None) -> int:
        """Draw a new style now (from ``seed`` if given, else the wrapper's seeded stream); returns its seed."""
        self._resample(immediate=True, seed=seed)
        return int(self.style_seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._style_rng = np.random.default_rng([int(seed), _STYLE_SALT])
        if (not self.frozen and self.randomize_on_reset) or self.style_seed is None:
            self._resample(immediate=True)
        self._steps = 0
        return self.observation(obs), {**info, "style_seed": self.style_seed}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if not self.frozen and self.resample_every is not None and self._steps % self.resample_every == 0:
            self._resample(immediate=False)
        return self.observation(obs), reward, terminated, truncated, {**info, "style_seed": self.style_seed}

    def observation(self, observation: Any) -> Any:
        if not self.enabled:
            self._last_frame = observation if self.pixel_key is None else observation[self.pixel_key]
            return observation
        if self.pixel_key is None:
            check_frames(observation, self.frame_shape)
            self._last_frame = self.transform.randomize(observation, [self.env_id], channels_first=self.channels_first)
            return self._last_frame
        check_frames(observation[self.pixel_key], self.frame_shape, f"observation[{self.pixel_key!r}]")
        out = dict(observation)
        out[self.pixel_key] = self.transform.randomize(
            observation[self.pixel_key], [self.env_id], channels_first=self.channels_first
        )
        self._last_frame = out[self.pixel_key]
        return type(observation)(out) if isinstance(observation, dict) else out

    @property
    def render_mode(self) -> str | None:
        return "rgb_array" if self.render_randomized else self.env.render_mode

    def render(self) -> Any:
        """With ``render_randomized``: the last (randomized) frame, channel-last, as RecordVideo wants;
        else the wrapped env's own ``render()``."""
        if not self.render_randomized:
            return self.env.render()
        if self._last_frame is None:
            raise RuntimeError("render_randomized: no frame yet; call reset() first")
        frame = np.asarray(self._last_frame)
        return frame.transpose(1, 2, 0) if self.channels_first else frame


def set_threads(threads: int | None) -> None:
    """``threads``: torch's CPU threads for this process (``None``: leave the current setting).

    Process-wide (it also applies to a policy trained in the same process). On a shared 2-core
    machine one thread ran the randomizer 3-11x faster than PyTorch's default (docs/benchmarks.md).
    """
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")
    import torch

    torch.set_num_threads(threads)


def make_randomizer(randomizer_or_bundle: Any, device: str = "auto", threads: int | None = None, **options: Any):
    """A ``StyleRandomizer`` from an instance (returned as is), a bundle path, or None (packaged bundle).

    ``threads`` sets torch's CPU threads first (see ``set_threads``)."""
    set_threads(threads)

    if isinstance(randomizer_or_bundle, StyleRandomizer):
        if options:
            raise TypeError(
                f"randomizer options {sorted(options)} only apply when a bundle path is given; "
                "set them on the StyleRandomizer instead"
            )
        return randomizer_or_bundle
    if randomizer_or_bundle is None:
        randomizer_or_bundle = default_bundle_path()
    if isinstance(randomizer_or_bundle, (str, os.PathLike)):
        return StyleRandomizer.from_bundle(randomizer_or_bundle, device=device, **options)
    raise TypeError(
        f"randomizer_or_bundle: expected a StyleRandomizer, a bundle path or None, got {type(randomizer_or_bundle).__name__}"
    )


class StyleRandomizationObservation(PixelTransformObservation, gym.utils.RecordConstructorArgs):
    """Re-render an env's pixel observations through a StyleGAN2 generator (``StyleRandomizer``).

    Example::

        env = gymnasium.make("domrand/Reach-v0", obs_mode="pixels")
        env = StyleRandomizationObservation(env, "path/to/bundle", psi=0.7)

    env: observations are a uint8 image ``Box`` (HxWx3 or 3xHxW) or a ``Dict`` holding one under
    ``pixel_key``; or any env with ``render_mode="rgb_array"`` and ``from_render=True``, in which case
    the observation becomes the (randomized) rendered frame, as with
    ``AddRenderObservation(render_only=True)``.
    randomizer_or_bundle: a ``StyleRandomizer`` (may be shared by several wrappers; each takes its own
    environment id), a bundle folder/file, or None for the bundle packaged with domrand.
    resample: ``"episode"`` (new style on every reset, seeded from the reset seed), ``"step"``, or k
    (also every k steps; with ``drift_steps`` the style glides there instead of jumping).
    threads: torch's CPU threads for this process (``None``, the default, leaves them; 1 is the
    fastest on a busy machine; the setting is process-wide).
    randomizer_options: ``StyleRandomizer`` keywords (``psi``, ``mix``, ``keep_resolution``, ...)
    when a bundle path is given.

    ``env.render()`` shows the unrandomized frame unless ``render_randomized=True``, with which it
    returns the last randomized frame (``RecordVideo`` then records what the policy sees).
    """

    def __init__(
        self,
        env: gym.Env,
        randomizer_or_bundle: Any = None,
        pixel_key: str | None = None,
        from_render: bool = False,
        resample: str | int = "episode",
        device: str = "auto",
        threads: int | None = None,
        render_randomized: bool = False,
        randomize_on_reset: bool = True,
        randomize_every_n_steps: int | None = None,
        **randomizer_options: Any,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            randomizer_or_bundle=randomizer_or_bundle,
            pixel_key=pixel_key,
            from_render=from_render,
            resample=resample,
            device=device,
            threads=threads,
            render_randomized=render_randomized,
            randomize_on_reset=randomize_on_reset,
            randomize_every_n_steps=randomize_every_n_steps,
            **randomizer_options,
        )
        randomizer = make_randomizer(randomizer_or_bundle, device=device, threads=threads, **randomizer_options)
        PixelTransformObservation.__init__(
            self, env, randomizer, pixel_key=pixel_key, from_render=from_render, resample=resample,
            render_randomized=render_randomized, randomize_on_reset=randomize_on_reset,
            randomize_every_n_steps=randomize_every_n_steps,
        )  # fmt: skip
        self.randomizer = randomizer
