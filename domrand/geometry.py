"""Geometry score: does a translated frame keep the source frame's layout?

The FCN-score idea, with a network trained here and no downloaded weights: a small segmentation
network (:class:`SegNet`) is trained on target-domain frames with their class masks (exported by
``domrand export-frames --masks``), then applied to other frames; the score is the mean IoU of its
prediction against those frames' own masks. Applied to randomized sim frames it measures whether
randomization kept the sim frame's geometry *and* made it look enough like the target domain for a
target-trained model to parse it. Report it with a floor (the raw sim frames) and a ceiling
(held-out target frames).

Images are ``uint8 [N, H, W, 3]`` (or float ``[N, 3, H, W]`` in ``[-1, 1]``); masks are integer
class ids ``[N, H, W]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "SegNet",
    "confusion_matrix",
    "geometry_score",
    "load_frames_with_masks",
    "mean_iou",
    "predict",
    "train_segmenter",
]


def _as_float(images: np.ndarray | torch.Tensor, device: Any = "cpu") -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == torch.uint8:
        return images.to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return images.to(device).float()


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(min(8, cout), cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.GroupNorm(min(8, cout), cout),
            nn.ReLU(inplace=True),
        )


class SegNet(nn.Module):
    """A small U-Net: images ``[N, 3, H, W]`` in ``[-1, 1]`` -> class logits ``[N, K, H, W]``.

    Three levels (H, H/2, H/4) with skip connections; H and W must be divisible by 4.
    """

    def __init__(
        self,
        num_classes: int,  # number of mask classes K
        width: int = 16,  # channels at full resolution (x2, x4 below)
    ):
        super().__init__()
        self.num_classes, self.width = int(num_classes), int(width)
        w = self.width
        self.enc0 = _ConvBlock(3, w)
        self.enc1 = _ConvBlock(w, 2 * w)
        self.enc2 = _ConvBlock(2 * w, 4 * w)
        self.dec1 = _ConvBlock(4 * w + 2 * w, 2 * w)
        self.dec0 = _ConvBlock(2 * w + w, w)
        self.head = nn.Conv2d(w, self.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"images: expected [N, 3, H, W] with H, W divisible by 4, got {list(x.shape)}")
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d1 = self.dec1(torch.cat([F.interpolate(e2, scale_factor=2.0, mode="nearest"), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, scale_factor=2.0, mode="nearest"), e0], 1))
        return self.head(d0)


def train_segmenter(
    images: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    num_classes: int | None = None,
    *,
    steps: int = 400,  # Adam steps
    batch: int = 32,  # images per step
    lr: float = 3e-3,  # Adam learning rate (cosine decay to 0)
    width: int = 16,  # SegNet width
    xflip: bool = True,  # mirror image + mask with probability 0.5
    seed: int = 0,  # initialization and batch RNG
    device: Any = "cpu",
    progress: bool = False,
) -> SegNet:
    """Train a :class:`SegNet` on ``images`` with class ``masks``; returns it in eval mode.

    Class-balanced cross-entropy (weights ``1/sqrt(frequency)``) so small objects count.
    """
    x_all = _as_float(images, "cpu")
    y_all = torch.as_tensor(np.asarray(masks), dtype=torch.int64)
    if y_all.shape != (x_all.shape[0], x_all.shape[2], x_all.shape[3]):
        raise ValueError(f"masks: expected [N, H, W] = {[x_all.shape[0], x_all.shape[2], x_all.shape[3]]}, got {list(y_all.shape)}")
    k = int(num_classes) if num_classes is not None else int(y_all.max()) + 1
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = SegNet(k, width).to(device)
    freq = torch.bincount(y_all.flatten(), minlength=k).float()
    weight = torch.where(freq > 0, (freq.sum() / freq.clamp(min=1)).sqrt(), torch.zeros_like(freq))
    weight = (weight / weight[freq > 0].mean()).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + np.cos(np.pi * min(i / max(steps, 1), 1.0))))
    from tqdm import tqdm

    net.train()
    for _ in tqdm(range(int(steps)), disable=not progress, desc="segmenter"):
        idx = torch.randint(x_all.shape[0], (min(batch, x_all.shape[0]),), generator=gen)
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        if xflip:
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            y = torch.where(flip[:, None, None], y.flip(2), y)
        loss = F.cross_entropy(net(x), y, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: SegNet, images: np.ndarray | torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Class ids ``int64 [N, H, W]`` predicted by ``net`` (on CPU)."""
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        out.append(net(_as_float(images[i : i + batch], device)).argmax(1).cpu())
    return torch.cat(out)


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """``[K, K]`` counts, rows = true class, columns = predicted class."""
    p = torch.as_tensor(np.asarray(pred), dtype=torch.int64).flatten()
    t = torch.as_tensor(np.asarray(target), dtype=torch.int64).flatten()
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in size: {p.numel()} vs {t.numel()}")
    ok = (t >= 0) & (t < num_classes)
    return torch.bincount(t[ok] * num_classes + p[ok].clamp(0, num_classes - 1), minlength=num_classes**2).reshape(num_classes, num_classes)


