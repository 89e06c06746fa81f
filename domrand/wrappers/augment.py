"""Classic image-augmentation baselines (RAD / DrQ / DrAC style) in the same form as the style wrapper.

``ImageAugmenter`` has the ``StyleRandomizer`` frame interface (``randomize``, ``resample``,
``allocate_env_ids``) with per-environment parameters held between resamples, so the baselines use
exactly the same wrappers, resample schedule and seeding as the StyleGAN randomization. Kinds:

* ``color_jitter``: brightness, contrast, saturation and hue shift;
* ``random_conv``: a random 3x3 convolution (3 -> 3 channels, Gaussian weights; network
  randomization, Lee et al. 2020), applied to a frame with probability ``conv_prob`` and blended
  with the frame, ``(1 - a) x + a conv(x)`` with ``a ~ U(conv_mix)``, so the scene's colours (the
  red cube) stay findable;
* ``random_shift``: DrQ: replicate-pad by ``shift_pad`` pixels and crop back at a random offset;
* ``random_translate``: RAD translate: the frame moved by up to ``shift_pad`` pixels on a black canvas;
* ``random_crop``: RAD crop: a random window of ``crop_scale`` of the side, resized back (bilinear);
* ``cutout``: a random rectangle (side ``cutout_size`` of the frame's) set to black;
* ``grayscale``: with probability ``gray_prob`` the frame becomes grey (equal channels).

CPU torch, batched over environments; applied in the order given by ``kinds``. Every random draw of
a frame comes from its parameters' seed.
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

KINDS = ("color_jitter", "random_conv", "random_shift", "random_translate", "random_crop", "cutout", "grayscale")
DEFAULT_KINDS = ("color_jitter", "random_conv", "random_shift")  # the benchmark's ``augment`` condition
_GRAY = torch.tensor([0.299, 0.587, 0.114])
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """``(lo, hi)`` with ``low <= lo <= hi <= high``, else ``ValueError`` naming ``name``."""
    lo, hi = (float(v) for v in value)
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name}: expected a range (lo, hi) with {low} <= lo <= hi <= {high}, got {tuple(value)}")
    return lo, hi


def _check_prob(name: str, value: float) -> float:
    """A probability in [0, 1], else ``ValueError`` naming ``name``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)


