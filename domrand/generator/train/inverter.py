"""Training loop of the inverter (``domrand train-inverter``); importable and testable.

Every step draws up to three sub-batches, each with its own loss:

* generator samples with known ws (always): latent MSE (in units of W's spread; for a spatial
  latent also the MSE to G's own features at ``keep_resolution``) + image losses;
* target-domain images (``--target-data``, the generator's own training set): image losses;
* simulator frames (``--sim-data``): the structure-preserving loss of ``training.structure_kind``
  (the generator cannot paint sim textures, so edges, not colours, are matched: ``tensor``, the
  default = the colour structure tensor, polarity-free; ``luminance`` = normalized luminance
  gradients + low-pass shading layout; see ``inverter_losses``), and with
  ``training.sim_recon_weight > 0`` the object-aware reconstruction loss: per-pixel L2/L1 (the
  ``l2_weight``/``l1_weight`` mix) weighted by the class of each pixel in the frame's mask
  (``--sim-masks``; ``training.class_weights``, e.g. object 20, distractor 5, others 1) and
  normalized by the sum of the weights. That is the aligned-pair design's in-domain inversion (E
  into G_sim, trained on the same sim frames), where a 3-4 px cube must not be averaged away.
  Masks are drawn with their frames (same indices, same flips); without masks every pixel weighs 1.
  With masks the first ``min(holdout_images, N // 4)`` sim frames are held out of training and
  scored in the metrics: ``psnr/sim``, ``ssim/sim`` and ``psnr/sim_object`` (PSNR pooled over
  their object pixels, the figure the object-aware loss moves).

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

Data-parallel (``torchrun --nproc_per_node=K -m domrand train-inverter ...``, docs/scaling.md):
``InverterTrainer`` and ``train_inverter`` take ``rank``, ``world_size`` and ``reduce`` (an
all-reduce sum over ranks). The batch sizes of the config are global; each rank draws
``batch / world_size`` of every sub-batch from its own RNG (seeded from ``(seed, rank)``; rank 0
uses ``seed`` itself, so a single process is unchanged) and its own shard of the target and sim
images (``rank::world_size``). Gradients of E are averaged over ranks (G is frozen), so E is the
same on every rank after every step; logged losses and held-out metrics are reduced over ranks
(each rank evaluates its share of the held-out images). Only rank 0 writes files. Checkpoints hold
every rank's RNG state: a resume on the same number of ranks is exact, on another number the
per-rank RNGs are re-derived from ``(seed, rank, step, world_size)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domrand import checkpoint
from domrand import distributed as dist_utils
from domrand.config import dump_yaml, from_dict
from domrand.generator.nn.inverter import Inverter, InverterNetworkConfig, compose_styles, layout_noise, render
from domrand.generator.nn.networks import mix_styles, random_crossover
from domrand.generator.train import runs
from domrand.generator.train.inverter_state import (
    INIT_LOCK,
    STATE_FILE,
    inverter_state,
    load_inverter_state,
    save_inverter_checkpoint,
)
from domrand.generator.train.dataset import ImageSampler, load_images, load_masks, masks_beside, read_class_ids
from domrand.generator.train.inverter_losses import (
    STRUCTURE_LOSSES,
    DiscriminatorFeatureLoss,
    DEFAULT_CLASS_IDS,
    class_squared_errors,
    class_weight_lut,
    class_weight_map,
    delta_penalty,
    image_loss,
    norm_penalty,
    weighted_recon_loss,
)
from domrand.generator.visualize import grid_upscale, image_grid, save_png
from domrand.metrics import psnr, ssim
from domrand.utils import atomic_write_text, derive_seed

E_FILE = runs.E_FILE
CHECKPOINTS = "checkpoints"
CONFIG = "config.yaml"
COMMAND = "command.txt"
METRICS = "metrics.jsonl"
INVERTER_CHECKPOINT_FILES = runs.INVERTER_CHECKPOINT_FILES


@dataclass(frozen=True)
class InverterTrainingConfig:
    kimg: float = 100.0  # length of training in thousands of images (all sub-batches together)
    gen_batch: int = 16  # generator samples with known ws per step
    target_batch: int = 8  # target-domain images per step (when --target-data is given)
    sim_batch: int = 8  # simulator frames per step (when --sim-data is given)
    lr: float = 0.001  # Adam learning rate
    betas: tuple[float, float] = (0.9, 0.99)  # Adam betas
    psi: float = 1.0  # truncation of the generator samples used for training
    mix_prob: float = 0.5  # style-mixing probability of the generator samples (W+ coverage)
    latent_weight: float = 1.0  # generator samples: MSE of ws / spread of W
    feature_weight: float = 0.1  # generator samples: MSE of the spatial latent vs G's own features
    l2_weight: float = 1.0  # image MSE
    l1_weight: float = 0.0  # image L1
    msssim_weight: float = 0.5  # 1 - MS-SSIM
    dfeat_weight: float = 0.1  # perceptual loss on the discriminator's block features
    structure_weight: float = 1.0  # simulator frames: weight of the structure loss
    structure_kind: str = "tensor"  # tensor (colour structure tensor; the default, docs/benchmarks.md) | luminance (normalized luminance gradient + low-pass)
    sim_image_weight: float = 0.0  # simulator frames: plain image losses too (usually 0)
    sim_recon_weight: float = 0.0  # simulator frames: object-aware (mask-weighted) L2/L1 reconstruction (0 = off; the aligned-pair design's E into G_sim)
    class_weights: Any = field(default_factory=lambda: {"object": 20.0, "distractor": 5.0})  # class name (or id) -> per-pixel weight of that loss; classes not named weigh 1
    delta_weight: float = 0.01  # e4e-style: spread of a sample's ws across layers
    norm_weight: float = 0.01  # ws outside the typical radius of W
    spatial_reg_weight: float = 0.001  # L2 of the spatial latent's offset from the average features
    holdout_images: int = 64  # target images held out of training for metrics
    eval_images: int = 64  # generator samples (fixed seed) for the metrics
    metrics_kimg: float = 5.0  # held-out PSNR/SSIM every N kimg
    snapshot_kimg: float = 10.0  # checkpoint + recon grid every N kimg
    keep_snapshots: int = 3  # keep the last K checkpoints
    refine_steps: int = 20  # default refinement steps of eval-inverter
    refine_lr: float = 0.02  # Adam learning rate of the refinement
    min_images: int = 16  # fewer images than this in --target-data / --sim-data is an error

    def __post_init__(self) -> None:
        cw = self.class_weights
        if not isinstance(cw, dict):
            raise ValueError(f"training.class_weights: expected a mapping of class name -> weight, got {cw!r}")
        clean: dict[str, float] = {}
        for k, v in cw.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= float(v) < float("inf")):
                raise ValueError(f"training.class_weights.{k}: expected a finite number >= 0, got {v!r}")
            clean[str(k)] = float(v)
        object.__setattr__(self, "class_weights", clean)
        if not (self.sim_recon_weight >= 0):
            raise ValueError(f"training.sim_recon_weight must be >= 0, got {self.sim_recon_weight}")


@dataclass(frozen=True)
class InverterConfig:
    name: str = "custom"
    network: InverterNetworkConfig = field(default_factory=InverterNetworkConfig)
    training: InverterTrainingConfig = field(default_factory=InverterTrainingConfig)


# --------------------------------------------------------------------------------------------
# Run-directory helpers


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[float, Path]]:
    """Complete inverter checkpoints of a run, ``[(kimg, dir)]`` oldest first."""
    return runs.list_checkpoints(run_dir, required=INVERTER_CHECKPOINT_FILES)


def find_discriminator(generator_path: str | os.PathLike) -> Path | None:
    """The D file next to a generator: the newest ``checkpoints/kimg-*/D.safetensors`` of its run."""
    p = Path(generator_path)
    run = p if p.is_dir() else p.parent
    if runs.is_complete(run, ["D.safetensors"]):  # given a checkpoint dir (or a file inside one)
        return run / "D.safetensors"
    found = runs.list_checkpoints(run, required=["D.safetensors"])
    return found[-1][1] / "D.safetensors" if found else None


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
        rank: int = 0,  # this process's rank (data-parallel; only rank 0 writes files)
        world_size: int = 1,  # number of ranks; the config's batch sizes are split evenly over them
        reduce: dist_utils.Reduce | None = None,  # all-reduce sum over ranks (None: single process)
        sim_masks: np.ndarray | None = None,  # uint8 [N, R, R] class ids, one per sim frame (object-aware loss)
        class_ids: dict[str, int] | None = None,  # class name -> id of sim_masks (None: export-frames' ids)
    ):
        self.rank, self.world_size, self.reduce = int(rank), int(world_size), reduce
        if self.world_size > 1 and reduce is None:
            raise ValueError(f"world_size={world_size} needs reduce (an all-reduce sum over ranks)")
        self.device = torch.device(device)
        self.cfg = config
        self.tc = config.training
        if self.tc.structure_kind not in STRUCTURE_LOSSES:
            raise ValueError(
                f"training.structure_kind={self.tc.structure_kind!r} is not one of {sorted(STRUCTURE_LOSSES)}"
            )
        self.structure_loss = STRUCTURE_LOSSES[self.tc.structure_kind]
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.generator_source = generator_source
        if E is None:
            with INIT_LOCK, torch.random.fork_rng(devices=[]):  # initialization depends on the seed only
                torch.manual_seed(int(seed))
                E = Inverter.for_generator(self.G, config.network, seed=int(seed))
        self.E = E
        self.E = self.E.to(self.device).train()
        self.E.check_pairing(self.G)
        self.keep = self.E.keep_resolution
        self.num_coarse = self.E.num_coarse_ws
        self.dloss = DiscriminatorFeatureLoss(D.to(self.device)) if (D is not None and self.tc.dfeat_weight) else None
        self.opt = torch.optim.Adam(self.E.parameters(), lr=self.tc.lr, betas=tuple(self.tc.betas))
        self.seed = int(seed)
        self.rng = torch.Generator().manual_seed(rank_seed(self.seed, self.rank))
        self.resumed_rng = "fresh"  # fresh | restored | rederived (after load_state)
        self.step = 0
        self.images_seen = 0
        R = self.E.img_resolution
        self.target_train = self.target_eval = None
        if target_images is not None:
            _check_images("target images", target_images, R)
            hold = min(self.tc.holdout_images, len(target_images) // 4)
            self.target_eval = target_images[:hold] if hold > 0 else None
            self.target_train = ImageSampler(target_images[hold:], xflip=False, rank=self.rank, world_size=self.world_size)
        self.sim_train = None
        self.sim_grid = None
        if sim_masks is not None and sim_images is None:
            raise ValueError("sim masks were given without sim frames (--sim-masks needs --sim-data)")
        self.sim_eval = self.sim_eval_masks = None
        if sim_images is not None:
            _check_images("sim frames", sim_images, R)
            train_images, train_masks = sim_images, sim_masks
            if sim_masks is not None:  # with masks, hold frames out for psnr/sim and psnr/sim_object
                hold = min(self.tc.holdout_images, len(sim_images) // 4)
                if hold > 0:
                    self.sim_eval, self.sim_eval_masks = sim_images[:hold], sim_masks[:hold]
                    train_images, train_masks = sim_images[hold:], sim_masks[hold:]
            self.sim_train = ImageSampler(
                train_images, xflip=False, rank=self.rank, world_size=self.world_size, masks=train_masks
            )  # fmt: skip
            self.sim_grid = sim_images[:2]
        self.object_id = (class_ids or DEFAULT_CLASS_IDS).get("object")
        # object-aware reconstruction of sim frames: per-class weights as a lookup table [256]
        self.class_lut = class_weight_lut(self.tc.class_weights, class_ids)
        if self.tc.sim_recon_weight and not (self.tc.l2_weight or self.tc.l1_weight):
            raise ValueError("training.sim_recon_weight > 0 needs training.l2_weight or training.l1_weight > 0 (its per-pixel mix)")
        # Per-rank sub-batches: the config's batch sizes are global.
        used = [("gen_batch", self.tc.gen_batch)]
        used += [("target_batch", self.tc.target_batch)] if self.target_train is not None else []
        used += [("sim_batch", self.tc.sim_batch)] if self.sim_train is not None else []
        for name, value in used:
            if value % self.world_size:
                raise ValueError(
                    f"training.{name}={value} must be divisible by world_size={self.world_size} "
                    "(batch sizes are global and split evenly over the ranks)"
                )
        self.gen_batch = self.tc.gen_batch // self.world_size
        self.target_batch = self.tc.target_batch // self.world_size
        self.sim_batch = self.tc.sim_batch // self.world_size
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
        if self.gen_batch > 0:
            x, ws_true, feat_true = self.generator_samples(self.gen_batch, self.rng)
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
            n_images += self.gen_batch
        if self.target_train is not None and self.target_batch > 0:
            x = self.target_train.sample(self.target_batch, self.rng, self.device)
            out = E(x)
            rec = render(self.G, out, self.keep)
            loss = self._image_terms(rec, x) + self._regularizers(out)
            total = total + loss.mean()
            logs["loss/target"] = float(loss.detach().mean())
            logs["mse/target"] = float((rec - x).detach().square().mean())
            n_images += self.target_batch
        if self.sim_train is not None and self.sim_batch > 0:
            masks = None
            if self.sim_train.has_masks:  # same draws from self.rng as sample(): masks change no batch
                x, masks = self.sim_train.sample_with_masks(self.sim_batch, self.rng, self.device)
            else:
                x = self.sim_train.sample(self.sim_batch, self.rng, self.device)
            out = E(x)
            rec = render(self.G, out, self.keep)
            st = self.structure_loss(rec, x)
            loss = tc.structure_weight * st + self._regularizers(out)
            if tc.sim_image_weight:
                loss = loss + tc.sim_image_weight * self._image_terms(rec, x)
            if tc.sim_recon_weight:
                weights = None if masks is None else class_weight_map(masks, self.class_lut)
                recon = weighted_recon_loss(rec, x, weights, l2=tc.l2_weight, l1=tc.l1_weight)
                loss = loss + tc.sim_recon_weight * recon
                logs["loss/sim_recon"] = float(recon.detach().mean())
            logs["mse/sim"] = float((rec - x).detach().square().mean())
            total = total + loss.mean()
            logs["loss/sim"] = float(loss.detach().mean())
            logs["loss/structure"] = float(st.detach().mean())
            n_images += self.sim_batch
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        # Equal local batches: the mean of the ranks' gradients is the gradient of the global loss.
        dist_utils.average_gradients(self.E.parameters(), self.reduce, self.world_size, rank=self.rank, what="inverter")
        self.opt.step()
        self.step += 1
        self.images_seen += n_images * self.world_size
        logs["loss/total"] = float(total.detach())
        return dist_utils.mean_floats(logs, self.reduce, self.world_size)

    # ---- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, refine_steps: int = 0) -> dict[str, float]:
        """Held-out PSNR/SSIM: fixed generator samples (and held-out target images; with sim masks
        also held-out sim frames, plus ``psnr/sim_object``: PSNR pooled over their object pixels).

        With several ranks this is a collective: rank r scores images ``r::world_size`` of each
        set and the per-image sums are reduced, so every rank returns the means over all images.
        """
        self.E.eval()
        rng = torch.Generator().manual_seed(123_456)
        x, _, _ = self.generator_samples(self.tc.eval_images, rng)  # every rank draws all, keeps its share
        sets = [("gen", x)]
        if self.target_eval is not None:
            t = torch.from_numpy(self.target_eval).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)
            sets.append(("target", t))
        if self.sim_eval is not None:
            sets.append(("sim", _to_float(self.sim_eval, self.device)))
        names: list[str] = []
        sums: list[float] = []
        for name, imgs in sets:
            share = imgs[self.rank :: self.world_size]
            p_sum = s_sum = obj_sse = obj_n = 0.0
            if len(share):
                out = self.E.invert(share, self.G, steps=refine_steps, check=False, lr=self.tc.refine_lr)
                rec = render(self.G, out, self.keep).clamp(-1, 1)
                p_sum = float(psnr(rec, share.clamp(-1, 1)).double().sum())
                s_sum = float(ssim(rec, share.clamp(-1, 1)).double().sum())
                if name == "sim" and self.object_id is not None:
                    m = torch.from_numpy(self.sim_eval_masks[self.rank :: self.world_size]).to(self.device)
                    sse, count = class_squared_errors(rec, share.clamp(-1, 1), m)
                    obj_sse, obj_n = float(sse[self.object_id]), float(count[self.object_id])
            names += [f"psnr/{name}", f"ssim/{name}", f"n/{name}"]
            sums += [p_sum, s_sum, float(len(share))]
            if name == "sim":
                names += ["sse/sim_object", "n/sim_object"]
                sums += [obj_sse, obj_n]
        totals = torch.tensor(sums, dtype=torch.float64)
        if self.world_size > 1:
            totals = self.reduce(totals)
        total = dict(zip(names, totals.tolist()))
        result = {}
        for name, _ in sets:
            n = max(total[f"n/{name}"], 1.0)
            result[f"psnr/{name}"] = total[f"psnr/{name}"] / n
            result[f"ssim/{name}"] = total[f"ssim/{name}"] / n
        if total.get("n/sim_object"):  # pooled over all held-out object pixels
            mse = total["sse/sim_object"] / total["n/sim_object"]
            result["psnr/sim_object"] = float("inf") if mse == 0 else 10 * float(np.log10(4.0 / mse))
        self.E.train()
        return result

    @torch.no_grad()
    def recon_grid(self, rows: int = 6) -> np.ndarray:
        """uint8 grid; each row: input | reconstruction | three randomizations."""
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
        """Adam state, counters and every rank's RNG state (a collective with several ranks)."""
        return inverter_state(self)

    def load_state(self, ckpt_dir: str | os.PathLike) -> None:
        load_inverter_state(self, ckpt_dir)

    def save_checkpoint(
        self, extra: dict[str, Any] | None = None, state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    ) -> Path:
        """Write a checkpoint (rank 0); with several ranks pass ``state`` from ``state_tensors``."""
        return save_inverter_checkpoint(self, extra, state)

    def log(self, record: dict[str, Any]) -> None:
        if self.run_dir is None or self.rank != 0:
            return
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- the loop ------------------------------------------------------------------------
    def run(self, kimg: float | None = None, progress: bool = True, max_seconds: float | None = None) -> dict[str, Any]:
        """Train until ``kimg`` thousand images (default the config's) or ``max_seconds``."""
        from tqdm import tqdm

        tc = self.tc
        main = self.rank == 0
        writes = self.run_dir is not None and main
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
        bar = tqdm(total=total_images, initial=min(self.images_seen, total_images), unit="img",
                   disable=not (progress and main), desc="train-inverter")
        last: dict[str, Any] = {}
        while self.images_seen < total_images:
            logs = self.train_step()
            for k, v in logs.items():
                self._accum[k] = self._accum.get(k, 0.0) + v
            self._accum_n += 1
            bar.update(min(per_step, total_images - bar.n))
            bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
            out_of_time = max_seconds is not None and time.time() - start > max_seconds
            if max_seconds is not None and self.world_size > 1:  # every rank stops at the same step
                out_of_time = not dist_utils.agree_with(self.reduce, self.world_size, not out_of_time)
            done = self.images_seen >= total_images or out_of_time
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
                state = self.state_tensors()  # a collective with several ranks
                if writes:  # the other ranks wait for rank 0 at the next step's all-reduce
                    self.save_checkpoint(state=state)
                    grid = self.recon_grid()
                    name = f"recon_{runs.format_kimg(self.kimg)}.png"
                    save_png(self.run_dir / name, grid, grid_upscale(self.E.img_resolution))
            if done:
                break
        bar.close()
        return last


