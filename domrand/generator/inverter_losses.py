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
* :func:`delta_penalty`, :func:`norm_penalty`: keep predicted ws near W so kept coarse styles
  combine cleanly with resampled fine ones (the idea of e4e's delta regularization, written here
  as each layer's distance from the sample's mean w, and a penalty on leaving W's typical shell).

Images are ``[N, 3, H, W]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from domrand.utils import assert_shape

__all__ = [
    "DiscriminatorFeatureLoss",
    "delta_penalty",
    "edge_tensor_field",
    "edge_tensor_loss",
    "gradient_field",
    "image_loss",
    "luminance",
    "norm_penalty",
    "structure_loss",
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
        from domrand.metrics import ms_ssim

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
