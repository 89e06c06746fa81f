"""Training loop of the inverter (``domrand train-inverter``); importable and testable.

Every step draws up to three sub-batches, each with its own loss:

* generator samples with known ws (always): latent MSE (in units of W's spread; for a spatial
  latent also the MSE to G's own features at ``keep_resolution``) + image losses;
* target-domain images (``--target-data``, the generator's own training set): image losses;
* simulator frames (``--sim-data``): the structure-preserving loss (the generator cannot paint sim
  textures, so edges and low-pass shading layout are matched, not colours).

Image losses: L2, L1, 1 - MS-SSIM, and the perceptual loss on the trained discriminator's features
(``D.safetensors`` of the generator run's newest checkpoint, when there is one). All predicted ws
pay the delta and norm penalties (see ``inverter_losses``). Reconstructions use the inverter's
noise convention (const noise everywhere, see ``inverter``); generator-sample targets use const
noise up to ``keep_resolution`` and random noise above, like the frames the randomizer makes.

Run directory::

    runs/NAME/
      config.yaml              resolved InverterConfig
      command.txt              the command line(s); a resume appends a line
      metrics.jsonl            training scalars and held-out PSNR/SSIM, one JSON object per line
      E.safetensors            latest inverter (what bundles load); extra: kimg, generator path
      recon_<kimg>.png         rows: input | reconstruction | three randomizations
      checkpoints/kimg-<kimg>/ E.safetensors + train_state.safetensors, written atomically

``train_state`` holds the step and image counters, the data RNG state
(``torch.Generator.get_state()``) and the Adam state as tensors (no pickle), so a resumed run
continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domrand import checkpoint
from domrand.config import dump_yaml, from_dict
from domrand.generator import runs
from domrand.generator.inverter import Inverter, InverterConfig, layout_noise, render
from domrand.generator.inverter_losses import (
    DiscriminatorFeatureLoss,
    delta_penalty,
    image_loss,
    norm_penalty,
    structure_loss,
)
from domrand.generator.networks import mix_styles, random_crossover
from domrand.utils import atomic_write_text

E_FILE = "E.safetensors"
STATE_FILE = "train_state.safetensors"
CHECKPOINTS = "checkpoints"
CONFIG = "config.yaml"
COMMAND = "command.txt"
METRICS = "metrics.jsonl"
INVERTER_CHECKPOINT_FILES = (E_FILE, STATE_FILE)


# --------------------------------------------------------------------------------------------
# Run-directory helpers


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[float, Path]]:
    """Complete inverter checkpoints of a run, ``[(kimg, dir)]`` oldest first."""
    return runs.list_checkpoints(run_dir, required=INVERTER_CHECKPOINT_FILES)


def resolve_inverter(path: str | os.PathLike) -> Path:
    """A run dir, a checkpoint dir or an ``E.safetensors`` file -> the inverter file to load."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist (expected an inverter run directory or an E.safetensors file)")
    if (p / E_FILE).is_file():
        return p / E_FILE
    found = list_checkpoints(p)
    if found:
        return found[-1][1] / E_FILE
    raise FileNotFoundError(f"{p} holds no inverter ({E_FILE} or {CHECKPOINTS}/kimg-*/{E_FILE})")


def resolve_generator_file(path: str | os.PathLike) -> Path:
    """A generator run dir, checkpoint dir or file -> its G_ema file."""
    return runs.resolve_generator(path)


def find_discriminator(generator_path: str | os.PathLike) -> Path | None:
    """The D file next to a generator: the newest ``checkpoints/kimg-*/D.safetensors`` of its run."""
    p = Path(generator_path)
    run = p if p.is_dir() else p.parent
    if runs.is_complete(run, ["D.safetensors"]):  # given a checkpoint dir (or a file inside one)
        return run / "D.safetensors"
    found = runs.list_checkpoints(run, required=["D.safetensors"])
    return found[-1][1] / "D.safetensors" if found else None


def _prune(run_dir: Path, keep: int) -> None:
    found = list_checkpoints(run_dir)
    for _, d in found[: max(len(found) - max(keep, 1), 0)]:
        shutil.rmtree(d, ignore_errors=True)
    root = run_dir / CHECKPOINTS
    if root.is_dir():
        for d in root.glob(".tmp-*"):
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Optimizer state <-> tensors (no pickle)


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str = "adam") -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{prefix}.{idx}.{key}"] = torch.as_tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "adam") -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------
# Trainer


