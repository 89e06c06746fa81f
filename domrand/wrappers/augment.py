"""Classic image-augmentation baselines (RAD / DrAC style) in the same form as the style wrapper.

``ImageAugmenter`` has the ``StyleRandomizer`` frame interface (``randomize``, ``resample``,
``allocate_env_ids``) with per-environment parameters held between resamples, so the baselines use
exactly the same wrappers, resample schedule and seeding as the StyleGAN randomization:

* ``color_jitter``: brightness, contrast, saturation and hue shift;
* ``random_conv``: a random 3x3 convolution (3 -> 3 channels, Gaussian weights; network randomization);
* ``random_shift``: replicate-pad by ``shift_pad`` pixels and crop back at a random offset.

CPU torch, batched over environments; applied in the order given by ``kinds``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from domrand.randomizer import _frame_layout, env_seeds
from domrand.wrappers.style import PixelTransformObservation
from domrand.wrappers.vector import VectorPixelTransform

KINDS = ("color_jitter", "random_conv", "random_shift")
_GRAY = torch.tensor([0.299, 0.587, 0.114])
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


class ImageAugmenter:
    """Per-environment image augmentation with parameters held between ``resample`` calls."""

    def __init__(
        self,
        kinds: Sequence[str] = KINDS,  # which augmentations, applied in this order
        brightness: float = 0.4,  # colour jitter: factor drawn from [1 - b, 1 + b]
        contrast: float = 0.4,  # colour jitter: factor drawn from [1 - c, 1 + c]
        saturation: float = 0.4,  # colour jitter: factor drawn from [1 - s, 1 + s]
        hue: float = 0.1,  # colour jitter: hue rotation drawn from [-h, h] turns
        shift_pad: int | None = None,  # random shift: max offset in pixels (None = H/16, at least 1)
        seed: int | None = None,  # seeds parameters drawn without an explicit seed
    ):
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds: unknown {bad or 'empty'}; accepted: {', '.join(KINDS)}")
        self.kinds = kinds
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.shift_pad = shift_pad
        self._rng = np.random.default_rng(seed)
        self._params: dict[int, dict[str, Any]] = {}
        self._next_id = 0

    def allocate_env_ids(self, n: int = 1) -> list[int]:
        ids = list(range(self._next_id, self._next_id + int(n)))
        self._next_id += int(n)
        return ids

    def _draw(self, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        u = lambda a: float(rng.uniform(1 - a, 1 + a))  # noqa: E731
        return {
            "jitter": (u(self.brightness), u(self.contrast), u(self.saturation), float(rng.uniform(-self.hue, self.hue))),
            "conv": torch.from_numpy(rng.normal(0.0, 1.0 / math.sqrt(27), (3, 3, 3, 3)).astype(np.float32)),
            "shift": (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        }

    def resample(self, env_ids: Iterable[int] | None = None, seed: Any = None, immediate: bool | None = None) -> None:
        """New parameters for ``env_ids``; seeds as in ``StyleRandomizer.resample`` (``immediate`` is ignored)."""
        ids = list(self._params) if env_ids is None else [int(i) for i in env_ids]
        seeds = env_seeds(ids, seed, self._rng)
        for i, s in zip(ids, seeds):
            self._params[i] = self._draw(s)
        self._next_id = max([self._next_id] + [i + 1 for i in ids])

    def randomize(self, frames: Any, env_ids: Iterable[int] | None = None, channels_first: bool | None = None) -> Any:
        """uint8 frames (``[N, H, W, 3]``, ``[H, W, 3]`` or channel-first) -> augmented, same shape and dtype."""
        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            raise ValueError(f"frames: expected dtype uint8, got {arr.dtype}")
        batched, cf = _frame_layout(arr.shape, channels_first)
        if not batched:
            arr = arr[None]
        ids = list(range(arr.shape[0])) if env_ids is None else [int(i) for i in env_ids]
        if len(ids) != arr.shape[0]:
            raise ValueError(f"env_ids: {len(ids)} ids for {arr.shape[0]} frames")
        missing = [i for i in dict.fromkeys(ids) if i not in self._params]
        if missing:
            self.resample(missing)
        x = torch.from_numpy(np.ascontiguousarray(arr if cf else arr.transpose(0, 3, 1, 2))).float() / 255.0
        params = [self._params[i] for i in ids]
        for kind in self.kinds:
            x = getattr(self, f"_{kind}")(x, params)
        out = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        out = out if cf else out.transpose(0, 2, 3, 1)
        out = np.ascontiguousarray(out)
        return out if batched else out[0]

    __call__ = randomize

    # ---- the augmentations: x float [N, 3, H, W] in [0, 1] ----------------------------------------
    @staticmethod
    def _color_jitter(x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        b, c, s, h = (torch.tensor([p["jitter"][k] for p in params]).reshape(-1, 1, 1, 1) for k in range(4))
        x = (x * b).clamp(0, 1)
        gray = (x * _GRAY.reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        x = ((x - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
        gray = (x * _GRAY.reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        x = ((x - gray) * s + gray).clamp(0, 1)
        yiq = torch.einsum("ij,njhw->nihw", _RGB2YIQ, x)
        ang = h.reshape(-1, 1, 1) * 2 * math.pi
        i, q = yiq[:, 1], yiq[:, 2]
        cos, sin = torch.cos(ang), torch.sin(ang)
        yiq = torch.stack([yiq[:, 0], i * cos - q * sin, i * sin + q * cos], dim=1)
        return torch.einsum("ij,njhw->nihw", _YIQ2RGB, yiq).clamp(0, 1)

    @staticmethod
    def _random_conv(x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        n, _, h, w = x.shape
        weight = torch.cat([p["conv"] for p in params])  # [N*3, 3, 3, 3]
        y = F.conv2d(F.pad(x.reshape(1, n * 3, h, w), (1, 1, 1, 1), mode="replicate"), weight, groups=n)
        return y.reshape(n, 3, h, w)

    def _random_shift(self, x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        n, _, h, w = x.shape
        pad = self.shift_pad if self.shift_pad is not None else max(1, round(min(h, w) / 16))
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        out = torch.empty_like(x)
        for k, p in enumerate(params):
            dy, dx = (int(round(v * pad)) for v in p["shift"])
            out[k] = padded[k, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        return out


class AugmentationObservation(PixelTransformObservation, gym.utils.RecordConstructorArgs):
    """RAD/DrAC-style augmentation baseline with the style wrapper's interface and schedule.

    ``AugmentationObservation(env, kinds=("color_jitter", "random_conv", "random_shift"),
    resample="episode" | "step" | k, pixel_key=None, from_render=False, **augmenter_options)``;
    parameters are held per episode (or k steps), seeded from the reset seed.
    """

    def __init__(
        self,
        env: gym.Env,
        kinds: Sequence[str] = KINDS,
        pixel_key: str | None = None,
        from_render: bool = False,
        resample: str | int = "episode",
        augmenter: ImageAugmenter | None = None,
        **augmenter_options: Any,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            kinds=kinds,
            pixel_key=pixel_key,
            from_render=from_render,
            resample=resample,
            augmenter=augmenter,
            **augmenter_options,
        )
        augmenter = augmenter or ImageAugmenter(kinds=kinds, **augmenter_options)
        PixelTransformObservation.__init__(
            self, env, augmenter, pixel_key=pixel_key, from_render=from_render, resample=resample
        )
        self.augmenter = augmenter


class VectorAugmentation(VectorPixelTransform):
    """Vector version of ``AugmentationObservation`` (auto-reset sub-envs get new parameters)."""

    def __init__(
        self,
        vector_env: Any,
        kinds: Sequence[str] = KINDS,
        pixel_key: str | None = None,
        resample: str | int = "episode",
        augmenter: ImageAugmenter | None = None,
        **augmenter_options: Any,
    ):
        augmenter = augmenter or ImageAugmenter(kinds=kinds, **augmenter_options)
        super().__init__(vector_env, augmenter, pixel_key=pixel_key, resample=resample)
        self.augmenter = augmenter
