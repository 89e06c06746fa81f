"""``domrand eval-bundle``: the aligned-pair bars of a bundle, measured through the wrapper's own path.

Every randomized frame here comes from ``StyleRandomizer.from_bundle`` (what
``StyleRandomizationObservation`` runs), one style seed per frame and style index::

    domrand eval-bundle --bundle domrand/assets/bundle \\
        --target-frames data/lab_seg_train --probe-frames data/probe_lab_train \\
        --target-eval-frames data/probe_lab_eval --sim-frames data/probe_sim --out eval.json

Inputs are ``domrand export-frames`` folders (``frames/``, ``labels.csv``; ``masks/`` with
``--masks``): ``--target-frames`` (with masks) trains the segmenter, ``--probe-frames`` (target
domain, labels) trains the cube localizer, ``--target-eval-frames`` (with masks and labels) are the
held-out target frames (ceilings, SWD reference, the target's own look spread), ``--sim-frames``
(with masks and labels) are the sim frames randomized and scored.

Figures (``results``):

* ``reconstruction``: PSNR (dB) of ``G(E(sim frame))`` (every ws and the spatial latent from E,
  const noise) and ``object_psnr`` over the task object's pixels. For a domain-conditional pair
  this is the in-domain sim reconstruction (G_sim = G with E's fine ws).
* ``geometry``: mIoU and per-class IoU of a segmenter trained on target frames, on held-out target
  frames (ceiling), raw sim frames (floor) and randomized sim frames (mean over styles).
* ``oracle_probe``: mean cube-position error (cm) of a localizer trained on target frames, on the
  same three sets.
* ``swd``: SWD (x1e3) of raw and randomized sim frames to the held-out target frames.
* ``diversity``: frame-mean colour spread (/255) across the styles of each randomized frame
  (mean over frames), the target frames' own spread across episodes, and their ratio.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domrand.bundle import Bundle, load_bundle
from domrand.envs.look_spread import frame_mean_colour_spread
from domrand.generator.train.dataset import load_images
from domrand.generator.nn.inverter import render
from domrand.generator.train.inverter_losses import class_squared_errors
from domrand.generator.visualize import image_grid, save_png
from domrand.geometry import geometry_score, load_frames_with_masks, train_segmenter
from domrand.metrics import psnr, swd, to_float_images
from domrand.randomizer import StyleRandomizer
from domrand.transfer.config import BenchmarkConfig, LocalizationConfig
from domrand.transfer.localization import localization_errors, predict_xy, train_localizer


def read_object_xy(folder: str | Path, n: int | None = None) -> np.ndarray:
    """``[N, 2]`` table xy (m) of the task object from an export-frames ``labels.csv``, frame order."""
    path = Path(folder) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a domrand export-frames folder)")
    with open(path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["frame"])
    if rows and not {"object_x", "object_y"} <= set(rows[0]):
        raise ValueError(f"{path}: no object_x/object_y columns")
    xy = np.array([[float(r["object_x"]), float(r["object_y"])] for r in rows], dtype=np.float64)
    return xy if n is None else xy[:n]


def _load_frames(folder: str | Path, resolution: int, limit: int | None) -> np.ndarray:
    images = load_images(Path(folder) / "frames", resolution, progress=False, min_images=2)
    return images if limit is None else images[:limit]


def randomized_styles(bundle: Any, frames: np.ndarray, styles: int, seed: int = 0, model: str = "teacher") -> np.ndarray:
    """``[styles, N, H, W, 3]``: every frame randomized with ``styles`` style seeds through ``StyleRandomizer``
    (``bundle``: a path or a loaded ``bundle.Bundle``; ``model``: teacher or the bundle's distilled student)."""
    R = StyleRandomizer.from_bundle(bundle, device="cpu", seed=seed, model=model)
    ids = list(range(len(frames)))
    out = []
    for s in range(styles):
        R.resample(ids, seed=seed * 1000 + s)
        out.append(R.randomize(frames, env_ids=ids))
    return np.stack(out)


@torch.no_grad()
def sim_reconstruction(b: Any, frames: np.ndarray, masks: np.ndarray | None, object_id: int | None) -> dict[str, float]:
    """PSNR of ``G(E(x))`` (E's ws and spatial latent, const noise) and its object PSNR; ``b`` a loaded ``bundle.Bundle``."""
    x = to_float_images(frames)
    recs = [render(b.G, b.E(x[i : i + 64]), b.E.keep_resolution).clamp(-1, 1) for i in range(0, len(x), 64)]
    rec = torch.cat(recs)
    result = {"psnr": float(psnr(rec, x).mean())}
    if masks is not None and object_id is not None:
        sse, count = class_squared_errors(rec, x, torch.from_numpy(masks))
        if count[object_id] > 0:
            result["object_psnr"] = float(10 * torch.log10(4.0 / (sse[object_id] / count[object_id])))
    return result


def train_probe(frames: np.ndarray, xy: np.ndarray, epochs: int, seed: int = 0):
    """The oracle probe: the transfer benchmark's localizer trained on target frames."""
    cfg = BenchmarkConfig(image_size=frames.shape[1], localization=LocalizationConfig(epochs=epochs))
    return train_localizer(frames[None], xy, cfg, seed, torch.device("cpu"))


def evaluate_bundle(
    bundle: Any,  # a bundle path or a loaded bundle.Bundle
    target_frames: str | Path,
    probe_frames: str | Path,
    target_eval_frames: str | Path,
    sim_frames: str | Path,
    *,
    styles: int = 4,
    seg_steps: int = 400,
    probe_epochs: int = 30,
    max_images: int | None = None,
    seed: int = 0,
    model: str = "teacher",
) -> dict[str, Any]:
    """All figures of the module docstring for one bundle (see there)."""
    path = str(getattr(bundle, "path", bundle))
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, device="cpu")
    res = int(bundle.G.img_resolution)
    seg_x, seg_m, class_ids = load_frames_with_masks(target_frames, res)
    ev_x, ev_m, _ = load_frames_with_masks(target_eval_frames, res, limit=max_images)
    sim_x, sim_m, sim_ids = load_frames_with_masks(sim_frames, res, limit=max_images)
    ev_xy, sim_xy = read_object_xy(target_eval_frames, len(ev_x)), read_object_xy(sim_frames, len(sim_x))
    probe_x, probe_xy = _load_frames(probe_frames, res, None), read_object_xy(probe_frames)
    if len(probe_x) != len(probe_xy):
        raise ValueError(f"{probe_frames}: {len(probe_x)} frames but {len(probe_xy)} label rows")
    ids = class_ids or sim_ids or {}
    object_id = ids.get("object")
    num_classes = int(max(seg_m.max(), ev_m.max(), sim_m.max())) + 1
    rand = randomized_styles(bundle, sim_x, styles, seed, model)  # [S, N, R, R, 3]
    seg = train_segmenter(seg_x, seg_m, num_classes, steps=seg_steps, seed=seed)
    probe = train_probe(probe_x, probe_xy, probe_epochs, seed)
    names = {v: k for k, v in ids.items()}

    def geo(frames: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
        g = geometry_score(seg, frames, masks, num_classes)
        per = {names.get(i, str(i)): float(v) for i, v in enumerate(g["per_class"]) if v is not None}
        return {"miou": float(g["miou"]), "per_class": per}

    def loc(frames: np.ndarray, xy: np.ndarray) -> float:
        return localization_errors(predict_xy(probe, frames, torch.device("cpu")), xy, 2.0)["error_cm"]

    rand_geo = [geo(r, sim_m) for r in rand]
    mean_geo = {"miou": float(np.mean([g["miou"] for g in rand_geo])),
                "per_class": {k: float(np.mean([g["per_class"].get(k, np.nan) for g in rand_geo])) for k in rand_geo[0]["per_class"]}}  # fmt: skip
    target_spread = frame_mean_colour_spread(ev_x)
    styles_spread = float(np.mean([frame_mean_colour_spread(rand[:, i]) for i in range(rand.shape[1])])) if styles > 1 else 0.0
    return {
        "bundle": path,
        "model": model,
        "n": {"sim": len(sim_x), "target_eval": len(ev_x), "segmenter_train": len(seg_x), "probe_train": len(probe_x), "styles": styles},
        "reconstruction": sim_reconstruction(bundle, sim_x, sim_m, object_id),
        "geometry": {"target": geo(ev_x, ev_m), "sim": geo(sim_x, sim_m), "randomized": mean_geo},
        "oracle_probe_cm": {"target": loc(ev_x, ev_xy), "sim": loc(sim_x, sim_xy),
                            "randomized": float(np.mean([loc(r, sim_xy) for r in rand]))},  # fmt: skip
        "swd": {"sim": float(swd(sim_x, ev_x)["mean"]), "randomized": float(swd(rand.reshape(-1, *rand.shape[2:]), ev_x)["mean"])},
        "diversity": {"styles_spread": styles_spread, "target_spread": target_spread, "ratio": styles_spread / max(target_spread, 1e-9)},
    }


def save_sheet(path: str | Path, sim: np.ndarray, rand: np.ndarray, rows: int = 8) -> None:
    """PNG: per row a sim frame and its randomizations."""
    cells = [sim[:rows]] + [r[:rows] for r in rand]
    grid = np.stack(cells, 1).reshape(-1, *sim.shape[1:])
    save_png(path, image_grid(grid, len(cells), pad=1), 2)