def rank_seed(seed: int, rank: int) -> int:
    """The RNG seed of one rank: ``seed`` for rank 0 (a single process is unchanged), else a
    deterministic function of ``(seed, rank)``."""
    return int(seed) if int(rank) == 0 else derive_seed(int(seed), int(rank))


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
    ws = compose_styles(ws, G.mapping(z, psi=psi)[:, k:], k)
    noise = layout_noise(G, n, keep_resolution, "random", generator=rng, device=ws.device)
    return G.synthesis(ws, noise=noise, features=out.get("features"))


# --------------------------------------------------------------------------------------------
# Entry point used by the CLI


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _array_key(images: np.ndarray | None) -> str | None:
    if images is None:
        return None
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:16]


def _data_setup(
    sources: dict[str, Any], target: np.ndarray | None, sim: np.ndarray | None, sim_masks: np.ndarray | None = None
) -> dict[str, Any]:
    """What a run trains on: resolved paths and content keys (stored in every checkpoint)."""
    def path(p: Any) -> str | None:
        return None if p is None else str(Path(p).resolve())

    setup = {"target": path(sources["target"]), "sim": path(sources["sim"]), "target_key": _array_key(target), "sim_key": _array_key(sim)}
    if sim_masks is not None:  # absent (not None) without masks, so older checkpoints compare equal
        setup.update({"sim_masks": path(sources.get("sim_masks")), "sim_masks_key": _array_key(sim_masks)})
    return setup


