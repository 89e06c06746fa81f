"""Where a bundle's look lives: frame-mean colour spread of its styles (the diversity figure).

    python scripts/style_spread.py BUNDLE [BUNDLE ...] [--sim-frames DIR|.npy|.npy.xz] [--styles 12]

For each bundle, in /255 with ``envs.look_spread.frame_mean_colour_spread`` (std across images of
the per-image mean colour, averaged over R, G, B):

* ``randomizer``: the wrapper's path. Each of 16 sim frames randomized with ``--styles`` style
  seeds; the spread across styles per frame, averaged over frames. (Without ``--sim-frames``:
  16 reset frames of ``domrand/Reach-v0`` in the sim domain.)
* ``G all``: 64 generator samples (psi 0.7, constant noise), every ws random.
* ``G fine@16`` / ``G fine@8``: the same 64 samples with the ws up to 16x16 (resp. 8x8) taken from
  the first sample, so only the finer styles vary: how much of the look the randomizer can change
  while keeping the coarse styles.

Compare with the target domain's own spread across episodes (``python scripts/look_spread.py``).
"""

from __future__ import annotations

import argparse
import io
import lzma

import numpy as np
import torch

from domrand.bundle import load_bundle
from domrand.envs.look_spread import episode_frames, frame_mean_colour_spread
from domrand.randomizer import StyleRandomizer


def _sim_frames(source: str | None, n: int = 16) -> np.ndarray:
    if source is None:
        return episode_frames("sim", episodes=n)
    if source.endswith(".xz"):
        return np.load(io.BytesIO(lzma.open(source).read()))[:: max(1, 4000 // n)][:n]
    from domrand.generator.train.dataset import load_images

    images = load_images(source, 64, progress=False)
    return images[:: max(1, len(images) // n)][:n]


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, 3]``."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def randomizer_spread(path: str, frames: np.ndarray, styles: int) -> float:
    """Spread across ``styles`` style seeds of each randomized frame, averaged over frames."""
    R = StyleRandomizer.from_bundle(path, device="cpu", seed=0)
    ids = list(range(len(frames)))
    outs = []
    for s in range(styles):
        R.resample(ids, seed=1000 + s)
        outs.append(R.randomize(frames, env_ids=ids))
    per_frame = np.stack(outs, axis=1)  # [frames, styles, H, W, 3]
    return float(np.mean([frame_mean_colour_spread(f) for f in per_frame]))


def generator_spreads(path: str, n: int = 64) -> dict[str, float]:
    G = load_bundle(path, device="cpu").G
    gen = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=gen), psi=0.7)
        out["G all"] = frame_mean_colour_spread(_to_uint8(G.synthesis(ws, noise_mode="const")))
        for keep in (16, 8):
            coarse = G.synthesis.num_ws_up_to(keep)
            mixed = ws.clone()
            mixed[:, :coarse] = ws[:1, :coarse]
            out[f"G fine@{keep}"] = frame_mean_colour_spread(_to_uint8(G.synthesis(mixed, noise_mode="const")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", help="bundle folders or files")
    parser.add_argument("--sim-frames", default=None, help="sim frames (folder, .npy, .npz, .npy.xz)")
    parser.add_argument("--styles", type=int, default=12, help="style seeds per frame (default 12)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = _sim_frames(args.sim_frames)
    print(f"{'bundle':<40}{'randomizer':>11}{'G all':>8}{'G fine@16':>11}{'G fine@8':>10}   (/255)")
    for path in args.bundles:
        g = generator_spreads(path)
        r = randomizer_spread(path, frames, args.styles)
        print(f"{path[-40:]:<40}{r:>11.2f}{g['G all']:>8.2f}{g['G fine@16']:>11.2f}{g['G fine@8']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
