"""Losses of inverter training; all per-sample ``[N]`` and differentiable, no downloaded weights.

* :func:`image_loss`: weighted L2, L1 and ``1 - MS-SSIM`` between two image batches.
* :class:`DiscriminatorFeatureLoss`: a perceptual distance on the trained discriminator's block
  features (each feature vector unit-normalized over channels, squared difference averaged over
  positions, blocks weighted equally). The discriminator is frozen; gradients reach the input.
* :func:`structure_loss`: for simulator frames, whose textures the generator cannot paint. Per
  scale (full, 1/2, 1/4) the luminance gradient is divided by its local average magnitude (so
  only edge *direction and placement* count, not contrast or colour), plus a low-pass luminance
  term standardized per image (shading layout without absolute brightness).
* :func:`edge_tensor_loss`: the same job with the colour structure tensor (Di Zenzo): per pixel
  the RGB gradients' ``[gx^2, gx*gy, gy^2]`` summed over channels, smoothed and divided by its
  local trace. Edges count wherever *any* channel changes (a light-blue wall on a beige table is
  nearly iso-luminant), their polarity does not (a bright sim wall may become a dark target wall),
  and there is no brightness-layout term.
* :func:`weighted_recon_loss` (the object-aware loss): per-pixel L2/L1 weighted by a per-pixel
  weight map (from a class mask through :func:`class_weight_map`) and normalized by the sum of the
  weights, so small task objects (a 3-4 px cube) are not averaged away and the loss scale does not
  depend on how many object pixels a frame has. All weights 1 is plain MSE/L1.
  :func:`class_squared_errors` sums squared errors per class (per-class PSNR in eval-inverter).
* :func:`delta_penalty`, :func:`norm_penalty`: keep predicted ws near W so kept coarse styles
  combine cleanly with resampled fine ones (the idea of e4e's delta regularization, written here
  as each layer's distance from the sample's mean w, and a penalty on leaving W's typical shell).

Images are ``[N, 3, H, W]`` in ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from domrand.metrics import ms_ssim
from domrand.utils import assert_shape

__all__ = [
    "DEFAULT_CLASS_IDS",
    "DEFAULT_CLASS_WEIGHTS",
    "DiscriminatorFeatureLoss",
    "class_squared_errors",
    "class_weight_lut",
    "class_weight_map",
    "delta_penalty",
    "edge_tensor_field",
    "edge_tensor_loss",
    "gradient_field",
    "image_loss",
    "luminance",
    "norm_penalty",
    "structure_loss",
    "weighted_recon_loss",
]

_LUMA = (0.299, 0.587, 0.114)


def image_loss(
    x: torch.Tensor, y: torch.Tensor, l2: float = 1.0, l1: float = 0.0, msssim: float = 0.0
) -> torch.Tensor:
    """``l2 * MSE + l1 * L1 + msssim * (1 - MS-SSIM)`` per image, ``[N]``."""
    assert_shape("y", y, list(x.shape))
    loss = x.new_zeros(x.shape[0])
    d = (x - y).flatten(1)
    if l2:
        loss = loss + l2 * d.square().mean(1)
    if l1:
        loss = loss + l1 * d.abs().mean(1)
    if msssim:
        loss = loss + msssim * (1 - ms_ssim(x, y))
    return loss


class DiscriminatorFeatureLoss(nn.Module):
    """Perceptual distance from a (trained) ``Discriminator``'s block features, per image ``[N]``."""

    def __init__(self, D: nn.Module, max_blocks: int | None = None):
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        self.max_blocks = max_blocks

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        _, feats = self.D(img, return_features=True)
        if self.max_blocks is not None:
            feats = feats[: self.max_blocks]
        return [f / (f.square().sum(1, keepdim=True) + 1e-8).sqrt() for f in feats]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.features(x)
        with torch.no_grad():
            fy = self.features(y)
        total = x.new_zeros(x.shape[0])
        for a, b in zip(fx, fy):
            total = total + (a - b).square().sum(1).flatten(1).mean(1)
        return total / max(len(fx), 1)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, 1, H, W]`` (Rec. 601 weights)."""
    w = x.new_tensor(_LUMA).reshape(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def gradient_field(lum: torch.Tensor, eps: float = 0.02) -> torch.Tensor:
    """Contrast-normalized gradient ``[N, 2, H, W]`` of luminance ``[N, 1, H, W]``.

    Central differences (replicate padding), divided by the 3x3-blurred gradient magnitude plus
    ``eps`` (so flat regions stay near zero instead of amplifying noise).
    """
    p = F.pad(lum, (1, 1, 1, 1), mode="replicate")
    gx = (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]) * 0.5
    gy = (p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]) * 0.5
    g = torch.cat([gx, gy], 1)
    mag = (g.square().sum(1, keepdim=True) + 1e-12).sqrt()
    local = F.avg_pool2d(F.pad(mag, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return g / (local + eps)


def structure_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    scales: int = 3,
    lowpass: int = 4,
    lowpass_weight: float = 1.0,
) -> torch.Tensor:
    """Structure-preserving distance between ``x`` and ``y`` per image ``[N]``.

    Mean absolute difference of :func:`gradient_field` at ``scales`` scales (2x2 average pooling
    between them), plus ``lowpass_weight`` times the L1 distance of the luminance average-pooled
    to ``lowpass x lowpass`` and standardized per image (mean 0, std 1).
    """
    assert_shape("y", y, list(x.shape))
    lx, ly = luminance(x), luminance(y)
    total = _multiscale_field_l1(gradient_field, lx, ly, scales)
    if lowpass_weight:
        px = F.adaptive_avg_pool2d(lx, lowpass).flatten(1)
        py = F.adaptive_avg_pool2d(ly, lowpass).flatten(1)
        px = (px - px.mean(1, keepdim=True)) / (px.std(1, keepdim=True) + 0.05)
        py = (py - py.mean(1, keepdim=True)) / (py.std(1, keepdim=True) + 0.05)
        total = total + lowpass_weight * (px - py).abs().mean(1)
    return total


def edge_tensor_field(x: torch.Tensor, eps: float = 0.02) -> torch.Tensor:
    """Normalized colour structure tensor ``[N, 3, H, W]`` (``Jxx, Jxy, Jyy``) of images ``[N, C, H, W]``.

    Central differences per channel (replicate padding), ``J = sum_c [gx^2, gx*gy, gy^2]``, 3x3 box
    smoothing, divided by the smoothed trace plus ``eps^2``: about ``[1, 0, 0]`` on a vertical edge of
    any colour, contrast or polarity, about 0 where the image is flat.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]) * 0.5
    gy = (p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]) * 0.5
    J = torch.stack([(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1)], 1)
    J = F.avg_pool2d(F.pad(J, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return J / (J[:, :1] + J[:, 2:] + eps * eps)


def edge_tensor_loss(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean absolute difference of :func:`edge_tensor_field` at ``scales`` scales, per image ``[N]``."""
    assert_shape("y", y, list(x.shape))
    return _multiscale_field_l1(edge_tensor_field, x, y, scales)


def _multiscale_field_l1(field, x: torch.Tensor, y: torch.Tensor, scales: int) -> torch.Tensor:
    """Mean over up to ``scales`` scales (2x2 average pooling between them, stopping below 4 px) of
    the per-image ``[N]`` mean absolute difference of ``field(x)`` and ``field(y)``."""
    total = x.new_zeros(x.shape[0])
    used = 0
    for _ in range(scales):
        if min(x.shape[-2:]) < 4:
            break
        total = total + (field(x) - field(y)).abs().flatten(1).mean(1)
        used += 1
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return total / max(used, 1)


STRUCTURE_LOSSES = {"luminance": structure_loss, "tensor": edge_tensor_loss}
"""``InverterTrainingConfig.structure_kind`` -> the loss applied to simulator frames."""


def delta_penalty(ws: torch.Tensor, scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Spread of a sample's ws across layers: mean over layers of ``||w_i - mean_i w_i||^2 / (w_dim * scale^2)``."""
    assert_shape("ws", ws, [None, None, None])
    d = ws - ws.mean(1, keepdim=True)
    return d.square().mean(2).mean(1) / (scale * scale)


def norm_penalty(ws: torch.Tensor, w_avg: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Penalty on leaving W's typical shell: mean over layers of ``relu(||w_i - w_avg|| / radius - 1)^2``.

    ``radius`` is the RMS distance of mapping-network samples from ``w_avg``
    (``Inverter.w_radius``), so ws inside it are free and only outliers pay.
    """
    assert_shape("ws", ws, [None, None, w_avg.shape[-1]])
    dist = ((ws - w_avg.reshape(1, 1, -1)).square().sum(2) + 1e-8).sqrt() / radius
    return F.relu(dist - 1).square().mean(1)


# --------------------------------------------------------------------------------------------
# Object-aware (mask-weighted) reconstruction


DEFAULT_CLASS_IDS: dict[str, int] = {"background": 0, "table": 1, "robot": 2, "object": 3, "goal": 4, "distractor": 5}
"""Class ids of ``domrand export-frames --masks`` (``envs.scene.CLASS_IDS``), used when a mask folder
has no ``meta.json`` beside it."""

DEFAULT_CLASS_WEIGHTS: dict[str, float] = {"object": 20.0, "distractor": 5.0}
"""``InverterTrainingConfig.class_weights`` default; classes not named weigh 1."""


def class_weight_lut(
    class_weights: Mapping[str, float], class_ids: Mapping[str, int] | None = None
) -> torch.Tensor:
    """Per-class weights -> a lookup table ``float32 [256]`` indexed by mask value (uint8 class id).

    ``class_weights`` maps a class name of ``class_ids`` (default :data:`DEFAULT_CLASS_IDS`), or a
    class id written as a string/int, to a weight ``>= 0``; ids not named weigh 1. An unknown
    name is a ``ValueError`` listing the known ones.
    """
    ids = dict(DEFAULT_CLASS_IDS if class_ids is None else class_ids)
    lut = torch.ones(256, dtype=torch.float32)
    for name, weight in class_weights.items():
        key = str(name)
        if key in ids:
            idx = int(ids[key])
        elif key.isdigit() and int(key) < 256:
            idx = int(key)
        else:
            raise ValueError(
                f"training.class_weights: unknown class {key!r}; known classes: {', '.join(sorted(ids, key=ids.get))} "
                "(from the masks' meta.json, else export-frames' defaults) or a class id 0..255"
            )
        if not 0 <= idx < 256:
            raise ValueError(f"training.class_weights: class {key!r} has id {idx}, outside 0..255")
        w = float(weight)
        if not (w >= 0 and w < float("inf")):
            raise ValueError(f"training.class_weights: the weight of {key!r} must be finite and >= 0, got {weight!r}")
        lut[idx] = w
    return lut


def class_weight_map(masks: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Class-id masks ``[N, H, W]`` (uint8/int) -> per-pixel weights ``[N, 1, H, W]`` (float32)."""
    assert_shape("masks", masks, [None, None, None])
    assert_shape("lut", lut, [256])
    return lut.to(masks.device)[masks.long()].unsqueeze(1)


def weighted_recon_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    l2: float = 1.0,
    l1: float = 0.0,
) -> torch.Tensor:
    """Mask-weighted reconstruction loss per image ``[N]``.

    ``x``, ``y``: images ``[N, C, H, W]``; ``weights``: ``[N, 1, H, W]`` (``None`` = all 1). Per pixel
    ``d = l2 * mean_c (x - y)^2 + l1 * mean_c |x - y|``; the loss is ``sum_p w_p d_p / sum_p w_p``
    (a weighted mean, so its scale does not depend on how many heavy pixels a frame has; with all
    weights equal it is ``l2 * MSE + l1 * L1``). An image whose weights are all 0 contributes 0.
    """
    assert_shape("y", y, list(x.shape))
    n, _, h, w = x.shape
    if weights is None:
        weights = x.new_ones(n, 1, h, w)
    assert_shape("weights", weights, [n, 1, h, w])
    diff = x - y
    per_pixel = x.new_zeros(n, 1, h, w)
    if l2:
        per_pixel = per_pixel + l2 * diff.square().mean(1, keepdim=True)
    if l1:
        per_pixel = per_pixel + l1 * diff.abs().mean(1, keepdim=True)
    weights = weights.to(x.dtype)
    return (weights * per_pixel).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-12)


def class_squared_errors(
    x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, num_classes: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed squared error and pixel count per class: ``(sse [K], count [K])``, float64.

    ``x``, ``y``: ``[N, C, H, W]``; ``masks``: ``[N, H, W]`` class ids ``< num_classes``. The
    squared error of a pixel is its mean over channels, so ``sse / count`` is the class's MSE
    (pooled over all its pixels in the batch) and ``10 log10(4 / mse)`` its PSNR for ``[-1, 1]``.
    """
    assert_shape("y", y, list(x.shape))
    assert_shape("masks", masks, [x.shape[0], x.shape[2], x.shape[3]])
    se = (x.double() - y.double()).square().mean(1).flatten()
    ids = masks.long().flatten().to(se.device)
    sse = torch.zeros(num_classes, dtype=torch.float64, device=se.device).index_add_(0, ids, se)
    count = torch.bincount(ids, minlength=num_classes)[:num_classes].to(torch.float64)
    return sse, count
