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

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domrand import cli_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inverter", required=True, help="inverter run dir or E.safetensors")
    parser.add_argument("--generator", default=None, help="generator run dir or file (default: the one the inverter recorded)")
    parser.add_argument("--target-data", default=None, help="held-out target images for PSNR/SSIM (folder or .npy/.npz)")
    parser.add_argument("--target-frames", default=None, help="export-frames --masks folder of target frames: trains the segmenter")
    parser.add_argument("--target-eval-frames", default=None, help="held-out target frames with masks (default: 20%% of --target-frames)")
    parser.add_argument("--sim-frames", default=None, help="export-frames --masks folder of sim frames: reconstruction with per-class PSNR (object_psnr); with --target-frames also randomized for the geometry score")
    parser.add_argument("--n-gen", type=cli_args.positive_int, default=256, help="held-out generator samples for PSNR/SSIM")
    parser.add_argument("--max-images", type=cli_args.positive_int, default=512, help="use at most this many images per set")
    parser.add_argument("--refine-steps", type=cli_args.nonnegative_int, default=None, help="refinement steps (default: the inverter config's, else 20)")
    parser.add_argument("--refine-lr", type=cli_args.positive_float, default=0.02, help="refinement Adam step size")
    parser.add_argument("--psi", type=cli_args.finite_float, default=0.7, help="truncation of the resampled fine styles")
    parser.add_argument("--seg-steps", type=cli_args.positive_int, default=400, help="segmenter training steps")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--latency-repeats", type=cli_args.positive_int, default=10, help="timed repeats at batch 1 (batch 64: a third)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0)
    parser.add_argument("--batch", type=cli_args.positive_int, default=64, help="evaluation batch size")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def _load_pair(inverter: str, generator: str | None, device) -> tuple[Any, Any, Path, dict]:
    from domrand import checkpoint
    from domrand.generator.inverter_train import resolve_generator_file, resolve_inverter

    e_file = resolve_inverter(inverter)
    info = checkpoint.read_network_info(e_file)
    source = generator or info["extra"].get("generator_source")
    if not source:
        raise ValueError(f"{e_file} records no generator; pass --generator")
    g_file = resolve_generator_file(source)
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
    from domrand.generator.inverter import render
    from domrand.metrics import psnr, ssim

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
    from domrand.generator.inverter import layout_noise

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
    from domrand.generator.visualize import to_uint8
    from domrand.randomizer import StyleRandomizer

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
    from domrand.generator.inverter import render
    from domrand.generator.inverter_losses import class_squared_errors
    from domrand.metrics import psnr, ssim

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
    from domrand.generator.inverter_train import randomize

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


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from domrand.generator.dataset import load_images
    from domrand.utils import resolve_device

    device = resolve_device(args.device)
    E, G, e_file, info = _load_pair(args.inverter, args.generator, device)
    R, keep = E.img_resolution, E.keep_resolution
    steps = args.refine_steps
    if steps is None:
        cfg_file = e_file.parent / "config.yaml"
        steps = 20
        if cfg_file.is_file():
            import yaml

            steps = int(((yaml.safe_load(cfg_file.read_text()) or {}).get("training") or {}).get("refine_steps", 20))
    lr = args.refine_lr
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
    x = generator_eval_samples(G, args.n_gen, keep)
    recon["generator_samples"] = {
        "encoder": reconstruction_scores(E, G, x, 0, lr, args.batch),
        f"refined{steps}": reconstruction_scores(E, G, x, steps, lr, args.batch),
    }
    if args.target_data:
        imgs = load_images(args.target_data, R, min_images=1, progress=False)[: args.max_images]
        t = _to_float(imgs, device)
        recon["target_images"] = {
            "encoder": reconstruction_scores(E, G, t, 0, lr, args.batch),
            f"refined{steps}": reconstruction_scores(E, G, t, steps, lr, args.batch),
        }
    sim_loaded = None
    if args.sim_frames:
        from domrand.geometry import load_frames_with_masks

        sf, sm, sim_ids = load_frames_with_masks(args.sim_frames, R, limit=args.max_images)
        sim_loaded = (sf, sm, sim_ids)
        names_by_id = {int(v): str(k) for k, v in (sim_ids or {}).items()}  # no meta.json: ids as names
        sim_x, sim_m = _to_float(sf, device), torch.from_numpy(sm).to(device)
        recon["sim_frames"] = {"encoder": sim_reconstruction_scores(E, G, sim_x, sim_m, names_by_id, 0, lr, args.batch)}
        if steps:  # refined0 would repeat the encoder's figures
            recon["sim_frames"][f"refined{steps}"] = sim_reconstruction_scores(E, G, sim_x, sim_m, names_by_id, steps, lr, args.batch)
    results["reconstruction"] = recon
    # geometry score
    if args.target_frames and args.sim_frames:
        from domrand.geometry import geometry_score, load_frames_with_masks, train_segmenter

        tf, tm, class_ids = load_frames_with_masks(args.target_frames, R)
        if args.target_eval_frames:
            ef, em, _ = load_frames_with_masks(args.target_eval_frames, R, limit=args.max_images)
        else:
            cut = max(1, len(tf) // 5)
            ef, em, tf, tm = tf[:cut], tm[:cut], tf[cut:], tm[cut:]
        k = len(class_ids) if class_ids else int(max(tm.max(), em.max())) + 1
        seg = train_segmenter(tf, tm, k, steps=args.seg_steps, seed=args.seed, device=device)
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
        score("randomized_sim (encoder)", randomize_frames(E, G, sim, 0, lr, args.psi, args.seed, args.batch), sm)
        score(f"randomized_sim (refined{steps})", randomize_frames(E, G, sim, steps, lr, args.psi, args.seed, args.batch), sm)
        geo["per_class_iou"] = per_class
        geo["n_target_train"], geo["n_target_eval"], geo["n_sim"] = int(len(tf)), int(len(ef)), int(len(sf))
        geo["classes"] = class_ids or k
        results["geometry_miou"] = geo
    elif args.target_frames:
        raise ValueError("the geometry score needs both --target-frames and --sim-frames")
    if not args.no_latency:
        results["latency_ms_per_frame"] = latency(E, G, steps, lr, args.latency_repeats, args.seed)
    return results


def _print(results: dict[str, Any]) -> None:
    def walk(d: dict, indent: str = "") -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                print(f"{indent}{key}:")
                walk(value, indent + "  ")
            elif isinstance(value, float):
                print(f"{indent}{key}: {value:.4f}")
            else:
                print(f"{indent}{key}: {value}")

    walk(results)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    results = evaluate(args)
    _print(results)
    if args.out:
        from domrand.utils import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return 0
