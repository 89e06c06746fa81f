"""``domrand eval-inverter``: reconstruction PSNR/SSIM, geometry score and latency of an inverter.

Example (frames from ``domrand export-frames --masks``)::

    domrand eval-inverter --inverter runs/target64-E \\
        --target-data data/target_eval/frames \\
        --target-frames data/target_train --target-eval-frames data/target_eval \\
        --sim-frames data/sim_eval --out runs/target64-E/eval.json

* Reconstruction: held-out generator samples (fixed seed; const noise up to ``keep_resolution``,
  random above) and target images; PSNR (dB) and SSIM of ``G(E(x))``, encoder only and with
  ``--refine-steps`` refinement steps.
* Sim-frame reconstruction (``--sim-frames``, an ``export-frames --masks`` folder): PSNR/SSIM of
  ``G(E(sim frame))`` and per-class PSNR on the masked pixels (``per_class_psnr``; ``object_psnr``
  for the task object, the figure the object-aware loss moves), encoder only and refined. It means
  most for an inverter into G_sim (in-domain); for one into G_target it only shows how far sim
  frames are from what G can paint.
* Geometry score (DESIGN.md): a small segmentation network is trained on target-domain frames
  with masks, then applied to (a) held-out target frames (the ceiling), (b) raw sim frames (the
  floor), (c) randomized sim frames (coarse ws + spatial latent kept, fine ws drawn from
  ``G.mapping`` with ``--psi``, fine noise resampled), encoder only and refined; mean IoU
  against each frame's own mask.
* Latency: ms per frame at batch 1 and 64: encoder only, encoder + refinement, and a full
  randomization (encoder + synthesis).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from domrand import checkpoint
from domrand.generator.train.dataset import load_images
from domrand.generator.nn.inverter import layout_noise, render
from domrand.generator.train.inverter_losses import class_squared_errors
from domrand.generator.train.inverter import randomize
from domrand.generator.train.runs import resolve_run_file
from domrand.generator.visualize import to_uint8
from domrand.geometry import geometry_score, load_frames_with_masks, train_segmenter
from domrand.metrics import psnr, ssim
from domrand.randomizer import StyleRandomizer
from domrand.utils import resolve_device


def _load_pair(inverter: str, generator: str | None, device) -> tuple[Any, Any, Path, dict]:
    e_file = resolve_run_file(inverter, "inverter")
    info = checkpoint.read_network_info(e_file)
    source = generator or info["extra"].get("generator_source")
    if not source:
        raise ValueError(f"{e_file} records no generator; pass --generator")
    g_file = resolve_run_file(source, "generator")
    G = checkpoint.load_network(g_file, "Generator", device).requires_grad_(False)
    E = checkpoint.load_network(e_file, "Inverter", device)
    E.check_pairing(G)
    return E, G, e_file, info


def _batches(x: torch.Tensor, batch: int):
    for i in range(0, len(x), batch):
        yield x[i : i + batch]


def _to_float(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)


def reconstruction_scores(E, G, images: torch.Tensor, steps: int, lr: float, batch: int = 64) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of ``G(E.invert(images, steps))`` against ``images``."""
    ps, ss = [], []
    for x in _batches(images, batch):
        out = E.invert(x, G, steps=steps, lr=lr, check=False)
        with torch.no_grad():
            rec = render(G, out, E.keep_resolution).clamp(-1, 1)
        ps.append(psnr(rec, x.clamp(-1, 1)))
        ss.append(ssim(rec, x.clamp(-1, 1)))
    return {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean()), "n": int(len(images))}


@torch.no_grad()
def generator_eval_samples(G, n: int, keep_resolution: int, seed: int = 123_456, batch: int = 64) -> torch.Tensor:
    """Held-out generator samples: fixed seed, const noise up to keep_resolution, random above."""
    rng = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    out = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = torch.randn(m, G.z_dim, generator=rng).to(device)
        noise = layout_noise(G, m, keep_resolution, "random", generator=rng, device=device)
        out.append(G.synthesis(G.mapping(z), noise=noise))
    return torch.cat(out)