def _stored_data_setup(ckpt_dir: Path | None) -> dict[str, Any]:
    if ckpt_dir is None:
        return {}
    _, meta = checkpoint.load_tensors(ckpt_dir / STATE_FILE)
    stored = meta.get("data_setup")
    return stored if isinstance(stored, dict) else {}


def _check_data_setup(stored: dict[str, Any], now: dict[str, Any], ckpt_dir: Path, allow_changes: bool) -> None:
    """Refuse a resume on other data than the run's (it would silently change the losses)."""
    changed = [f"--{k}-data ({stored.get(k) or 'none'} -> {now.get(k) or 'none'})"
               for k in ("target", "sim") if stored.get(f"{k}_key") != now.get(f"{k}_key")]  # fmt: skip
    if stored.get("sim_masks_key") != now.get("sim_masks_key"):
        changed.append(f"--sim-masks ({stored.get('sim_masks') or 'none'} -> {now.get('sim_masks') or 'none'})")
    if not changed:
        return
    if not allow_changes:
        raise ValueError(
            f"--resume: {', '.join(changed)} differs from what {ckpt_dir} was trained on; pass the run's data, or "
            "--allow-changes to continue on this set-up"
        )
    _stderr(f"train-inverter: warning: {', '.join(changed)} changed (--allow-changes); the resume is not exact")


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
    rank: int = 0,  # distributed rank (only rank 0 writes files and prints)
    world_size: int = 1,  # number of ranks
    reduce: dist_utils.Reduce | None = None,  # all-reduce sum over ranks
    allow_changes: bool = False,  # resume: accept other target/sim data than the run's
    sim_masks: str | os.PathLike | None = None,  # class-id masks of the sim frames, or "auto" (masks/ beside frames/)
) -> dict[str, Any]:
    """Train (or resume) an inverter run in ``out``; returns the last metrics record.

    ``sim_masks``: a masks folder (or ``.npy``/``.npz``) paired one-to-one with ``sim_data``
    (:func:`dataset.load_masks`), or ``"auto"`` for the ``masks/`` folder beside a ``frames/``
    folder (``domrand export-frames --masks`` layout); class names come from the ``meta.json``
    beside the masks. They weight the object-aware loss (``training.sim_recon_weight``).

    A resume continues the newest intact checkpoint (a corrupt newer one is skipped, saying so);
    omitted ``target_data``/``sim_data`` default to the run's; other data is refused unless
    ``allow_changes``.

    With several ranks every rank calls this (a collective); a failure of any rank in the set-up
    (checks, data, networks) stops every rank with an error instead of leaving them waiting.
    """
    main = rank == 0

    def stage(fn):  # run fn on every rank; raise everywhere when it failed anywhere
        failed = f"rank {rank}: another rank failed to set up train-inverter; see its error"
        return dist_utils.raise_together(fn, reduce, world_size, failed)

    out = Path(out)

    def setup() -> tuple:
        gen_file = runs.resolve_run_file(generator, "generator")
        with INIT_LOCK:  # building a network draws from torch's global RNG (ranks as threads: see E's init)
            G = checkpoint.load_network(gen_file, "Generator", device)
        cfg = config
        cfg_path = out / CONFIG
        if resume:
            if not cfg_path.is_file():
                raise FileNotFoundError(f"--resume: {cfg_path} does not exist (no run to resume in {out})")
            import yaml

            stored = from_dict(InverterConfig, yaml.safe_load(cfg_path.read_text()) or {}, str(cfg_path))
            if cfg is not None and cfg != stored:
                raise ValueError(f"--resume: --config differs from the run's stored {cfg_path}; drop --config to use it")
            cfg = stored
        elif cfg is None:
            raise ValueError("--config is required for a new run")
        else:
            if list_checkpoints(out):
                raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        ckpt_dir = None
        if resume:
            ckpt_dir = runs.resume_checkpoint(out, INVERTER_CHECKPOINT_FILES, log=_stderr if main else None)
            if ckpt_dir is None:
                what = "intact" if list_checkpoints(out) else "complete"
                raise FileNotFoundError(f"--resume: no {what} checkpoint under {out / CHECKPOINTS}")
        return gen_file, G, cfg, ckpt_dir

    gen_file, G, config, ckpt_dir = stage(setup)
    tc = config.training
    res = G.img_resolution
    stored = _stored_data_setup(ckpt_dir)
    sources = {"target": target_data, "sim": sim_data}
    for kind in sources:
        if sources[kind] is None and stored.get(kind):
            sources[kind] = stored[kind]
            if main:
                _stderr(f"train-inverter: --{kind}-data not given; using the run's {stored[kind]}")
    if sim_masks is None and stored.get("sim_masks"):
        sim_masks = stored["sim_masks"]
        if main:
            _stderr(f"train-inverter: --sim-masks not given; using the run's {sim_masks}")
    if sim_masks is not None:
        if sources["sim"] is None:
            raise ValueError("--sim-masks needs --sim-data (the frames the masks belong to)")
        if str(sim_masks) == "auto":
            sim_masks = masks_beside(sources["sim"])
    sources["sim_masks"] = sim_masks
    class_ids = read_class_ids(sim_masks) if sim_masks is not None else None

    def load(show: bool) -> tuple:
        target = sim = masks = None
        if sources["target"] is not None:
            target = load_images(sources["target"], res, cache_dir=cache_dir, min_images=tc.min_images, progress=show)
        if sources["sim"] is not None:
            sim = load_images(sources["sim"], res, cache_dir=cache_dir, min_images=tc.min_images, progress=show)
        if sim_masks is not None:
            masks = load_masks(sim_masks, sources["sim"], res, n_frames=len(sim), cache_dir=cache_dir, progress=show)
        return target, sim, masks

    # Rank 0 decodes (and caches) first; the other ranks then read the cache.
    first = stage(lambda: load(progress) if main else None)
    target, sim, masks = stage(lambda: first if main else load(False))
    if main and masks is not None and not tc.sim_recon_weight:
        _stderr("train-inverter: warning: --sim-masks given but training.sim_recon_weight is 0; the masks weight nothing")
    setup_now = _data_setup(sources, target, sim, masks)
    if ckpt_dir is not None and stored:
        stage(lambda: _check_data_setup(stored, setup_now, ckpt_dir, allow_changes))

    def build() -> InverterTrainer:
        D = None
        d_file = find_discriminator(gen_file)
        if d_file is not None and tc.dfeat_weight:
            with INIT_LOCK:
                D = checkpoint.load_network(d_file, "Discriminator", device)
        elif tc.dfeat_weight and main:
            print(f"train-inverter: no D.safetensors found beside {gen_file}; the perceptual loss is off", file=sys.stderr)
        trainer = InverterTrainer(
            G, config, out, D=D, target_images=target, sim_images=sim, seed=seed, device=device,
            generator_source=str(Path(gen_file).resolve()), rank=rank, world_size=world_size, reduce=reduce,
            sim_masks=masks, class_ids=class_ids,
        )  # fmt: skip
        trainer.data_setup = setup_now
        if ckpt_dir is not None:
            trainer.load_state(ckpt_dir)
            if main:
                note = "" if trainer.resumed_rng == "restored" else (
                    f"; it was written by {trainer.saved_world_size} rank(s), so the per-rank random streams are "
                    f"re-derived from (seed, rank, step) for {world_size}"
                )  # fmt: skip
                print(f"train-inverter: resumed {ckpt_dir} (step {trainer.step}, kimg {trainer.kimg:.3f}){note}",
                      file=sys.stderr)  # fmt: skip
        return trainer

    trainer = stage(build)
    if main:
        if world_size > 1:
            parts = [f"gen {tc.gen_batch} = {world_size} x {trainer.gen_batch}"]
            if trainer.target_train is not None:
                parts.append(f"target {tc.target_batch} = {world_size} x {trainer.target_batch}")
            if trainer.sim_train is not None:
                parts.append(f"sim {tc.sim_batch} = {world_size} x {trainer.sim_batch}")
            print(f"train-inverter: {world_size} ranks, per step {', '.join(parts)}", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        for p in runs.remove_temp_files(out):
            _stderr(f"train-inverter: removed {p}, left by an interrupted run")
        if ckpt_dir is not None:
            dropped = runs.trim_metrics(out / METRICS, trainer.step)
            if dropped:
                _stderr(f"train-inverter: {out / METRICS}: dropped {dropped} record(s) written after {ckpt_dir.name}")
        if not resume:
            atomic_write_text(out / CONFIG, dump_yaml(config))
        with open(out / COMMAND, "a") as f:
            f.write((command or " ".join(sys.argv)) + "\n")
    return trainer.run(kimg, progress=progress, max_seconds=max_seconds)
