"""Image metrics without pretrained weights: sliced Wasserstein distance, PSNR, SSIM, MS-SSIM, and
the layout agreement of two generators for the same latent (``layout_agreement``, issue 16).

Image inputs: ``uint8 [N, H, W, C]`` (numpy or torch, values 0..255) or float ``[N, C, H, W]``
(numpy or torch) in ``[-1, 1]``. :func:`to_float_images` turns either into float ``[N, C, H, W]``
in ``[-1, 1]``; every metric here calls it, so ``data_range=2.0`` is right for both kinds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["layout_agreement", "ms_ssim", "psnr", "ssim", "structure_map", "swd", "to_float_images"]

Images = np.ndarray | torch.Tensor

_ACCEPTED = "uint8 [N, H, W, C] (numpy or torch, 0..255) or float [N, C, H, W] in [-1, 1]"


def to_float_images(x: Images) -> torch.Tensor:
    """``uint8 [N, H, W, C]`` -> ``float32 [N, C, H, W]`` in ``[-1, 1]``; float ``[N, C, H, W]`` passes.

    Float inputs are returned as torch tensors of their own floating dtype (numpy float64 becomes
    float32), unchanged, on their own device; gradients are kept.
    """
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:  # e.g. a memory-mapped dataset: torch wants writable memory
            x = np.array(x)
        x = torch.from_numpy(np.ascontiguousarray(x))
        if x.dtype == torch.float64:
            x = x.float()
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images: expected a numpy array or torch tensor ({_ACCEPTED}), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"images: expected 4 dimensions ({_ACCEPTED}), got shape {list(x.shape)}")
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if not x.is_floating_point():
        raise ValueError(f"images: expected uint8 or floating dtype ({_ACCEPTED}), got {x.dtype}")
    return x


def _pair(a: Images, b: Images) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = to_float_images(a), to_float_images(b)
    if a.shape != b.shape:
        raise ValueError(f"images: a and b must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    return a, b.to(a.device)


# ------------------------------------------------------------------------------------------------
# PSNR / SSIM / MS-SSIM


def psnr(a: Images, b: Images, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``[N]`` in dB (``inf`` where identical)."""
    a, b = _pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).to(a.dtype)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(coords**2) / (2 * sigma**2))
    return (w / w.sum()).to(dtype)


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of ``[N, C, H, W]`` with a 1D ``window`` -> ``[N, C, H-k+1, W-k+1]``."""
    c = x.shape[1]
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_maps(a: torch.Tensor, b: torch.Tensor, data_range: float, window: int, sigma: float):
    """SSIM map and contrast-structure map, each ``[N, C, h, w]``; ``a``, ``b`` in ``[0, data_range]``."""
    size = min(window, a.shape[-2], a.shape[-1])
    size -= 1 - size % 2  # odd
    win = _gaussian_window(size, sigma, a.device, a.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _blur_valid(a, win), _blur_valid(b, win)
    var_a = _blur_valid(a * a, win) - mu_a**2
    var_b = _blur_valid(b * b, win) - mu_b**2
    cov = _blur_valid(a * b, win) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return lum * cs, cs


def ssim(
    a: Images,
    b: Images,
    data_range: float = 2.0,
    window: int = 11,
    sigma: float = 1.5,
    *,
    low: float = -1.0,
) -> torch.Tensor:
    """Structural similarity per image, ``[N]`` (mean over channels and valid window positions).

    Gaussian window (``window`` taps, ``sigma``), K1=0.01, K2=0.03, population statistics; the same
    definition as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``. Images smaller than the window use a window as large as fits.
    ``low`` is the bottom of the value range (-1 for this package's images, 0 for ``[0, 1]``
    images): images are shifted by ``-low`` first, because the luminance term assumes
    non-negative intensities. Differentiable.
    """
    a, b = _pair(a, b)
    full, _ = _ssim_maps(a - low, b - low, data_range, window, sigma)
    return full.flatten(1).mean(1)


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(
    a: Images,
    b: Images,
    data_range: float = 2.0,
    window: int = 11,
    sigma: float = 1.5,
    weights: Sequence[float] = _MS_SSIM_WEIGHTS,
    *,
    low: float = -1.0,
) -> torch.Tensor:
    """Multi-scale SSIM per image, ``[N]``; differentiable, ``1 - ms_ssim`` works as a loss.

    Scales halve the image (2x2 average pooling). The number of scales is the largest
    ``s <= len(weights)`` whose coarsest scale is still at least ``window`` pixels, so 64x64 uses 3
    scales (64, 32, 16), 32x32 uses 2, and images below ``2 * window`` use 1 (plain SSIM). The first
    ``s`` weights are renormalised to sum to 1. Per scale the contrast-structure term (the full
    SSIM at the coarsest) is averaged over channels and positions, clamped at 1e-6 (so fractional
    powers stay finite) and raised to its weight; the result is the product. ``low`` as in
    :func:`ssim`.
    """
    a, b = _pair(a, b)
    a, b = a - low, b - low
    side = min(a.shape[-2], a.shape[-1])
    scales = 1
    while scales < len(weights) and side // 2**scales >= window:
        scales += 1
    w = torch.tensor(weights[:scales], dtype=a.dtype, device=a.device)
    w = w / w.sum()
    terms = []
    for i in range(scales):
        full, cs = _ssim_maps(a, b, data_range, window, sigma)
        value = full if i == scales - 1 else cs
        terms.append(value.flatten(1).mean(1).clamp(min=1e-6))
        if i < scales - 1:
            a = F.avg_pool2d(a, 2, ceil_mode=True)
            b = F.avg_pool2d(b, 2, ceil_mode=True)
    stacked = torch.stack(terms, dim=1)  # [N, scales]
    return torch.prod(stacked ** w[None, :], dim=1)


# ------------------------------------------------------------------------------------------------
# Sliced Wasserstein distance


def _binomial_kernel(channels: int, device, dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    k2 = torch.outer(k, k) / 256.0
    return k2.expand(channels, 1, 5, 5).contiguous()


def _blur5(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def _laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[N, C, H, W]`` -> ``levels`` band-pass images (finest first); the last is the low-pass rest."""
    kernel = _binomial_kernel(x.shape[1], x.device, x.dtype)
    out = []
    for _ in range(levels - 1):
        down = _blur5(x, kernel)[:, :, ::2, ::2]
        n, c, h, w = down.shape
        up = torch.zeros(n, c, h * 2, w * 2, dtype=x.dtype, device=x.device)
        up[:, :, ::2, ::2] = down * 4  # zero insertion; the 4x gain restores the mean after blurring
        up = _blur5(up, kernel)[:, :, : x.shape[2], : x.shape[3]]
        out.append(x - up)
        x = down
    out.append(x)
    return out


