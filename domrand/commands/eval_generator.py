"""``domrand eval-generator``: SWD (and optionally FID) of a trained generator against its data.

    domrand eval-generator --run runs/NAME [--data DIR] [--num-images N] [--best] [--inception PATH]

``--run`` takes a run directory (its ``G_ema.safetensors``, or ``G_ema_best.safetensors`` with
``--best``), a checkpoint directory or a generator file. The dataset defaults to the one recorded
in the run's newest checkpoint. FID is computed only with ``--inception PATH``, a local Inception
TorchScript file (e.g. the widely used ``inception-2015-12-05.pt``); nothing is downloaded. It is
fed float images in [0, 255], ``[N, 3, 299, 299]``, and called with ``return_features=True`` when
it accepts that keyword (otherwise plainly); its outputs are flattened to feature vectors.
Results print as one JSON object and are appended to the run's metrics.jsonl as ``"kind": "eval"``.

``--align OTHER`` measures instead whether the two generators draw the same layout for the same
latent (``domrand.metrics.layout_agreement``; issue 16): ``--num-images`` (default 256) shared ws
from the ``--run`` generator's mapping, both rendered with constant noise, structure maps (Sobel
magnitude of luminance) correlated for the same w (``same_w``) and for mismatched pairs
(``mismatched``), with their ``gap`` and ``ratio``. ``OTHER`` is a generator run, checkpoint dir,
bundle or file; a fine-tuning run keeps its start as ``RUN/G_init.safetensors``::

    domrand eval-generator --run runs/gtarget --align runs/gtarget/G_init.safetensors

No dataset is needed; the record is appended as ``"kind": "align"``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from domrand.checkpoint import CheckpointError, load_network, load_tensors
from domrand.commands import cli_args
from domrand.config import load_config
from domrand.generator.nn import networks
from domrand.generator.train import runs
from domrand.generator.train.dataset import load_images
from domrand.generator.train.finetune import load_init
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.visualize import to_uint8
from domrand.metrics import layout_agreement, swd
from domrand.utils import atomic_write_text, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory, checkpoint directory or G_ema .safetensors file")
    parser.add_argument("--data", help="dataset (folder or .npz/.npy); default: the one recorded in the run")
    parser.add_argument("--num-images", type=cli_args.positive_int, help="generated and real images to compare (default: the run's swd_images, else 1024)")
    parser.add_argument("--best", action="store_true", help="evaluate G_ema_best.safetensors of a run directory")
    parser.add_argument("--psi", type=cli_args.finite_float, default=1.0, help="truncation psi of the generated images (default 1)")
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=0, help="seed of latents, noise and SWD projections (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--batch", type=cli_args.positive_int, default=32, help="generation batch size (default 32)")
    parser.add_argument("--align", metavar="OTHER", help="measure layout agreement with another generator (run, checkpoint dir, bundle or file) instead of SWD")
    parser.add_argument("--inception", help="local Inception TorchScript file; enables FID (nothing is downloaded)")
    parser.add_argument("--cache-dir", help="dataset cache folder")
    parser.add_argument("--json", help="also write the result JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors")


def _run_dir_of(gen_path: Path) -> Path | None:
    for d in (gen_path.parent, gen_path.parent.parent.parent):
        if (d / runs.CONFIG).is_file():
            return d
    return None


def _recorded_data(gen_path: Path) -> str | None:
    candidates = [gen_path.parent / "train_state.safetensors"]
    run_dir = _run_dir_of(gen_path)
    if run_dir is not None:
        latest = runs.latest_checkpoint(run_dir)
        if latest is not None:
            candidates.append(latest / "train_state.safetensors")
    for c in candidates:
        if c.is_file():
            try:
                data = load_tensors(c)[1].get("data")
            except CheckpointError:
                continue
            if data:
                return str(data)
    return None


@torch.no_grad()
def generate(G, n: int, *, seed: int, psi: float, batch: int, device) -> torch.Tensor:
    """``n`` images float ``[n, 3, R, R]`` (CPU) from fixed-seed latents and noise."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = torch.randn(m, G.z_dim, generator=gen).to(device)
        ws = G.mapping(z, psi=psi)
        noise = {name: torch.randn(m, 1, r, r, generator=gen).to(device) for name, r in G.synthesis.noise_layers}
        out.append(G.synthesis(ws, noise=noise).float().cpu())
    return torch.cat(out)