def randomize_frames(E, G, frames: torch.Tensor, steps: int, lr: float, psi: float, seed: int, batch: int = 64) -> np.ndarray:
    """Randomized versions (uint8 ``[N, R, R, 3]``) of float frames ``[N, 3, R, R]``, made by
    ``StyleRandomizer`` (the wrapper's own path; one style seed per frame, ``steps`` refinement
    steps). ``lr`` is accepted for the callers' symmetry; the randomizer refines with E's default."""
    R = StyleRandomizer(G, E, psi=psi, refine_steps=steps, seed=seed, max_batch=batch, dtype="float32", check_pairing=False)
    ids = list(range(len(frames)))
    R.resample(ids, seed=seed)
    return R.randomize(to_uint8(frames.clamp(-1, 1)), env_ids=ids)


def sim_reconstruction_scores(
    E, G, frames: torch.Tensor, masks: torch.Tensor, class_names: dict[int, str], steps: int, lr: float, batch: int = 64
) -> dict[str, Any]:
    """PSNR/SSIM of ``G(E.invert(frames))`` and PSNR per mask class (pooled over the class's pixels).

    ``frames``: float ``[N, 3, R, R]`` in ``[-1, 1]``; ``masks``: uint8 ``[N, R, R]``; ``class_names``:
    id -> name. Returns ``psnr``, ``ssim``, ``per_class_psnr`` ({name: dB} for classes present),
    ``per_class_pixels`` and, when a class is named ``object``, ``object_psnr``.
    """
    ps, ss = [], []
    sse = torch.zeros(256, dtype=torch.float64)
    count = torch.zeros(256, dtype=torch.float64)
    for x, m in zip(_batches(frames, batch), _batches(masks, batch)):
        out = E.invert(x, G, steps=steps, lr=lr, check=False)
        with torch.no_grad():
            rec = render(G, out, E.keep_resolution).clamp(-1, 1)
        ps.append(psnr(rec, x.clamp(-1, 1)))
        ss.append(ssim(rec, x.clamp(-1, 1)))
        a, b = class_squared_errors(rec, x.clamp(-1, 1), m)
        sse += a.cpu()
        count += b.cpu()
    per_class: dict[str, float] = {}
    pixels: dict[str, int] = {}
    for cid in torch.nonzero(count).flatten().tolist():
        name = class_names.get(cid, str(cid))
        mse = float(sse[cid] / count[cid])
        per_class[name] = float("inf") if mse == 0 else 10 * float(np.log10(4.0 / mse))
        pixels[name] = int(count[cid])
    result: dict[str, Any] = {
        "psnr": float(torch.cat(ps).mean()),
        "ssim": float(torch.cat(ss).mean()),
        "n": int(len(frames)),
        "per_class_psnr": per_class,
        "per_class_pixels": pixels,
    }
    if "object" in per_class:
        result["object_psnr"] = per_class["object"]
    return result


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def latency(E, G, steps: int, lr: float, repeats: int = 10, seed: int = 0) -> dict[str, float]:
    """Milliseconds per frame: encoder, encoder + ``steps`` refinement, encoder + synthesis."""
    device = next(G.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    R = E.img_resolution
    result = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for b in (1, 64):
        x = torch.rand(b, 3, R, R, generator=rng).to(device) * 2 - 1
        reps = repeats if b == 1 else max(1, repeats // 3)

        def enc():
            with torch.no_grad():
                E(x)
            sync()

        def ref():
            E.invert(x, G, steps=steps, lr=lr, check=False)
            sync()

        def rand():
            with torch.no_grad():
                randomize(G, E(x), E.keep_resolution, rng)
            sync()

        result[f"encoder_b{b}"] = _time(enc, reps) * 1000 / b
        result[f"encoder+synthesis_b{b}"] = _time(rand, reps) * 1000 / b
        result[f"encoder+refine{steps}_b{b}"] = _time(ref, max(1, reps // 3)) * 1000 / b
    return result


def evaluate_inverter(
    inverter: str | Path,
    generator: str | Path | None = None,
    *,
    target_data: str | Path | None = None,
    target_frames: str | Path | None = None,
    target_eval_frames: str | Path | None = None,
    sim_frames: str | Path | None = None,
    n_gen: int = 256,
    max_images: int = 512,
    refine_steps: int | None = None,
    refine_lr: float = 0.02,
    psi: float = 0.7,
    seg_steps: int = 400,
    latency_repeats: int | None = 10,
    device: str = "cpu",
    seed: int = 0,
    batch: int = 64,
) -> dict[str, Any]:
    """The evaluation of the inverter in ``inverter`` (run dir or file) with its generator (see the
    module docstring); ``latency_repeats=None`` skips the latency measurement."""
    device = resolve_device(device)
    E, G, e_file, info = _load_pair(inverter, generator, device)
    R, keep = E.img_resolution, E.keep_resolution
    steps = refine_steps
    if steps is None:
        cfg_file = e_file.parent / "config.yaml"
        steps = 20
        if cfg_file.is_file():
            steps = int(((yaml.safe_load(cfg_file.read_text()) or {}).get("training") or {}).get("refine_steps", 20))
    lr = refine_lr
    results: dict[str, Any] = {
        "inverter": str(e_file),
        "kimg": info["extra"].get("kimg"),
        "resolution": R,
        "keep_resolution": keep,
        "spatial_latent": bool(E.spatial_latent),
        "refine_steps": steps,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    # reconstruction
    recon: dict[str, Any] = {}
    x = generator_eval_samples(G, n_gen, keep)
    recon["generator_samples"] = {
        "encoder": reconstruction_scores(E, G, x, 0, lr, batch),
        f"refined{steps}": reconstruction_scores(E, G, x, steps, lr, batch),
    }
    if target_data:
        imgs = load_images(target_data, R, min_images=1, progress=False)[: max_images]
        t = _to_float(imgs, device)
        recon["target_images"] = {
            "encoder": reconstruction_scores(E, G, t, 0, lr, batch),
            f"refined{steps}": reconstruction_scores(E, G, t, steps, lr, batch),
        }
    sim_loaded = None
    if sim_frames:
        sf, sm, sim_ids = load_frames_with_masks(sim_frames, R, limit=max_images)
        sim_loaded = (sf, sm, sim_ids)
        names_by_id = {int(v): str(k) for k, v in (sim_ids or {}).items()}  # no meta.json: ids as names
        sim_x, sim_m = _to_float(sf, device), torch.from_numpy(sm).to(device)
        recon["sim_frames"] = {"encoder": sim_reconstruction_scores(E, G, sim_x, sim_m, names_by_id, 0, lr, batch)}
        if steps:  # refined0 would repeat the encoder's figures
            recon["sim_frames"][f"refined{steps}"] = sim_reconstruction_scores(E, G, sim_x, sim_m, names_by_id, steps, lr, batch)
    results["reconstruction"] = recon
    # geometry score
    if target_frames and sim_frames:
        tf, tm, class_ids = load_frames_with_masks(target_frames, R)
        if target_eval_frames:
            ef, em, _ = load_frames_with_masks(target_eval_frames, R, limit=max_images)
        else:
            cut = max(1, len(tf) // 5)
            ef, em, tf, tm = tf[:cut], tm[:cut], tf[cut:], tm[cut:]
        k = len(class_ids) if class_ids else int(max(tm.max(), em.max())) + 1
        seg = train_segmenter(tf, tm, k, steps=seg_steps, seed=seed, device=device)
        sf, sm, _ = sim_loaded
        sim = _to_float(sf, device)
        names = list(class_ids) if class_ids else [str(c) for c in range(k)]
        per_class: dict[str, Any] = {}
        geo: dict[str, Any] = {}

        def score(label: str, frames: np.ndarray, masks: np.ndarray) -> None:
            r = geometry_score(seg, frames, masks, k)
            geo[label] = r["miou"]
            per_class[label] = {n: (None if v is None else round(v, 4)) for n, v in zip(names, r["per_class"])}

        score("target_frames (ceiling)", ef, em)
        score("sim_frames (floor)", sf, sm)
        score("randomized_sim (encoder)", randomize_frames(E, G, sim, 0, lr, psi, seed, batch), sm)
        score(f"randomized_sim (refined{steps})", randomize_frames(E, G, sim, steps, lr, psi, seed, batch), sm)
        geo["per_class_iou"] = per_class
        geo["n_target_train"], geo["n_target_eval"], geo["n_sim"] = int(len(tf)), int(len(ef)), int(len(sf))
        geo["classes"] = class_ids or k
        results["geometry_miou"] = geo
    elif target_frames:
        raise ValueError("the geometry score needs both --target-frames and --sim-frames")
    if latency_repeats is not None:
        results["latency_ms_per_frame"] = latency(E, G, steps, lr, latency_repeats, seed)
    return results
