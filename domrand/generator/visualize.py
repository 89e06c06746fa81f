"""Pictures of a training run: image grids, the G_ema sample sheet, the SWD curve.

``image_grid`` tiles images into one ``uint8 [H, W, 3]`` array; ``save_png`` writes it
atomically. ``sample_sheet`` renders the sheet written as ``samples_<kimg>.png``:

* ``rows x cols`` G_ema images from fixed latents (``psi = 1``),
* one row of the first ``cols`` latents truncated with ``psi`` (default 0.5),
* a style-mixing panel: the top row shows B sources, the left column A sources, each cell takes
  coarse styles (up to ``mix_resolution``, at most half the image size) from its row's A and the
  rest from its column's B.

Blocks are separated by a grey band. Everything uses constant noise so sheets are comparable
across kimg.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from domrand.generator.nn.networks import mix_styles
from domrand.utils import atomic_path

_GAP = 4
_GAP_VALUE = 128


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float ``[N, 3, H, W]`` in [-1, 1] (torch or numpy) or uint8 ``[N, H, W, 3]`` -> uint8 NHWC."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        return images.cpu().numpy()
    x = torch.as_tensor(images).detach().float().cpu()
    x = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor | np.ndarray, cols: int, pad: int = 0) -> np.ndarray:
    """Tile images (see ``to_uint8``) row-major into ``ceil(N/cols)`` rows: uint8 ``[H, W, 3]``."""
    imgs = to_uint8(images)
    n, h, w, c = imgs.shape
    cols = max(1, min(int(cols), n))
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), _GAP_VALUE, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = imgs[i]
    return out


def stack_blocks(blocks: Sequence[np.ndarray], gap: int = _GAP) -> np.ndarray:
    """Stack uint8 ``[h_i, w_i, 3]`` blocks vertically, left-aligned, grey gaps between."""
    width = max(b.shape[1] for b in blocks)
    height = sum(b.shape[0] for b in blocks) + gap * (len(blocks) - 1)
    out = np.full((height, width, 3), _GAP_VALUE, np.uint8)
    y = 0
    for b in blocks:
        out[y : y + b.shape[0], : b.shape[1]] = b
        y += b.shape[0] + gap
    return out


def save_png(path: str | os.PathLike, image: np.ndarray, upscale: int = 1) -> None:
    """Write uint8 ``[H, W, 3]`` as PNG atomically; ``upscale`` > 1 enlarges by nearest neighbour."""
    img = Image.fromarray(np.ascontiguousarray(image))
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def grid_upscale(resolution: int) -> int:
    """Nearest-neighbour enlargement so small images stay visible (16 px -> x4, 64 px -> x1)."""
    return max(1, 64 // int(resolution))


@torch.no_grad()
def sample_sheet(
    G: torch.nn.Module,
    z: torch.Tensor,
    cols: int,
    *,
    psi: float = 0.5,
    mix_rows: int = 3,
    mix_cols: int = 4,
    mix_resolution: int = 16,
    active_resolution: int | None = None,
    alpha: float = 1.0,
    batch: int = 16,
) -> np.ndarray:
    """Render the sample sheet (see module doc). ``z`` ``[rows*cols, z_dim]`` fixed latents (its
    first ``mix_rows + mix_cols`` also feed the mixing panel). Returns uint8 ``[H, W, 3]`` at the
    generator's (or ``active_resolution``'s) pixel size."""
    device = next(G.parameters()).device
    z = z.to(device)
    syn = dict(noise_mode="const", active_resolution=active_resolution, alpha=alpha)

    def render(ws: torch.Tensor) -> torch.Tensor:
        return torch.cat([G.synthesis(ws[i : i + batch], **syn).float().cpu() for i in range(0, len(ws), batch)])

    ws = torch.cat([G.mapping(z[i : i + batch]) for i in range(0, len(z), batch)])
    blocks = [image_grid(render(ws), cols, pad=0)]
    trunc = G.mapping.truncate(ws[:cols], psi=psi)
    blocks.append(image_grid(render(trunc), cols))
    na, nb = min(mix_rows, len(z)), min(mix_cols, len(z))
    ws_a, ws_b = ws[:na], ws[na : na + nb] if len(z) >= na + nb else ws[:nb]
    img_a, img_b = render(ws_a), render(ws_b)
    res = G.img_resolution if active_resolution is None else active_resolution
    cross = G.synthesis.num_ws_up_to(max(4, min(mix_resolution, res // 2)))
    cells = [torch.full_like(img_a[0], -1.0 + _GAP_VALUE / 127.5)]  # top-left corner: grey
    cells.extend(img_b)
    for i in range(na):
        cells.append(img_a[i])
        mixed = mix_styles(ws_a[i : i + 1].expand(nb, -1, -1), ws_b, cross)
        cells.extend(render(mixed))
    blocks.append(image_grid(torch.stack(cells), nb + 1))
    return stack_blocks(blocks)


def read_swd_records(metrics_path: str | os.PathLike) -> list[tuple[float, float]]:
    """``[(kimg, mean SWD)]`` from a run's metrics.jsonl (last record wins per kimg)."""
    path = Path(metrics_path)
    if not path.is_file():
        return []
    by_kimg: dict[float, float] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "swd" and "swd_mean" in rec:
            by_kimg[round(float(rec["kimg"]), 3)] = float(rec["swd_mean"])
    return sorted(by_kimg.items())


def plot_swd_curve(path: str | os.PathLike, points: Sequence[tuple[float, float]], title: str = "SWD vs kimg") -> None:
    """Plot mean SWD (x1e3) against kimg to a PNG (matplotlib if available, else OpenCV lines)."""
    if not points:
        return
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_cv2(path, xs, ys)
        return
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(xs, ys, marker="o", markersize=3)
    ax.set_xlabel("kimg")
    ax.set_ylabel("SWD (x1e3, mean over levels)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _plot_cv2(path: str | os.PathLike, xs: list[float], ys: list[float]) -> None:
    import cv2

    w, h, m = 480, 300, 30
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pts = np.array(
        [[m + (x - x0) / (x1 - x0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m)] for x, y in zip(xs, ys)],
        np.int32,
    )
    cv2.rectangle(img, (m, m), (w - m, h - m), (0, 0, 0), 1)
    cv2.polylines(img, [pts], False, (200, 60, 0), 2)
    cv2.putText(img, f"SWD {y0:.1f}..{y1:.1f}  kimg {x0:g}..{x1:g}", (m, m - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    save_png(path, img)
