"""Evaluating a trained generator (``domrand eval-generator``): SWD (and FID with a local Inception
TorchScript file; nothing is downloaded) against its data, or the layout agreement of two generators
for the same latents (issue 16). Results are dicts, recorded by ``record_result`` (printed as one
JSON line, optionally written to a file, appended to the run's metrics.jsonl)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domrand.checkpoint import CheckpointError, load_network, load_tensors
from domrand.config import load_config
from domrand.generator.nn import networks  # noqa: F401  (Generator registers with checkpoint)
from domrand.generator.train import runs
from domrand.generator.train.dataset import load_images
from domrand.generator.train.finetune import load_init
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.visualize import to_uint8
from domrand.metrics import layout_agreement, swd
from domrand.utils import atomic_write_text, resolve_device


def run_dir_of(gen_path: Path) -> Path | None:
    for d in (gen_path.parent, gen_path.parent.parent.parent):
        if (d / runs.CONFIG).is_file():
            return d
    return None


def recorded_data(gen_path: Path) -> str | None:
    candidates = [gen_path.parent / "train_state.safetensors"]
    run_dir = run_dir_of(gen_path)
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


def inception_features(model, images_uint8: np.ndarray, device, batch: int) -> np.ndarray:
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


def _load(run: str | Path, best: bool, device: Any) -> tuple[Any, Path, Path | None]:
    gen_path = runs.resolve_run_file(run, "generator", best=best)
    return load_network(gen_path, "Generator", device=device), gen_path, run_dir_of(gen_path)


def align_generators(
    run: str | Path, other: str | Path, *, num_images: int | None = None, best: bool = False, psi: float = 1.0,
    seed: int = 0, device: str = "auto", batch: int = 32,
) -> tuple[dict[str, Any], Path | None]:
    """Layout agreement of the generator in ``run`` and ``other`` (run, checkpoint dir, bundle or
    file): ``({"kind": "align", "same_w", "mismatched", "gap", "ratio", ...}, run_dir)``."""
    device = resolve_device(device)
    G, gen_path, run_dir = _load(run, best, device)
    start = load_init(other)
    num = num_images or 256
    if num < 2:
        raise ValueError(f"--num-images must be at least 2 for --align, got {num}")
    t0 = time.perf_counter()
    scores = layout_agreement(G, start.G_ema.to(device), num, seed=seed, psi=psi, batch=batch)
    extra = getattr(G, "extra", {}) or {}
    result = {
        "kind": "align",
        "generator": str(gen_path),
        "kimg": extra.get("kimg"),
        "other": start.files["G_ema"],
        "other_hash": start.hash,
        "num_images": int(num),
        "psi": psi,
        "seed": seed,
        **{k: v for k, v in scores.items() if k != "n"},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return result, run_dir


def evaluate_generator(
    run: str | Path, *, data: str | Path | None = None, num_images: int | None = None, best: bool = False,
    psi: float = 1.0, seed: int = 0, device: str = "auto", batch: int = 32, inception: str | Path | None = None,
    cache_dir: str | Path | None = None, progress: bool = True,
) -> tuple[dict[str, Any], Path | None]:
    """SWD (and FID with ``inception``) of the generator in ``run`` against ``data`` (default: the
    dataset recorded in the run): ``({"kind": "eval", "swd", "swd_mean", ["fid"], ...}, run_dir)``."""
    device = resolve_device(device)
    G, gen_path, run_dir = _load(run, best, device)
    num = num_images
    min_images = 2
    if run_dir is not None:
        cfg = load_config(run_dir / runs.CONFIG, GeneratorConfig)
        num = num or cfg.training.swd_images
        min_images = cfg.training.min_images
    num = num or 1024
    if num < 2:
        raise ValueError(f"--num-images must be at least 2, got {num}")
    data = data or recorded_data(gen_path)
    if data is None:
        raise ValueError(f"{gen_path}: no dataset recorded for this generator; pass --data")
    reals = load_images(data, G.img_resolution, cache_dir=cache_dir, min_images=min_images, progress=progress)
    if len(reals) > num:
        idx = np.sort(np.random.default_rng(seed).choice(len(reals), size=num, replace=False))
        reals = reals[idx]
    reals = np.array(reals)  # a writable copy (the loader may return a read-only memory map)
    t0 = time.perf_counter()
    fakes = generate(G, num, seed=seed, psi=psi, batch=batch, device=device)
    scores = swd(fakes, reals, seed=seed)
    extra = getattr(G, "extra", {}) or {}
    result = {
        "kind": "eval",
        "generator": str(gen_path),
        "kimg": extra.get("kimg"),
        "data": str(data),
        "num_images": int(num),
        "num_reals": int(len(reals)),
        "psi": psi,
        "swd": scores,
        "swd_mean": scores["mean"],
    }
    if inception:
        path = Path(inception)
        if not path.is_file():
            raise FileNotFoundError(f"--inception: {path} does not exist (pass a local Inception TorchScript file)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
                model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as exc:
            raise ValueError(f"--inception: {path} is not a TorchScript file: {exc}") from None
        with torch.no_grad():
            fa = inception_features(model, to_uint8(fakes), device, batch)
            fb = inception_features(model, reals, device, batch)
        result["fid"] = frechet_distance(fa, fb)
        result["inception"] = str(path)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result, run_dir


def record_result(result: dict, json_path: str | Path | None, run_dir: Path | None) -> None:
    """Print ``result`` as one JSON line; also write it to ``json_path`` and append it to the run's metrics."""
    text = json.dumps(result)
    print(text)
    if json_path:
        atomic_write_text(json_path, text + "\n")
    if run_dir is not None:
        with open(run_dir / runs.METRICS, "a", encoding="utf-8") as f:
            f.write(text + "\n")
