"""``domrand generate``: images from a trained generator by seed, and a style-mixing figure.

Example::

    domrand generate --generator runs/gen --seeds 0-15 --trunc 0.7 --out samples/
    domrand generate --generator my_bundle --mix-rows 1,2,3 --mix-cols 10,11,12,13 --out mixing/

Writes ``seed<NNNN>.png`` per seed and ``grid.png`` (the seeds in order, seed numbers written
under each image); with ``--mix-rows/--mix-cols`` also ``mixing.png``: the first row holds the
column seeds' images, the first column the row seeds' images, and each cell takes the styles up to
``--mix-resolution`` (coarse: layout) from its row's seed and the rest (fine: appearance) from its
column's seed. z for seed s is ``randn(z_dim)`` of a ``torch.Generator`` seeded with s; noise is
the generator's constant noise unless ``--noise random``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from domrand import checkpoint
from domrand.bundle import load_bundle
from domrand.generator.train import runs
from domrand.generator.nn.inverter import compose_styles
from domrand.generator.visualize import to_uint8


def load_generator(path: str | Path) -> torch.nn.Module:
    """A bundle folder/file or a generator run dir, checkpoint dir or ``G_ema`` file -> the generator."""
    p = Path(path)
    if (p / "bundle.json").is_file():
        return load_bundle(p, device="cpu").G
    return checkpoint.load_network(runs.resolve_run_file(p, "generator"), "Generator", "cpu").requires_grad_(False)


@torch.no_grad()
def seed_ws(G: torch.nn.Module, seeds: list[int], trunc: float) -> torch.Tensor:
    """ws ``[len(seeds), num_ws, w_dim]`` of the given seeds."""
    z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return G.mapping(z, psi=trunc)


@torch.no_grad()
def render(G: torch.nn.Module, ws: torch.Tensor, noise: str) -> np.ndarray:
    """uint8 ``[N, R, R, 3]``."""
    return to_uint8(G.synthesis(ws, noise_mode=noise).clamp(-1, 1))


def labelled_grid(images: np.ndarray, labels: list[str], cols: int, scale: int = 2) -> np.ndarray:
    """Images ``[N, R, R, 3]`` in a grid, each upscaled ``scale`` x with its label below it."""
    r = images.shape[1] * scale
    cells = []
    for img, label in zip(images, labels):
        big = cv2.resize(img, (r, r), interpolation=cv2.INTER_NEAREST)
        strip = np.full((14, r, 3), 255, np.uint8)
        cv2.putText(strip, label, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.concatenate([big, strip]))
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % cols)
    rows = [np.concatenate(cells[i : i + cols], 1) for i in range(0, len(cells), cols)]
    return np.concatenate(rows, 0)


def mixing_figure(G: torch.nn.Module, rows: list[int], cols: list[int], trunc: float, resolution: int, noise: str) -> np.ndarray:
    """The style-mixing figure (see the module docstring) as one uint8 image."""
    k = G.synthesis.num_ws_up_to(resolution)
    w_rows, w_cols = seed_ws(G, rows, trunc), seed_ws(G, cols, trunc)
    top, left = render(G, w_cols, noise), render(G, w_rows, noise)
    blank = np.full_like(top[0], 255)
    cells, labels = [blank] + list(top), [f"coarse<={resolution}"] + [f"fine {s}" for s in cols]
    for i, s in enumerate(rows):
        mixed = compose_styles(w_rows[i : i + 1].expand(len(cols), -1, -1), w_cols[:, k:], k)
        cells += [left[i]] + list(render(G, mixed, noise))
        labels += [f"coarse {s}"] + [""] * len(cols)
    return labelled_grid(np.stack(cells), labels, len(cols) + 1)


def write_images(
    generator: str | Path,
    out: str | Path,
    seeds: list[int],
    trunc: float = 1.0,
    noise: str = "const",
    mix_rows: list[int] | None = None,
    mix_cols: list[int] | None = None,
    mix_resolution: int = 16,
    cols: int = 8,
) -> str:
    """Write ``seedNNNN.png`` per seed, ``grid.png`` and (with ``mix_rows`` and ``mix_cols``)
    ``mixing.png`` into ``out``; returns what was written, in words."""
    if (mix_rows is None) != (mix_cols is None):
        raise ValueError("style mixing needs both --mix-rows and --mix-cols")
    G = load_generator(generator)
    if mix_resolution not in G.synthesis.block_resolutions:
        raise ValueError(f"--mix-resolution must be one of {G.synthesis.block_resolutions}, got {mix_resolution}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = render(G, seed_ws(G, seeds, trunc), noise)
    for s, img in zip(seeds, images):
        cv2.imwrite(str(out / f"seed{s:04d}.png"), img[..., ::-1])
    cv2.imwrite(str(out / "grid.png"), labelled_grid(images, [f"seed {s}" for s in seeds], cols)[..., ::-1])
    wrote = f"{len(images)} images and grid.png"
    if mix_rows is not None:
        fig = mixing_figure(G, mix_rows, mix_cols, trunc, mix_resolution, noise)
        cv2.imwrite(str(out / "mixing.png"), fig[..., ::-1])
        wrote += " and mixing.png"
    return wrote
