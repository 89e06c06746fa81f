"""Camera-pipeline effects of the target visual domain: white balance, vignetting, blur, noise, JPEG."""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=32)
def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((yy - (height - 1) / 2) / (height / 2)) ** 2 + ((xx - (width - 1) / 2) / (width / 2)) ** 2
    return np.clip(1.0 - strength * r2 / 2.0, 0.0, 1.0)[..., None]


def camera_effects(
    image: np.ndarray,
    rng: np.random.Generator,
    white_balance: tuple[float, float, float],
    exposure: float,
    vignette: float,
    blur_sigma: float,
    noise_std: float,
    jpeg_quality: int,
) -> np.ndarray:
    """Apply a simple camera model to a uint8 HxWx3 frame and return a new uint8 frame.

    Order: exposure and white balance (per-channel gains), vignetting (radial falloff, ``vignette``
    = darkening at the corners), Gaussian optical blur (``blur_sigma`` px), sensor noise (Gaussian,
    ``noise_std`` in 0..255 units, plus a little shot noise), then JPEG at ``jpeg_quality``
    (100 or more: no JPEG). Random draws come only from ``rng``.
    """
    h, w = image.shape[:2]
    f = image.astype(np.float32)
    f *= np.asarray(white_balance, np.float32) * float(exposure)
    if vignette > 0:
        f *= _vignette(h, w, float(vignette))
    if blur_sigma > 0:
        f = cv2.GaussianBlur(f, (0, 0), float(blur_sigma))
    if noise_std > 0:
        shot = np.sqrt(np.clip(f, 0, 255) / 255.0)
        f += rng.standard_normal(f.shape, dtype=np.float32) * float(noise_std) * (0.5 + shot)
    out = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if jpeg_quality < 100:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