def mean_iou(pred, target, num_classes: int) -> dict[str, Any]:
    """Dataset-level IoU per class (over all pixels of all images) and their mean.

    Classes absent from both prediction and target are left out of the mean. Returns
    ``{"miou": float, "per_class": [float | None], "pixel_acc": float}``.
    """
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    per = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(num_classes)]
    present = [v for v in per if v is not None]
    return {
        "miou": float(np.mean(present)) if present else float("nan"),
        "per_class": per,
        "pixel_acc": float(tp.sum() / cm.sum().clamp(min=1)),
    }


def geometry_score(net: SegNet, frames, masks, num_classes: int | None = None) -> dict[str, Any]:
    """Mean IoU of ``net``'s segmentation of ``frames`` against ``masks`` (see :func:`mean_iou`)."""
    k = num_classes if num_classes is not None else net.num_classes
    return mean_iou(predict(net, frames), masks, k)


def load_frames_with_masks(
    folder: str | os.PathLike, resolution: int | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, int] | None]:
    """Read an ``export-frames --masks`` folder: ``(frames uint8 [N, R, R, 3], masks uint8 [N, R, R], class_ids)``.

    Layout: ``DIR/frames/*.png`` and ``DIR/masks/*.png`` with matching names, ``DIR/meta.json``
    (its ``class_ids``, when present, are returned). Frames are resized with area averaging,
    masks with nearest neighbour, when ``resolution`` differs from the files'.
    """
    import cv2

    root = Path(folder)
    fdir, mdir = root / "frames", root / "masks"
    if not fdir.is_dir() or not mdir.is_dir():
        raise FileNotFoundError(f"{root}: expected frames/ and masks/ subfolders (domrand export-frames --masks)")
    names = sorted(p.name for p in fdir.glob("*.png"))
    missing = [n for n in names if not (mdir / n).is_file()]
    if missing:
        raise ValueError(f"{root}: {len(missing)} frame(s) have no mask (e.g. masks/{missing[0]})")
    if not names:
        raise ValueError(f"{root}: no PNG frames under frames/")
    if limit is not None:
        names = names[: int(limit)]
    frames, masks = [], []
    for n in names:
        bgr = cv2.imread(str(fdir / n), cv2.IMREAD_COLOR)
        m = cv2.imread(str(mdir / n), cv2.IMREAD_UNCHANGED)
        if bgr is None or m is None:
            raise ValueError(f"{root}: cannot read {n}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if m.ndim == 3:
            m = m[..., 0]
        if resolution is not None and rgb.shape[0] != resolution:
            rgb = cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_AREA)
        if resolution is not None and m.shape[0] != resolution:
            m = cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_NEAREST)
        frames.append(rgb)
        masks.append(m)
    class_ids = None
    meta = root / "meta.json"
    if meta.is_file():
        try:
            class_ids = json.loads(meta.read_text()).get("class_ids")
        except (json.JSONDecodeError, AttributeError):
            class_ids = None
    return np.stack(frames).astype(np.uint8), np.stack(masks).astype(np.uint8), class_ids