class ImageAugmenter:
    """Per-environment image augmentation with parameters held between ``resample`` calls."""

    def __init__(
        self,
        kinds: Sequence[str] = DEFAULT_KINDS,  # which augmentations, applied in this order (see KINDS)
        brightness: float = 0.4,  # colour jitter: factor drawn from [1 - b, 1 + b]
        contrast: float = 0.4,  # colour jitter: factor drawn from [1 - c, 1 + c]
        saturation: float = 0.4,  # colour jitter: factor drawn from [1 - s, 1 + s]
        hue: float = 0.1,  # colour jitter: hue rotation drawn from [-h, h] turns
        conv_prob: float = 0.5,  # random conv: probability that a frame gets it
        conv_mix: Sequence[float] = (0.2, 0.6),  # random conv: blend weight a ~ U(low, high) of conv(x)
        shift_pad: int | None = None,  # random shift / translate: max offset in pixels (None = H/16, at least 1)
        crop_scale: float = 0.84,  # random crop: window side / frame side (RAD: 84 of 100)
        cutout_size: Sequence[float] = (0.1, 0.3),  # cutout: rectangle side / frame side, U(low, high) per axis
        gray_prob: float = 0.3,  # grayscale: probability that a frame turns grey (RAD: 0.3)
        seed: int | None = None,  # seeds parameters drawn without an explicit seed
    ):
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds: unknown {bad or 'empty'}; accepted: {', '.join(KINDS)}")
        self.kinds = kinds
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.conv_prob = _check_prob("conv_prob", conv_prob)
        self.conv_mix = _check_range("conv_mix", conv_mix, 0.0, 1.0)
        if shift_pad is not None and int(shift_pad) < 0:
            raise ValueError(f"shift_pad: expected None or >= 0, got {shift_pad}")
        self.shift_pad = shift_pad
        if not 0.0 < float(crop_scale) <= 1.0:
            raise ValueError(f"crop_scale: expected 0 < crop_scale <= 1, got {crop_scale}")
        self.crop_scale = float(crop_scale)
        self.cutout_size = _check_range("cutout_size", cutout_size, 0.0, 1.0)
        self.gray_prob = _check_prob("gray_prob", gray_prob)
        self._rng = np.random.default_rng(seed)
        self._params: dict[int, dict[str, Any]] = {}
        self._next_id = 0

    def allocate_env_ids(self, n: int = 1) -> list[int]:
        ids = list(range(self._next_id, self._next_id + int(n)))
        self._next_id += int(n)
        return ids

    def _draw(self, seed: int) -> dict[str, Any]:
        """One frame's parameters of every kind (all drawn, in a fixed order, whatever ``kinds`` is)."""
        rng = np.random.default_rng(seed)
        u = lambda a: float(rng.uniform(1 - a, 1 + a))  # noqa: E731
        return {
            "jitter": (u(self.brightness), u(self.contrast), u(self.saturation), float(rng.uniform(-self.hue, self.hue))),
            "conv": torch.from_numpy(rng.normal(0.0, 1.0 / math.sqrt(27), (3, 3, 3, 3)).astype(np.float32)),
            "shift": (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
            "conv_mix": float(rng.uniform(*self.conv_mix)) if rng.random() < self.conv_prob else 0.0,
            "crop": (float(rng.random()), float(rng.random())),  # window offset, fraction of the free range
            "cutout": tuple(float(v) for v in rng.random(4)),  # (y, x, h, w) fractions
            "gray": bool(rng.random() < self.gray_prob),
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
        a = torch.tensor([p["conv_mix"] for p in params]).reshape(-1, 1, 1, 1)
        return (1 - a) * x + a * y.reshape(n, 3, h, w).clamp(0, 1)

    def _pad(self, h: int, w: int) -> int:
        return self.shift_pad if self.shift_pad is not None else max(1, round(min(h, w) / 16))

    def _random_shift(self, x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        return self._shifted(x, params, "replicate")

    def _random_translate(self, x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        return self._shifted(x, params, "constant")

    def _shifted(self, x: torch.Tensor, params: list[dict[str, Any]], mode: str) -> torch.Tensor:
        """Content moved by ``round(shift * pad)`` pixels; the uncovered border replicated or black."""
        n, _, h, w = x.shape
        pad = self._pad(h, w)
        padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
        out = torch.empty_like(x)
        for k, p in enumerate(params):
            dy, dx = (int(round(v * pad)) for v in p["shift"])
            out[k] = padded[k, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        return out

    def _random_crop(self, x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        n, _, h, w = x.shape
        ch, cw = max(1, round(h * self.crop_scale)), max(1, round(w * self.crop_scale))
        out = torch.empty_like(x)
        for k, p in enumerate(params):
            y0, x0 = round(p["crop"][0] * (h - ch)), round(p["crop"][1] * (w - cw))
            window = x[k : k + 1, :, y0 : y0 + ch, x0 : x0 + cw]
            out[k] = F.interpolate(window, size=(h, w), mode="bilinear", align_corners=False)[0]
        return out

    def _cutout(self, x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        n, _, h, w = x.shape
        lo, hi = self.cutout_size
        out = x.clone()
        for k, p in enumerate(params):
            fy, fx, fh, fw = p["cutout"]
            rh, rw = round(h * (lo + (hi - lo) * fh)), round(w * (lo + (hi - lo) * fw))
            y0, x0 = round(fy * (h - rh)), round(fx * (w - rw))
            out[k, :, y0 : y0 + rh, x0 : x0 + rw] = 0.0
        return out

    @staticmethod
    def _grayscale(x: torch.Tensor, params: list[dict[str, Any]]) -> torch.Tensor:
        gray = (x * _GRAY.reshape(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
        on = torch.tensor([p["gray"] for p in params]).reshape(-1, 1, 1, 1)
        return torch.where(on, gray, x)


class AugmentationObservation(PixelTransformObservation, gym.utils.RecordConstructorArgs):
    """RAD/DrAC-style augmentation baseline with the style wrapper's interface and schedule.

    ``AugmentationObservation(env, kinds=DEFAULT_KINDS (any of KINDS), resample="episode" | "step" | k,
    pixel_key=None, from_render=False, **augmenter_options)``;
    parameters are held per episode (or k steps), seeded from the reset seed.
    """

    def __init__(
        self,
        env: gym.Env,
        kinds: Sequence[str] = DEFAULT_KINDS,
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
        kinds: Sequence[str] = DEFAULT_KINDS,
        pixel_key: str | None = None,
        resample: str | int = "episode",
        augmenter: ImageAugmenter | None = None,
        **augmenter_options: Any,
    ):
        augmenter = augmenter or ImageAugmenter(kinds=kinds, **augmenter_options)
        super().__init__(vector_env, augmenter, pixel_key=pixel_key, resample=resample)
        self.augmenter = augmenter