def _inception_features(model, images_uint8: np.ndarray, device, batch: int) -> np.ndarray:
    feats = []
    use_kw = True
    for i in range(0, len(images_uint8), batch):
        x = torch.from_numpy(np.ascontiguousarray(images_uint8[i : i + batch])).permute(0, 3, 1, 2).float().to(device)
        if x.shape[-1] != 299:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if use_kw:
            try:
                y = model(x, return_features=True)
            except (RuntimeError, TypeError):
                use_kw = False
        if not use_kw:
            y = model(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        feats.append(y.reshape(y.shape[0], -1).double().cpu())
    return torch.cat(feats).numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]``."""
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    # tr(sqrt(A B)) = sum sqrt(eig(sqrt(A) B sqrt(A))), with A, B symmetric PSD.
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def _align(args: argparse.Namespace, G, gen_path: Path, run_dir: Path | None, device) -> int:
    """``--align OTHER``: layout agreement of G and OTHER (JSON on stdout, kind "align")."""
    if args.inception:
        raise ValueError("--align measures layout agreement only; run FID (--inception) separately")
    other = load_init(args.align)
    num = args.num_images or 256
    if num < 2:
        raise ValueError(f"--num-images must be at least 2 for --align, got {num}")
    t0 = time.perf_counter()
    scores = layout_agreement(G, other.G_ema.to(device), num, seed=args.seed, psi=args.psi, batch=args.batch)
    extra = getattr(G, "extra", {}) or {}
    result = {
        "kind": "align",
        "generator": str(gen_path),
        "kimg": extra.get("kimg"),
        "other": other.files["G_ema"],
        "other_hash": other.hash,
        "num_images": int(num),
        "psi": args.psi,
        "seed": args.seed,
        **{k: v for k, v in scores.items() if k != "n"},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    _emit(result, args.json, run_dir)
    return 0


def main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    gen_path = runs.resolve_run_file(args.run, "generator", best=args.best)
    G = load_network(gen_path, "Generator", device=device)
    run_dir = _run_dir_of(gen_path)
    if args.align:
        return _align(args, G, gen_path, run_dir, device)
    num = args.num_images
    min_images = 2
    if run_dir is not None:
        cfg = load_config(run_dir / runs.CONFIG, GeneratorConfig)
        num = num or cfg.training.swd_images
        min_images = cfg.training.min_images
    num = num or 1024
    if num < 2:
        raise ValueError(f"--num-images must be at least 2, got {num}")
    data = args.data or _recorded_data(gen_path)
    if data is None:
        raise ValueError(f"{gen_path}: no dataset recorded for this generator; pass --data")
    reals = load_images(data, G.img_resolution, cache_dir=args.cache_dir, min_images=min_images, progress=not args.no_progress)
    if len(reals) > num:
        idx = np.sort(np.random.default_rng(args.seed).choice(len(reals), size=num, replace=False))
        reals = reals[idx]
    reals = np.array(reals)  # a writable copy (the loader may return a read-only memory map)
    t0 = time.perf_counter()
    fakes = generate(G, num, seed=args.seed, psi=args.psi, batch=args.batch, device=device)
    scores = swd(fakes, reals, seed=args.seed)
    extra = getattr(G, "extra", {}) or {}
    result = {
        "kind": "eval",
        "generator": str(gen_path),
        "kimg": extra.get("kimg"),
        "data": str(data),
        "num_images": int(num),
        "num_reals": int(len(reals)),
        "psi": args.psi,
        "swd": scores,
        "swd_mean": scores["mean"],
    }
    if args.inception:
        path = Path(args.inception)
        if not path.is_file():
            raise FileNotFoundError(f"--inception: {path} does not exist (pass a local Inception TorchScript file)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
                model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise ValueError(f"--inception: {path} is not a TorchScript file: {exc}") from None
        with torch.no_grad():
            fa = _inception_features(model, to_uint8(fakes), device, args.batch)
            fb = _inception_features(model, reals, device, args.batch)
        result["fid"] = frechet_distance(fa, fb)
        result["inception"] = str(path)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    _emit(result, args.json, run_dir)
    return 0


def _emit(result: dict, json_path: str | None, run_dir: Path | None) -> None:
    """Print ``result`` as one JSON line; also write it to ``json_path`` and append it to the run's metrics."""
    text = json.dumps(result)
    print(text)
    if json_path:
        atomic_write_text(json_path, text + "\n")
    if run_dir is not None:
        with open(run_dir / runs.METRICS, "a", encoding="utf-8") as f:
            f.write(text + "\n")