class InverterTrainer:
    """Holds G (frozen), D feature loss (optional), the inverter, Adam and the data RNG."""

    def __init__(
        self,
        G: nn.Module,  # the paired generator (G_ema); frozen
        config: InverterConfig,  # network + training sections
        run_dir: str | os.PathLike | None = None,  # where checkpoints/metrics go (None = nowhere)
        D: nn.Module | None = None,  # trained discriminator for the perceptual loss (None = off)
        target_images: np.ndarray | None = None,  # uint8 [N, R, R, 3] target-domain images
        sim_images: np.ndarray | None = None,  # uint8 [N, R, R, 3] simulator frames
        seed: int = 0,  # data / latent RNG seed
        device: str | torch.device = "cpu",
        generator_source: str = "",  # recorded in E.safetensors extra
        E: Inverter | None = None,  # start from this inverter (else fresh)
    ):
        from domrand.generator.dataset import ImageSampler

        self.device = torch.device(device)
        self.cfg = config
        self.tc = config.training
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.generator_source = generator_source
        if E is None:
            with torch.random.fork_rng(devices=[]):  # initialization depends on the seed only
                torch.manual_seed(int(seed))
                E = Inverter.for_generator(self.G, config.network, seed=int(seed))
        self.E = E
        self.E = self.E.to(self.device).train()
        self.E.check_pairing(self.G)
        self.keep = self.E.keep_resolution
        self.num_coarse = self.E.num_coarse_ws
        self.dloss = DiscriminatorFeatureLoss(D.to(self.device)) if (D is not None and self.tc.dfeat_weight) else None
        self.opt = torch.optim.Adam(self.E.parameters(), lr=self.tc.lr, betas=tuple(self.tc.betas))
        self.rng = torch.Generator().manual_seed(int(seed))
        self.seed = int(seed)
        self.step = 0
        self.images_seen = 0
        R = self.E.img_resolution
        self.target_train = self.target_eval = None
        if target_images is not None:
            _check_images("target images", target_images, R)
            hold = min(self.tc.holdout_images, len(target_images) // 4)
            self.target_eval = target_images[:hold] if hold > 0 else None
            self.target_train = ImageSampler(target_images[hold:], xflip=False)
        self.sim_train = None
        self.sim_grid = None
        if sim_images is not None:
            _check_images("sim frames", sim_images, R)
            self.sim_train = ImageSampler(sim_images, xflip=False)
            self.sim_grid = sim_images[:2]
        self._accum: dict[str, float] = {}
        self._accum_n = 0

    # ---- data ----------------------------------------------------------------------------
    @torch.no_grad()
    def generator_samples(self, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, ws, features at keep_resolution)`` of ``n`` fresh generator samples."""
        G = self.G
        z = torch.randn(n, G.z_dim, generator=rng).to(self.device)
        ws = G.mapping(z, psi=self.tc.psi)
        if self.tc.mix_prob > 0:
            z2 = torch.randn(n, G.z_dim, generator=rng).to(self.device)
            ws2 = G.mapping(z2, psi=self.tc.psi)
            cross = random_crossover(n, G.num_ws, self.tc.mix_prob, generator=rng, device=self.device)
            ws = mix_styles(ws, ws2, cross)
        noise = layout_noise(G, n, self.keep, "random", generator=rng, device=self.device)
        img, extras = G.synthesis(ws, noise=noise, return_extras=True)
        return img, ws, extras["features"][self.keep]

    # ---- one optimization step -----------------------------------------------------------
    def _image_terms(self, rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tc = self.tc
        loss = image_loss(rec, x, l2=tc.l2_weight, l1=tc.l1_weight, msssim=tc.msssim_weight)
        if self.dloss is not None:
            loss = loss + tc.dfeat_weight * self.dloss(rec, x)
        return loss

    def _regularizers(self, out: dict[str, Any]) -> torch.Tensor:
        tc, E = self.tc, self.E
        ws = out["ws"]
        reg = tc.delta_weight * delta_penalty(ws, E.w_std) + tc.norm_weight * norm_penalty(ws, E.w_avg, E.w_radius)
        if out["features"] is not None and tc.spatial_reg_weight:
            f = out["features"][self.keep]
            reg = reg + tc.spatial_reg_weight * ((f - E.feat_avg) / E.feat_std).square().flatten(1).mean(1)
        return reg

    def train_step(self) -> dict[str, float]:
        tc, E = self.tc, self.E
        E.train()
        logs: dict[str, float] = {}
        total = torch.zeros([], device=self.device)
        n_images = 0
        # generator samples with known ws
        if tc.gen_batch > 0:
            x, ws_true, feat_true = self.generator_samples(tc.gen_batch, self.rng)
            out = E(x)
            rec = render(self.G, out, self.keep)
            lat = (out["ws"] - ws_true).square().flatten(1).mean(1) / E.w_std.square()
            loss = tc.latent_weight * lat + self._image_terms(rec, x) + self._regularizers(out)
            if out["features"] is not None and tc.feature_weight:
                fl = ((out["features"][self.keep] - feat_true) / E.feat_std).square().flatten(1).mean(1)
                loss = loss + tc.feature_weight * fl
            total = total + loss.mean()
            logs["loss/gen"] = float(loss.detach().mean())
            logs["loss/latent"] = float(lat.detach().mean())
            logs["mse/gen"] = float((rec - x).detach().square().mean())
            n_images += tc.gen_batch
        if self.target_train is not None and tc.target_batch > 0:
            x = self.target_train.sample(tc.target_batch, self.rng, self.device)
            out = E(x)
            rec = render(self.G, out, self.keep)
            loss = self._image_terms(rec, x) + self._regularizers(out)
            total = total + loss.mean()
            logs["loss/target"] = float(loss.detach().mean())
            logs["mse/target"] = float((rec - x).detach().square().mean())
            n_images += tc.target_batch
        if self.sim_train is not None and tc.sim_batch > 0:
            x = self.sim_train.sample(tc.sim_batch, self.rng, self.device)
            out = E(x)
            rec = render(self.G, out, self.keep)
            st = structure_loss(rec, x)
            loss = tc.structure_weight * st + self._regularizers(out)
            if tc.sim_image_weight:
                loss = loss + tc.sim_image_weight * self._image_terms(rec, x)
            total = total + loss.mean()
            logs["loss/sim"] = float(loss.detach().mean())
            logs["loss/structure"] = float(st.detach().mean())
            n_images += tc.sim_batch
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step += 1
        self.images_seen += n_images
        logs["loss/total"] = float(total.detach())
        return logs

    # ---- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, refine_steps: int = 0) -> dict[str, float]:
        """Held-out PSNR/SSIM: fixed generator samples (and held-out target images)."""
        from domrand.metrics import psnr, ssim

        self.E.eval()
        rng = torch.Generator().manual_seed(123_456)
        x, _, _ = self.generator_samples(self.tc.eval_images, rng)
        result = {}
        sets = [("gen", x)]
        if self.target_eval is not None:
            t = torch.from_numpy(self.target_eval).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            sets.append(("target", t))
        for name, imgs in sets:
            out = self.E.invert(imgs, self.G, steps=refine_steps, check=False, lr=self.tc.refine_lr)
            rec = render(self.G, out, self.keep).clamp(-1, 1)
            result[f"psnr/{name}"] = float(psnr(rec, imgs.clamp(-1, 1)).mean())
            result[f"ssim/{name}"] = float(ssim(rec, imgs.clamp(-1, 1)).mean())
        self.E.train()
        return result

    @torch.no_grad()
    def recon_grid(self, rows: int = 6) -> np.ndarray:
        """uint8 grid; each row: input | reconstruction | three randomizations."""
        from domrand.generator.visualize import image_grid

        self.E.eval()
        rng = torch.Generator().manual_seed(7)
        parts = []
        n_gen = rows
        if self.target_eval is not None:
            parts.append(_to_float(self.target_eval[: rows // 3 or 1], self.device))
            n_gen -= len(parts[-1])
        if self.sim_grid is not None:
            parts.append(_to_float(self.sim_grid, self.device))
            n_gen -= len(parts[-1])
        x, _, _ = self.generator_samples(max(n_gen, 1), rng)
        x = torch.cat([x] + parts)[:rows]
        out = self.E(x)
        cells = [x.clamp(-1, 1), render(self.G, out, self.keep).clamp(-1, 1)]
        for _ in range(3):
            cells.append(randomize(self.G, out, self.keep, rng).clamp(-1, 1))
        grid = torch.stack(cells, 1).flatten(0, 1)  # row-major: per input 5 cells
        self.E.train()
        return image_grid(grid, 5, pad=1)

    # ---- checkpoints ---------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.images_seen / 1000.0

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = optimizer_to_tensors(self.opt)
        tensors["rng_state"] = self.rng.get_state()
        meta.update({"step": self.step, "images_seen": self.images_seen, "seed": self.seed})
        return tensors, meta

    def load_state(self, ckpt_dir: str | os.PathLike) -> None:
        ckpt_dir = Path(ckpt_dir)
        E = checkpoint.load_network(ckpt_dir / E_FILE, "Inverter", self.device)
        E.check_pairing(self.G)
        self.E.load_state_dict(E.state_dict())
        self.E.train()
        tensors, meta = checkpoint.load_tensors(ckpt_dir / STATE_FILE)
        optimizer_from_tensors(self.opt, tensors, meta)
        self.rng.set_state(tensors["rng_state"])
        self.step = int(meta["step"])
        self.images_seen = int(meta["images_seen"])

    def save_checkpoint(self, extra: dict[str, Any] | None = None) -> Path:
        assert self.run_dir is not None
        info = {"kimg": self.kimg, "step": self.step, "generator_source": self.generator_source}
        info.update(extra or {})
        tensors, meta = self.state_tensors()

        def write(tmp: Path) -> None:
            checkpoint.save_network(tmp / E_FILE, self.E, info)
            checkpoint.save_tensors(tmp / STATE_FILE, tensors, meta)

        d = runs.write_checkpoint_dir(self.run_dir, self.kimg, write, required=INVERTER_CHECKPOINT_FILES)
        checkpoint.save_network(self.run_dir / E_FILE, self.E, info)
        _prune(self.run_dir, self.tc.keep_snapshots)
        return d

    def log(self, record: dict[str, Any]) -> None:
        if self.run_dir is None:
            return
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- the loop ------------------------------------------------------------------------
    def run(self, kimg: float | None = None, progress: bool = True, max_seconds: float | None = None) -> dict[str, Any]:
        """Train until ``kimg`` thousand images (default the config's) or ``max_seconds``."""
        from tqdm import tqdm

        from domrand.generator.visualize import grid_upscale, save_png

        tc = self.tc
        total_images = int(round((tc.kimg if kimg is None else kimg) * 1000))
        per_step = tc.gen_batch + (tc.target_batch if self.target_train is not None else 0)
        per_step += tc.sim_batch if self.sim_train is not None else 0
        if per_step <= 0:
            raise ValueError("every batch size is 0: nothing to train on")
        snap_every = max(int(round(tc.snapshot_kimg * 1000)), 1)
        metric_every = max(int(round(tc.metrics_kimg * 1000)), 1)
        next_snap = (self.images_seen // snap_every + 1) * snap_every
        next_metric = (self.images_seen // metric_every + 1) * metric_every
        start = time.time()
        bar = tqdm(total=total_images, initial=min(self.images_seen, total_images), unit="img", disable=not progress, desc="train-inverter")
        last: dict[str, Any] = {}
        while self.images_seen < total_images:
            logs = self.train_step()
            for k, v in logs.items():
                self._accum[k] = self._accum.get(k, 0.0) + v
            self._accum_n += 1
            bar.update(min(per_step, total_images - bar.n))
            bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
            done = self.images_seen >= total_images or (max_seconds is not None and time.time() - start > max_seconds)
            if self.images_seen >= next_metric or done:
                next_metric = (self.images_seen // metric_every + 1) * metric_every
                record = {"kimg": round(self.kimg, 3), "step": self.step, "sec": round(time.time() - start, 2)}
                record.update({k: v / self._accum_n for k, v in self._accum.items()})
                record.update(self.evaluate())
                self._accum, self._accum_n = {}, 0
                self.log(record)
                last = record
            if self.run_dir is not None and (self.images_seen >= next_snap or done):
                next_snap = (self.images_seen // snap_every + 1) * snap_every
                self.save_checkpoint()
                grid = self.recon_grid()
                save_png(self.run_dir / f"recon_{runs.format_kimg(self.kimg)}.png", grid, grid_upscale(self.E.img_resolution))
            if done:
                break
        bar.close()
        return last


def _to_float(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)


def _check_images(name: str, images: np.ndarray, resolution: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (resolution, resolution, 3):
        raise ValueError(
            f"{name}: expected uint8 [N, {resolution}, {resolution}, 3] (the generator's resolution), "
            f"got {getattr(images, 'dtype', type(images).__name__)} {list(getattr(images, 'shape', []))}"
        )


@torch.no_grad()
def randomize(
    G: nn.Module, out: dict[str, Any], keep_resolution: int, rng: torch.Generator, psi: float = 1.0
) -> torch.Tensor:
    """Keep the coarse ws (+ spatial latent), draw fine ws from ``G.mapping`` and fine noise at random.

    A minimal stand-in for ``StyleRandomizer`` used for grids and the geometry score here.
    """
    ws = out["ws"]
    n = ws.shape[0]
    k = G.synthesis.num_ws_up_to(keep_resolution)
    z = torch.randn(n, G.z_dim, generator=rng).to(ws.device)
    fine = G.mapping(z, psi=psi)
    ws = torch.cat([ws[:, :k], fine[:, k:]], 1)
    noise = layout_noise(G, n, keep_resolution, "random", generator=rng, device=ws.device)
    return G.synthesis(ws, noise=noise, features=out.get("features"))


# --------------------------------------------------------------------------------------------
# Entry point used by the CLI


def train_inverter(
    generator: str | os.PathLike,
    config: InverterConfig | None,
    out: str | os.PathLike,
    *,
    target_data: str | os.PathLike | None = None,
    sim_data: str | os.PathLike | None = None,
    kimg: float | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    command: str | None = None,
    max_seconds: float | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train (or resume) an inverter run in ``out``; returns the last metrics record."""
    from domrand.generator.dataset import load_images

    out = Path(out)
    gen_file = resolve_generator_file(generator)
    G = checkpoint.load_network(gen_file, "Generator", device)
    cfg_path = out / CONFIG
    if resume:
        if not cfg_path.is_file():
            raise FileNotFoundError(f"--resume: {cfg_path} does not exist (no run to resume in {out})")
        import yaml

        stored = from_dict(InverterConfig, yaml.safe_load(cfg_path.read_text()) or {}, str(cfg_path))
        if config is not None and config != stored:
            raise ValueError(f"--resume: --config differs from the run's stored {cfg_path}; drop --config to use it")
        config = stored
    elif config is None:
        raise ValueError("--config is required for a new run")
    else:
        if list_checkpoints(out):
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tc = config.training
    res = G.img_resolution
    target = sim = None
    if target_data is not None:
        target = load_images(target_data, res, cache_dir=cache_dir, min_images=tc.min_images, progress=progress)
    if sim_data is not None:
        sim = load_images(sim_data, res, cache_dir=cache_dir, min_images=tc.min_images, progress=progress)
    D = None
    d_file = find_discriminator(gen_file)
    if d_file is not None and tc.dfeat_weight:
        D = checkpoint.load_network(d_file, "Discriminator", device)
    elif tc.dfeat_weight:
        print(f"train-inverter: no D.safetensors found beside {gen_file}; the perceptual loss is off", file=sys.stderr)
    trainer = InverterTrainer(
        G, config, out, D=D, target_images=target, sim_images=sim, seed=seed, device=device, generator_source=str(gen_file)
    )
    if resume:
        found = list_checkpoints(out)
        if not found:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {out / CHECKPOINTS}")
        trainer.load_state(found[-1][1])
    else:
        atomic_write_text(cfg_path, dump_yaml(config))
    with open(out / COMMAND, "a") as f:
        f.write((command or " ".join(sys.argv)) + "\n")
    return trainer.run(kimg, progress=progress, max_seconds=max_seconds)
