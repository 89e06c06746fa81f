"""Fitting frames of any size and aspect ratio to a square model input, and back.

``fit_frames(frames, size, mode)``: uint8 ``[N, H, W, 3]`` -> ``[N, size, size, 3]``:

* ``pad``: keep the aspect ratio; scale the long side to ``size`` and pad the short side
  symmetrically with the frame's own edge pixels (replicated, so no black bars for a generator to
  paint).
* ``crop``: keep the aspect ratio; scale the short side to ``size`` and cut the centre.
* ``stretch``: resize each side independently (distorts non-square frames).

``unfit_frames(images, (H, W), mode)`` maps model-sized images back to ``H x W``: the inverse of
``pad`` (cut the padding, resize) and ``stretch``; for ``crop`` the centre is resized back and the
uncovered margins are taken from ``original`` when given (else replicated from the centre's edge).
Area resampling down, bilinear up.
"""

from __future__ import annotations

import cv2
import numpy as np

FIT_MODES = ("pad", "crop", "stretch")


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == (w, h):
        return img
    down = w * h < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)


def _pad_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """``(top, left, inner_h, inner_w)`` of an ``h x w`` frame scaled into a ``size`` square."""
    scale = size / max(h, w)
    ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
    return (size - ih) // 2, (size - iw) // 2, ih, iw


def _crop_box(h: int, w: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the central square of an ``h x w`` frame."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def check_mode(mode: str) -> str:
    if mode not in FIT_MODES:
        raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, got {mode!r}")
    return mode


def fit_frames(frames: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, size, size, 3]`` (see the module docstring)."""
    check_mode(mode)
    n, h, w = frames.shape[:3]
    out = np.empty((n, size, size, frames.shape[3]), np.uint8)
    for i, f in enumerate(frames):
        if mode == "stretch" or h == w:
            out[i] = _resize(f, size, size)
        elif mode == "crop":
            top, left, side = _crop_box(h, w)
            out[i] = _resize(f[top : top + side, left : left + side], size, size)
        else:
            top, left, ih, iw = _pad_box(h, w, size)
            inner = _resize(f, iw, ih)
            out[i] = cv2.copyMakeBorder(inner, top, size - ih - top, left, size - iw - left, cv2.BORDER_REPLICATE)
    return out


def unfit_frames(images: np.ndarray, shape: tuple[int, int], mode: str = "pad", original: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[N, size, size, 3]`` -> ``[N, H, W, 3]`` with ``shape = (H, W)`` (see the module docstring)."""
    check_mode(mode)
    h, w = shape
    n, size = images.shape[:2]
    out = np.empty((n, h, w, images.shape[3]), np.uint8)
    for i, img in enumerate(images):
        if mode == "stretch" or h == w:
            out[i] = _resize(img, w, h)
        elif mode == "crop":
            top, left, side = _crop_box(h, w)
            centre = _resize(img, side, side)
            if original is not None:
                out[i] = original[i]
            else:
                out[i] = cv2.copyMakeBorder(centre, top, h - side - top, left, w - side - left, cv2.BORDER_REPLICATE)
            out[i, top : top + side, left : left + side] = centre
        else:
            top, left, ih, iw = _pad_box(h, w, size)
            out[i] = _resize(img[top : top + ih, left : left + iw], w, h)
    return out