def _swd_levels(height: int, width: int, min_resolution: int, patch_size: int) -> list[int]:
    side = min(height, width)
    if side < max(min_resolution, patch_size):
        raise ValueError(
            f"swd: images of {height}x{width} are smaller than min_resolution={min_resolution} "
            f"or patch_size={patch_size}"
        )
    levels = [side]
    while levels[-1] // 2 >= min_resolution:
        levels.append(levels[-1] // 2)
    return levels


def _patch_descriptors(
    images: Images, levels: int, patches_per_image: int, patch_size: int, gen: torch.Generator, chunk: int
) -> list[torch.Tensor]:
    """Random ``patch_size``-square patches per image and level -> per level ``[N*P, k*k*C]``.

    The descriptor layout is ``(row, col, channel)`` with the channel fastest.
    """
    n = images.shape[0]
    out: list[torch.Tensor] = []
    offsets = torch.arange(patch_size)
    for start in range(0, n, chunk):
        x = to_float_images(images[start : start + chunk]).float().cpu()
        for lvl, band in enumerate(_laplacian_pyramid(x, levels)):
            m, c, h, w = band.shape
            if start == 0:
                out.append(torch.empty(n * patches_per_image, patch_size * patch_size * c))
            ys = torch.randint(0, h - patch_size + 1, (m, patches_per_image), generator=gen)
            xs = torch.randint(0, w - patch_size + 1, (m, patches_per_image), generator=gen)
            rows = (ys[:, :, None] + offsets)[:, :, :, None]  # [m, P, k, 1]
            cols = (xs[:, :, None] + offsets)[:, :, None, :]  # [m, P, 1, k]
            idx = torch.arange(m)[:, None, None, None]
            patches = band.permute(0, 2, 3, 1)[idx, rows, cols]  # [m, P, k, k, C]
            rows_out = slice(start * patches_per_image, (start + m) * patches_per_image)
            out[lvl][rows_out] = patches.reshape(m * patches_per_image, -1)
    return out


def _pooled_channel_std(a: torch.Tensor, b: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-channel std ``[C]`` of two descriptor sets ``[N, k*k*C]`` pooled together."""
    stats = []
    for d in (a, b):
        var, mean = torch.var_mean(d.reshape(-1, channels), dim=0, correction=0)
        stats.append((d.numel() // channels, mean.double(), var.double()))
    n = sum(s[0] for s in stats)
    mean = sum(s[0] * s[1] for s in stats) / n
    second = sum(s[0] * (s[2] + s[1] ** 2) for s in stats) / n
    return (second - mean**2).clamp(min=1e-16).sqrt().float()


def _sorted_projection_distance(a: torch.Tensor, b: torch.Tensor, dirs: torch.Tensor, chunk: int = 64) -> float:
    """Mean over directions of the 1D Wasserstein-1 distance between the projected sets.

    ``a [Na, F]``, ``b [Nb, F]``, ``dirs [D, F]`` unit rows. Sorting uses numpy (SIMD sort on
    x86, far faster than torch's CPU sort).
    """
    total = 0.0
    na, nb = a.shape[0], b.shape[0]
    m = min(na, nb)
    if na != nb:  # compare quantile functions at common midpoints
        q = (np.arange(m, dtype=np.float64) + 0.5) / m
        pick_a, pick_b = (q * na).astype(np.int64), (q * nb).astype(np.int64)
    for start in range(0, dirs.shape[0], chunk):
        d = dirs[start : start + chunk]  # [D, F]
        pa = np.sort((d @ a.T).numpy(), axis=1)  # [D, Na]
        pb = np.sort((d @ b.T).numpy(), axis=1)
        if na != nb:
            pa, pb = pa[:, pick_a], pb[:, pick_b]
        total += float(np.abs(pa - pb).mean(axis=1, dtype=np.float64).sum())
    return total / dirs.shape[0]


@torch.no_grad()
def swd(
    images_a: Images,
    images_b: Images,
    *,
    patches_per_image: int = 128,
    patch_size: int = 7,
    directions: int = 512,
    min_resolution: int = 16,
    seed: int = 0,
    chunk: int = 256,
) -> dict[str, float]:
    """Sliced Wasserstein distance between two image sets over Laplacian-pyramid patches, x1e3.

    ``images_a``, ``images_b``: uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[-1, 1]``
    (numpy or torch; the two sets may differ in N but not in H, W). Per level (full resolution,
    halved down to ``min_resolution``; the coarsest level is the low-pass rest) ``patches_per_image``
    random ``patch_size``-square patches are taken from every image; descriptors are normalised per
    channel with the mean and std of both sets pooled (so a global colour shift shows); the
    distance is the mean over ``directions`` random unit directions of the mean absolute
    difference of the sorted projections. Deterministic given ``seed`` (patch positions and
    directions). Runs on CPU in float32, ``chunk`` images at a time.

    Returns ``{"swd64": ..., "swd32": ..., "swd16": ..., "mean": ...}`` (keys follow the levels).
    """
    for name, imgs in (("images_a", images_a), ("images_b", images_b)):
        if imgs.ndim != 4:
            raise ValueError(f"{name}: expected 4 dimensions ({_ACCEPTED}), got shape {list(imgs.shape)}")
    sample_a, sample_b = to_float_images(images_a[:1]), to_float_images(images_b[:1])
    if sample_a.shape[1:] != sample_b.shape[1:]:
        raise ValueError(f"swd: image shapes differ, {list(sample_a.shape[1:])} vs {list(sample_b.shape[1:])}")
    _, channels, height, width = sample_a.shape
    levels = _swd_levels(height, width, min_resolution, patch_size)
    gen = torch.Generator().manual_seed(int(seed))
    desc_a = _patch_descriptors(images_a, len(levels), patches_per_image, patch_size, gen, chunk)
    desc_b = _patch_descriptors(images_b, len(levels), patches_per_image, patch_size, gen, chunk)
    result: dict[str, float] = {}
    for res, a, b in zip(levels, desc_a, desc_b):
        dirs = torch.randn(directions, a.shape[1], generator=gen)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        # Normalising descriptors per channel, (x - mean) / std, then projecting on d equals
        # projecting x on d / std up to an offset shared by both sets, which sorting and
        # differencing cancel; so fold the std into the directions and skip the copy.
        std = _pooled_channel_std(a, b, channels).repeat(patch_size * patch_size)
        result[f"swd{res}"] = _sorted_projection_distance(a, b, dirs / std) * 1e3
    result["mean"] = float(np.mean(list(result.values())))
    return result


# ------------------------------------------------------------------------------------------------
# Layout agreement of two generators (same w -> same layout?)


def structure_map(images: Images, blur: bool = True) -> torch.Tensor:
    """Edge strength of each image: Sobel gradient magnitude of the luminance, ``[N, H, W]``.

    ``images``: see :func:`to_float_images`. ``blur``: a 3x3 binomial low-pass first, so pixel
    noise counts less than edges. Colour changes that keep the luminance edges keep the map.
    """
    x = to_float_images(images).float()
    if x.shape[1] == 3:
        x = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    elif x.shape[1] != 1:
        raise ValueError(f"structure_map: expected 1 or 3 channels, got {x.shape[1]}")
    if blur:
        k = torch.tensor([1.0, 2.0, 1.0], device=x.device)
        k = (k[:, None] * k[None, :] / 16).reshape(1, 1, 3, 3)
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    kernels = torch.stack([sx, sx.t()]).unsqueeze(1)  # [2, 1, 3, 3]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
    return g.square().sum(1).add(1e-12).sqrt()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation of ``[N, ...]`` tensors: ``[N]`` (0 for a constant row)."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


@torch.no_grad()
def layout_agreement(
    G_a: torch.nn.Module,
    G_b: torch.nn.Module,
    n: int = 256,
    *,
    seed: int = 0,  # seeds the shared latents
    psi: float = 1.0,  # truncation of the shared ws (G_a's w_avg)
    batch: int = 32,  # images rendered per forward pass
    noise_mode: str = "const",  # each generator's own constant noise (a fine-tuned G keeps its start's)
    blur: bool = True,  # see structure_map
) -> dict[str, float]:
    """Do two generators draw the same layout for the same latent?

    ``n`` shared ws ``[n, num_ws, w_dim]`` come from ``G_a.mapping`` (fixed-seed z); both generators
    render them (``synthesis``, ``noise_mode``); each image becomes a structure map (Sobel
    magnitude of luminance, :func:`structure_map`; ``G_b``'s images are resized to ``G_a``'s
    resolution when they differ). ``same_w`` is the mean Pearson correlation of the maps of the
    same w (``a_i`` vs ``b_i``), ``mismatched`` the same over pairs of different ws (``a_i`` vs
    ``b_{i-1}``), i.e. what a shared scene layout alone gives. A fine-tuned generator that keeps its
    start's layout has ``same_w`` well above ``mismatched``; unrelated generators have them about
    equal. Returns ``{"same_w", "mismatched", "gap": same_w - mismatched, "ratio": same_w /
    mismatched (inf when mismatched <= 0), "n"}``.
    """
    if n < 2:
        raise ValueError(f"layout_agreement: n must be >= 2 (mismatched pairs need two latents), got {n}")
    for name, G in (("G_a", G_a), ("G_b", G_b)):
        if not (hasattr(G, "mapping") and hasattr(G, "synthesis")):
            raise TypeError(f"layout_agreement: {name} must be a Generator (mapping + synthesis), got {type(G).__name__}")
    if (G_a.num_ws, G_a.w_dim) != (G_b.num_ws, G_b.w_dim):
        raise ValueError(
            f"layout_agreement: the generators do not share a W+ space: num_ws/w_dim {G_a.num_ws}/{G_a.w_dim} vs "
            f"{G_b.num_ws}/{G_b.w_dim}"
        )
    dev_a = next(G_a.parameters()).device
    dev_b = next(G_b.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    maps_a, maps_b = [], []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = torch.randn(m, G_a.z_dim, generator=gen).to(dev_a)
        ws = G_a.mapping(z, psi=psi)
        img_a = G_a.synthesis(ws, noise_mode=noise_mode).float().cpu()
        img_b = G_b.synthesis(ws.to(dev_b), noise_mode=noise_mode).float().cpu()
        if img_b.shape[-2:] != img_a.shape[-2:]:
            img_b = F.interpolate(img_b, size=img_a.shape[-2:], mode="area" if img_b.shape[-1] > img_a.shape[-1] else "bilinear")
        maps_a.append(structure_map(img_a, blur=blur))
        maps_b.append(structure_map(img_b, blur=blur))
    agree = _map_agreement(torch.cat(maps_a), torch.cat(maps_b))
    return {"same_w": agree["same"], **{k: v for k, v in agree.items() if k != "same"}}


def _map_agreement(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Pearson of structure maps ``a_i`` vs ``b_i`` (``same``) and vs ``b_{i-1}`` (``mismatched``)."""
    same = float(_pearson(a, b).mean())
    mismatched = float(_pearson(a, b.roll(1, dims=0)).mean())
    ratio = same / mismatched if mismatched > 0 else float("inf")
    return {"same": same, "mismatched": mismatched, "gap": same - mismatched, "ratio": ratio, "n": int(a.shape[0])}


@torch.no_grad()
def frame_layout_agreement(frames_a: Images, frames_b: Images, blur: bool = True) -> dict[str, float]:
    """Do frames ``a_i`` keep the layout of frames ``b_i`` (e.g. randomized vs sim frames)?

    Both ``[N >= 2, ...]`` (see :func:`to_float_images`), same size. Structure maps (:func:`structure_map`)
    of ``a_i`` and ``b_i`` are correlated (Pearson); ``same`` is the mean over i, ``mismatched`` the
    mean of ``a_i`` vs ``b_{i-1}`` (another state of the same scene). Returns ``{"same", "mismatched",
    "gap", "ratio", "n"}``; a randomizer that keeps layout has ``same`` well above ``mismatched``.
    """
    a, b = structure_map(frames_a, blur=blur), structure_map(frames_b, blur=blur)
    if a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"frame_layout_agreement: expected two [N >= 2, ...] sets of one size, got {list(a.shape)} and {list(b.shape)}")
    return _map_agreement(a, b)
