"""The domain-conditional pair (``domrand train-pair``): generator, inverter and discriminator
trained together, so that layout is aligned by construction (issue 16, second candidate).

One StyleGAN2 generator ``G`` serves both domains. Its coarse input is the sim frame's layout:
the inverter ``E`` maps a sim frame to coarse ws (resolutions <= ``keep_resolution``) and a
spatial latent that replaces ``G``'s features at ``keep_resolution``; the domain is chosen by the
*fine* ws only:

* **sim** (in-domain inversion): fine ws from ``E`` too. ``G(E(x_sim))`` must reproduce the sim
  frame: a real reconstruction loss, per-pixel L2 + L1 weighted by the class of each pixel in the
  frame's mask (``class_weights``: a 3-4 px cube is not averaged away) + ``1 - MS-SSIM``.
* **target**: fine ws from ``G.mapping(z)``, fine noise random. ``G(coarse of E(x_sim), fine of
  mapping(z))`` is scored by the discriminator against target-domain photos (non-saturating
  logistic loss, ADA, lazy R1). The coarse inputs are detached (``adv_into_inverter: false``), so
  ``E`` stays a pure sim-domain inverter and the adversary cannot teach it to drop the cube.
* **style reconstruction**: ``E`` reads the fine ws back from the target frame it made; their MSE
  (in units of W's spread) keeps every fine style visible in the output (diversity; StarGAN v2's
  style-reconstruction loss).
* **object keep** (``object_keep_weight``, off by default; needs masks): L1 between the task
  object's pixels in the target frame and in the sim frame, so the adversary cannot repaint the
  3-4 px cube as clutter (it keeps its hue in every look, as classic randomization keeps it red).
* **diversity** (``diversity_weight``, off by default): two styles of the same frame are pushed apart
  until their mean absolute pixel difference reaches ``diversity_target`` (a hinge, so it cannot run
  away from realism; the diversity-sensitive loss of Yang et al. 2019 / StarGAN v2).

Since the coarse styles and the ``keep_resolution`` features of a randomized frame are exactly the
ones its sim reconstruction used, the fine blocks (32x32 and 64x64 with 3x3 convs) can only change
local appearance, never move an object: the layout is shared by construction, not hoped for.
The result is an ordinary generator/inverter pair: ``domrand bundle --generator RUN --inverter RUN``
and ``StyleRandomizer`` use it unchanged (keep the coarse ws and the spatial latent, draw the fine
ws from the mapping with ``psi``, resample fine noise).

Run directory::

    runs/NAME/
      config.yaml, command.txt, metrics.jsonl
      G_ema.safetensors, E.safetensors     newest EMA pair (E's generator_hash = G_ema's): bundle these
      samples_<kimg>.png                   rows: sim frame | reconstruction | 4 randomizations
      checkpoints/kimg-<kimg>/             G, G_ema, E, E_ema, D, train_state (atomic, verified on load)

``train_state`` holds the counters, the one data/latent/noise/augmentation RNG, ADA's state and the
three Adam states as tensors (no pickle): a resumed run continues exactly as if it never stopped.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domrand import checkpoint
from domrand.bundle import load_bundle
from domrand.config import dump_yaml, from_dict, replace, to_dict
from domrand.envs.look_spread import frame_mean_colour_spread
from domrand.generator.nn.inverter import Inverter, InverterNetworkConfig, layout_noise
from domrand.generator.nn.networks import Discriminator, Generator
from domrand.generator.nn.networks import NetworkConfig
from domrand.generator.train import runs
from domrand.generator.train.augment import AdaController, AugmentPipe
from domrand.generator.train.dataset import load_images, load_masks, masks_beside, read_class_ids, ImageSampler
from domrand.generator.train.inverter_losses import (
    DEFAULT_CLASS_IDS,
    class_squared_errors,
    class_weight_lut,
    class_weight_map,
    image_loss,
    weighted_recon_loss,
)
from domrand.generator.train.loop import run_training, start_or_resume, stored_run
from domrand.generator.train.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from domrand.generator.visualize import image_grid, to_uint8
from domrand.metrics import psnr, swd, to_float_images
from domrand.utils import cpu_has_fast_bfloat16, prepare_cpu_networks

CHECKPOINT_FILES = ("G.safetensors", "G_ema.safetensors", "E.safetensors", "E_ema.safetensors",
                    "D.safetensors", "train_state.safetensors")  # fmt: skip


@dataclass(frozen=True)
class PairTrainingConfig:
    batch: int = 16  # sim frames per step (and target photos per D step)
    kimg: float = 30.0  # length in thousands of sim frames
    g_lr: float = 0.0025  # Adam lr of G (the mapping adds network.mapping_lr_mult)
    e_lr: float = 0.001  # Adam lr of E
    d_lr: float = 0.0025  # Adam lr of D
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas of G and D (E: (0.9, 0.99))
    recon_weight: float = 1.0  # sim frames: weight of the reconstruction loss below
    l2_weight: float = 1.0  # reconstruction: per-pixel squared error (mask-weighted)
    l1_weight: float = 1.0  # reconstruction: per-pixel absolute error (mask-weighted)
    msssim_weight: float = 0.5  # reconstruction: 1 - MS-SSIM (unweighted)
    class_weights: Any = field(default_factory=lambda: {"object": 20.0, "distractor": 5.0})  # mask class -> weight
    adv_weight: float = 1.0  # target frames: non-saturating GAN loss
    style_weight: float = 1.0  # target frames: MSE of E's fine ws of the frame to the ws that made it / W spread^2
    adv_into_inverter: bool = False  # let the GAN loss reach E through the coarse inputs (default: detached)
    object_keep_weight: float = 0.0  # target frames: L1 of the task object's pixels to the sim frame's (needs masks; 0 = off)
    diversity_weight: float = 0.0  # two styles of one frame: hinge on their mean absolute pixel difference (0 = off)
    diversity_target: float = 0.25  # ... rewarded up to this mean |difference| (images in [-1, 1]); 0.25 ~ 32/255
    r1_gamma: float = 0.0512  # R1 weight (lazy)
    r1_interval: int = 16  # R1 every N D steps
    ema_kimg: float = 2.0  # EMA half-life of G and E in kimg
    ema_rampup: float = 0.05  # EMA ramp-up ratio
    ada: bool = True  # adaptive discriminator augmentation
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 50.0
    psi: float = 0.7  # truncation of the fine ws in samples and metrics (the randomizer's default)
    holdout_images: int = 64  # sim frames (and target photos) held out for the metrics
    metrics_kimg: float = 2.0  # held-out PSNR, object PSNR, SWD, diversity every N kimg
    snapshot_kimg: float = 2.0  # checkpoint + sample sheet every N kimg
    keep_snapshots: int = 3
    log_steps: int = 25  # averaged losses and img/s to metrics.jsonl every N steps
    min_images: int = 16
    cpu_amp: bool = False  # bfloat16 autocast of the G/E/D passes on a CPU with native bfloat16 (R1 in float32); ignored elsewhere

    def __post_init__(self) -> None:
        cw = self.class_weights
        if not isinstance(cw, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in cw.values()):
            raise ValueError(f"training.class_weights: expected a mapping of class name -> weight >= 0, got {cw!r}")
        object.__setattr__(self, "class_weights", {str(k): float(v) for k, v in cw.items()})
        for name in ("batch", "r1_interval", "ada_interval", "log_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"training.batch must be even and >= 2 (D's minibatch-std groups), got {self.batch}")


@dataclass(frozen=True)
class PairConfig:
    name: str = "custom"
    network: NetworkConfig = field(default_factory=NetworkConfig)  # the generator (and discriminator)
    inverter: InverterNetworkConfig = field(default_factory=InverterNetworkConfig)
    training: PairTrainingConfig = field(default_factory=PairTrainingConfig)


def _ema_copy(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).eval().requires_grad_(False)


class PairTrainer:
    """G, E, D, their EMA copies (G_ema, E_ema), three Adams, ADA and one RNG."""

    def __init__(
        self,
        config: PairConfig,
        sim_images: np.ndarray,  # uint8 [N, R, R, 3] simulator frames
        target_images: np.ndarray,  # uint8 [M, R, R, 3] target-domain photos
        sim_masks: np.ndarray | None = None,  # uint8 [N, R, R] class ids (export-frames --masks)
        class_ids: dict[str, int] | None = None,  # class name -> mask id (None: export-frames' ids)
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        init: tuple[nn.Module, nn.Module] | None = None,  # (G, E) to start from, e.g. a bundle's; same shapes as the config
    ):
        self.cfg, self.tc = config, config.training
        R = config.network.resolution
        for name, arr in (("sim frames", sim_images), ("target images", target_images)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape[1:] != (R, R, 3):
                raise ValueError(f"{name}: expected uint8 [N, {R}, {R}, 3], got "
                                 f"{getattr(arr, 'dtype', type(arr).__name__)} {list(getattr(arr, 'shape', []))}")  # fmt: skip
            if len(arr) < max(self.tc.min_images, 2 * min(self.tc.holdout_images, len(arr) // 4)):
                raise ValueError(f"{name}: {len(arr)} images is too few (at least {self.tc.min_images})")
        if sim_masks is not None and sim_masks.shape != sim_images.shape[:3]:
            raise ValueError(f"sim masks {list(sim_masks.shape)} do not pair with sim frames {list(sim_images.shape)}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = int(seed)
        torch.manual_seed(self.seed)  # initialization depends on the seed only
        self.G = Generator(config.network)
        self.D = Discriminator(config.network)
        if init is not None:  # fine-tune: G and E start from a trained pair (D starts fresh)
            G0, E0 = init
            if G0.config != config.network:
                raise ValueError(f"--init: its generator is {G0.config}, the config's network is {config.network}")
            if E0.export_config()["network"] != to_dict(config.inverter):
                raise ValueError(f"--init: its inverter is {E0.export_config()['network']}, the config's inverter is {to_dict(config.inverter)}")
            self.G.load_state_dict(G0.state_dict())
        self.E = Inverter.for_generator(self.G, config.inverter, seed=self.seed).train()
        if init is not None:
            self.E.load_state_dict(init[1].state_dict())
        # The CPU fast path (docs/benchmarks.md, "CPU fast path"): channels-last networks and reused
        # memory always; bfloat16 autocast of the main passes with training.cpu_amp where native.
        prepare_cpu_networks(self.G, self.E, self.D)
        self.amp = bool(self.tc.cpu_amp) and cpu_has_fast_bfloat16()
        self.G_ema, self.E_ema = _ema_copy(self.G), _ema_copy(self.E)
        self.keep = self.E.keep_resolution
        self.k = self.E.num_coarse_ws
        tc = self.tc
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=tc.g_lr, betas=tuple(tc.betas))
        self.E_opt = torch.optim.Adam(self.E.parameters(), lr=tc.e_lr, betas=(0.9, 0.99))
        c = tc.r1_interval / (tc.r1_interval + 1)  # lazy regularization (StyleGAN2)
        self.D_opt = torch.optim.Adam(self.D.parameters(), lr=tc.d_lr * c, betas=(tc.betas[0] ** c, tc.betas[1] ** c))
        self.augment = AugmentPipe(0.0) if tc.ada else None
        self.ada = AdaController(tc.ada_target, tc.ada_interval, tc.ada_kimg, tc.batch) if tc.ada else None
        self.rng = torch.Generator().manual_seed(self.seed)
        self.step = 0
        self.nimg = 0
        hold_s = min(tc.holdout_images, len(sim_images) // 4)
        hold_t = min(tc.holdout_images, len(target_images) // 4)
        self.sim_eval = sim_images[:hold_s]
        self.sim_eval_masks = None if sim_masks is None else sim_masks[:hold_s]
        self.target_eval = target_images[:hold_t]
        self.sim = ImageSampler(sim_images[hold_s:], xflip=False, masks=None if sim_masks is None else sim_masks[hold_s:])
        self.target = ImageSampler(target_images[hold_t:], xflip=False)
        self.class_lut = class_weight_lut(tc.class_weights, class_ids)
        self.object_id = (class_ids or DEFAULT_CLASS_IDS).get("object")

    # ---- the two paths ---------------------------------------------------------------------
    def fine_ws(self, G: Generator, n: int, psi: float = 1.0, update_emas: bool = False) -> torch.Tensor:
        """``[n, num_ws, w_dim]`` target-domain ws from the mapping (only the fine ones are used)."""
        z = torch.randn(n, G.z_dim, generator=self.rng)
        return G.mapping(z, psi=psi, update_emas=update_emas)

    def translate(self, G: Generator, out: dict[str, Any], fine: torch.Tensor) -> torch.Tensor:
        """Coarse ws + spatial latent of ``out`` (an inverter answer), fine ws of ``fine``, random fine noise."""
        ws = torch.cat([out["ws"][:, : self.k], fine[:, self.k :]], 1)
        noise = layout_noise(G, ws.shape[0], self.keep, "random", generator=self.rng)
        return G.synthesis(ws, noise=noise, features=out["features"])

    def reconstruct(self, G: Generator, out: dict[str, Any]) -> torch.Tensor:
        """The sim domain: every ws and the spatial latent from E, const noise."""
        noise = layout_noise(G, out["ws"].shape[0], self.keep, "const")
        return G.synthesis(out["ws"], noise=noise, features=out["features"])

    def _autocast(self):
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=self.amp)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x, generator=self.rng) if self.augment is not None else x

    # ---- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        tc, b = self.tc, self.tc.batch
        logs: dict[str, float] = {}
        if self.sim.has_masks:
            x, masks = self.sim.sample_with_masks(b, self.rng, "cpu")
        else:
            x, masks = self.sim.sample(b, self.rng, "cpu"), None
        real = self.target.sample(b, self.rng, "cpu")

        # G + E: sim reconstruction, target translation, style reconstruction.
        self.G.requires_grad_(True)
        self.E.requires_grad_(True)
        self.D.requires_grad_(False)
        with self._autocast():
            out = self.E(x)
            rec = self.reconstruct(self.G, out).float()
        weights = None if masks is None else class_weight_map(masks, self.class_lut)
        loss_rec = weighted_recon_loss(rec, x, weights, l2=tc.l2_weight, l1=tc.l1_weight).mean()
        if tc.msssim_weight:
            loss_rec = loss_rec + image_loss(rec, x, l2=0.0, msssim=tc.msssim_weight).mean()
        coarse = out if tc.adv_into_inverter else {"ws": out["ws"].detach(),
                                                   "features": {r: f.detach() for r, f in out["features"].items()}}  # fmt: skip
        with self._autocast():
            fine = self.fine_ws(self.G, b, update_emas=True).float()
            fake = self.translate(self.G, coarse, fine).float()
            logits = self.D(self._augment(fake)).float()
        loss_adv = g_nonsaturating_loss(logits)
        total = tc.recon_weight * loss_rec + tc.adv_weight * loss_adv
        if tc.style_weight:
            with self._autocast():
                back = self.E(fake)["ws"][:, self.k :].float()
            loss_sty = (back - fine[:, self.k :].detach()).square().mean() / self.E.w_std.square()
            total = total + tc.style_weight * loss_sty
            logs["loss/style"] = float(loss_sty.detach())
        if tc.object_keep_weight and masks is not None and self.object_id is not None:
            obj = (masks == self.object_id).unsqueeze(1).to(fake.dtype)  # [B, 1, H, W]
            if float(obj.sum()) > 0:  # the task cue survives: the cube keeps its sim colours in every look
                keep = ((fake - x).abs() * obj).sum() / (obj.sum() * fake.shape[1])
                total = total + tc.object_keep_weight * keep
                logs["loss/object_keep"] = float(keep.detach())
        if tc.diversity_weight:  # diversity-sensitive term (Yang et al. 2019, StarGAN v2), bounded by a hinge
            with self._autocast():
                other = self.translate(self.G, coarse, self.fine_ws(self.G, b)).float()
            diff = (fake - other).abs().mean()
            total = total + tc.diversity_weight * torch.relu(tc.diversity_target - diff)
            logs["diversity/pixel"] = float(diff.detach())
        self.G_opt.zero_grad(set_to_none=True)
        self.E_opt.zero_grad(set_to_none=True)
        total.backward()
        self.G_opt.step()
        self.E_opt.step()
        logs["loss/recon"] = float(loss_rec.detach())
        logs["loss/G_adv"] = float(loss_adv.detach())
        logs["mse/sim"] = float((rec - x).detach().square().mean())

        # D: logistic loss on augmented target photos vs augmented translations; lazy R1.
        self.G.requires_grad_(False)
        self.E.requires_grad_(False)
        self.D.requires_grad_(True)
        with self._autocast():
            fake_logits = self.D(self._augment(fake.detach())).float()
            real_logits = self.D(self._augment(real)).float()
        if self.ada is not None:
            self.ada.accumulate(real_logits)
        loss_fake, loss_real = d_logistic_loss(real_logits, fake_logits)
        self.D_opt.zero_grad(set_to_none=True)
        (loss_fake + loss_real).backward()
        self.D_opt.step()
        logs["loss/D"] = float((loss_fake + loss_real).detach())
        logs["D_real"] = float(real_logits.detach().mean())
        logs["D_fake"] = float(fake_logits.detach().mean())
        if tc.r1_gamma > 0 and self.step % tc.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(real_r1, self.D(self._augment(real_r1)))
            self.D_opt.zero_grad(set_to_none=True)
            (penalty.mean() * (tc.r1_gamma / 2) * tc.r1_interval).backward()
            self.D_opt.step()
            logs["loss/r1"] = float(penalty.detach().mean())
        self.D.requires_grad_(False)
        if self.ada is not None:
            self.ada.update(self.augment)
            logs["ada_p"] = float(self.augment.p)
        self.step += 1
        self.nimg += b
        self._update_ema()
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        tc = self.tc
        ema_nimg = min(tc.ema_kimg * 1000, self.nimg * tc.ema_rampup) if tc.ema_rampup else tc.ema_kimg * 1000
        beta = 0.5 ** (tc.batch / max(ema_nimg, 1e-8))
        for ema, net in ((self.G_ema, self.G), (self.E_ema, self.E)):
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b_net in zip(ema.buffers(), net.buffers()):
                b_ema.copy_(b_net)

    # ---- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out sim PSNR (and object PSNR with masks) of the EMA pair; SWD of randomized held-out
        sim frames to held-out target photos; frame-mean colour spread across 8 styles per frame."""
        state = self.rng.get_state()  # metrics must not change the training stream
        self.rng.manual_seed(99_991)
        x = to_float_images(self.sim_eval)
        out = self.E_ema(x)
        rec = self.reconstruct(self.G_ema, out).clamp(-1, 1)
        result = {"psnr/sim": float(psnr(rec, x).mean())}
        if self.sim_eval_masks is not None and self.object_id is not None:
            sse, count = class_squared_errors(rec, x, torch.from_numpy(self.sim_eval_masks))
            if count[self.object_id] > 0:
                result["psnr/sim_object"] = float(10 * torch.log10(4.0 / (sse[self.object_id] / count[self.object_id])))
        styles = [to_uint8(self.translate(self.G_ema, out, self.fine_ws(self.G_ema, len(x), self.tc.psi))) for _ in range(8)]
        result["swd"] = float(swd(np.concatenate(styles[:2]), self.target_eval)["mean"])
        per_frame = np.stack(styles, 1)  # [N, styles, R, R, 3]
        result["spread/styles"] = float(np.mean([frame_mean_colour_spread(f) for f in per_frame]))
        self.rng.set_state(state)
        return result

    @torch.no_grad()
    def sample_sheet(self, rows: int = 6) -> np.ndarray:
        """uint8 grid; each row: sim frame | reconstruction | 4 randomizations (fixed seeds)."""
        state = self.rng.get_state()
        self.rng.manual_seed(7)
        x = to_float_images(self.sim_eval[:rows])
        out = self.E_ema(x)
        cells = [x, self.reconstruct(self.G_ema, out).clamp(-1, 1)]
        cells += [self.translate(self.G_ema, out, self.fine_ws(self.G_ema, len(x), self.tc.psi)).clamp(-1, 1) for _ in range(4)]
        self.rng.set_state(state)
        return image_grid(torch.stack(cells, 1).flatten(0, 1), len(cells), pad=1)

    # ---- checkpoints ------------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.nimg / 1000.0

    def paired_inverter(self) -> Inverter:
        """E_ema stamped with G_ema's weights hash (what a bundle checks)."""
        E = copy.deepcopy(self.E_ema)
        E.generator_hash = checkpoint.weights_hash(self.G_ema)
        return E

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {"rng_state": self.rng.get_state().clone()}
        meta: dict[str, Any] = {"step": self.step, "nimg": self.nimg, "seed": self.seed}
        for name, opt in (("G_opt", self.G_opt), ("E_opt", self.E_opt), ("D_opt", self.D_opt)):
            t, m = checkpoint.optimizer_state_to_tensors(opt, name)
            tensors.update(t)
            meta[name] = m
        if self.augment is not None:
            tensors["ada_p"] = self.augment.p.detach().clone()
            meta["ada"] = self.ada.state_dict()
        return tensors, meta

    def save_checkpoint(self) -> Path:
        assert self.run_dir is not None
        info = {"kimg": self.kimg, "step": self.step}
        tensors, meta = self.state()
        E_paired = self.paired_inverter()

        def write(tmp: Path) -> None:
            for name, net in (("G", self.G), ("G_ema", self.G_ema), ("E", self.E), ("E_ema", E_paired), ("D", self.D)):
                checkpoint.save_network(tmp / f"{name}.safetensors", net, info)
            checkpoint.save_tensors(tmp / "train_state.safetensors", tensors, meta)

        d = runs.write_checkpoint_dir(self.run_dir, self.kimg, write, required=CHECKPOINT_FILES)
        checkpoint.save_network(self.run_dir / "G_ema.safetensors", self.G_ema, info)
        checkpoint.save_network(self.run_dir / "E.safetensors", E_paired, {**info, "generator_source": str((self.run_dir / "G_ema.safetensors").resolve())})
        runs.prune_to_newest(self.run_dir, self.tc.keep_snapshots, CHECKPOINT_FILES)
        return d

    def load_checkpoint(self, ckpt_dir: str | os.PathLike) -> None:
        ckpt_dir = Path(ckpt_dir)
        for name, net, cls in (("G", self.G, "Generator"), ("G_ema", self.G_ema, "Generator"), ("E", self.E, "Inverter"),
                               ("E_ema", self.E_ema, "Inverter"), ("D", self.D, "Discriminator")):  # fmt: skip
            net.load_state_dict(checkpoint.load_network(ckpt_dir / f"{name}.safetensors", cls).state_dict())
        tensors, meta = checkpoint.load_tensors(ckpt_dir / "train_state.safetensors")
        for name, opt in (("G_opt", self.G_opt), ("E_opt", self.E_opt), ("D_opt", self.D_opt)):
            checkpoint.load_optimizer_state(opt, tensors, meta[name], name)
        self.rng.set_state(tensors["rng_state"])
        self.step, self.nimg = int(meta["step"]), int(meta["nimg"])
        if self.augment is not None:
            self.augment.set_p(float(tensors["ada_p"]))
            self.ada.load_state_dict(meta["ada"])

    # ---- the loop ---------------------------------------------------------------------------
    def run(self, kimg: float | None = None, progress: bool = True, max_seconds: float | None = None) -> dict[str, Any]:
        """Train to ``kimg`` thousand sim frames (default the config's) or ``max_seconds``; returns the last metrics."""
        total = int(round((self.tc.kimg if kimg is None else kimg) * 1000))

        def summary(r: dict[str, Any], rate: float, eta: float) -> str:
            return (f"kimg {self.kimg:.2f} | {rate:.1f} img/s | recon {r['loss/recon']:.4f} | G {r['loss/G_adv']:.3f} | "
                    f"D {r['loss/D']:.3f} | ETA {eta / 60:.0f} min")  # fmt: skip

        return run_training(self, "train-pair", total, self.cfg.network.resolution,
                            lambda logs: {"rec": f"{logs['loss/recon']:.3f}", "adv": f"{logs['loss/G_adv']:.2f}"},
                            summary, progress, max_seconds)  # fmt: skip


def few_shot_subset(images: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """``limit`` of the ``[N, H, W, 3]`` images, drawn at random with ``seed`` (kept in file order).

    Subsets of one seed are nested: the 100 photos of a 100-photo run are among a 300-photo run's."""
    if not 1 <= limit <= len(images):
        raise ValueError(f"--target-limit must be between 1 and the {len(images)} target photos, got {limit}")
    order = np.random.default_rng([int(seed), 0x5107]).permutation(len(images))
    return images[np.sort(order[:limit])]


def train_pair(
    config: PairConfig | None,
    out: str | os.PathLike,
    *,
    sim_data: str | os.PathLike | None = None,
    target_data: str | os.PathLike | None = None,
    sim_masks: str | os.PathLike | None = None,
    kimg: float | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    max_seconds: float | None = None,
    command: str | None = None,
    init: str | os.PathLike | None = None,
    target_limit: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) a pair run in ``out``; returns the last metrics record.

    ``target_limit``: train on this many of the target photos only (a random subset drawn with
    ``seed``; few-shot runs). A resume keeps the run's subset.

    ``init``: a bundle (folder or file) whose generator and inverter the run starts from (the
    discriminator starts fresh); the config's network and inverter sections are taken from it.

    ``sim_masks``: a masks folder/array paired with ``sim_data``, or ``"auto"`` (``masks/`` beside a
    ``frames/`` folder). A resume reuses the run's stored config and data paths.
    """
    out = Path(out)
    if resume:
        config, data = stored_run(out, PairConfig, config)
        given = {"sim": sim_data, "target": target_data, "sim_masks": sim_masks}
        for key, value in given.items():
            if value is not None and str(Path(value).resolve()) != data.get(key) and not (key == "sim_masks" and value == "auto"):
                raise ValueError(f"--resume: --{key.replace('_', '-')} {value} differs from the run's {data.get(key)}")
        if target_limit is not None and target_limit != data.get("target_limit"):
            raise ValueError(f"--resume: --target-limit {target_limit} differs from the run's {data.get('target_limit')}")
        sim_data, target_data, sim_masks = data["sim"], data["target"], data.get("sim_masks")
        target_limit, seed = data.get("target_limit"), data.get("seed", seed)
    else:
        if config is None:
            raise ValueError("--config is required for a new run")
        if sim_data is None or target_data is None:
            raise ValueError("a new run needs --sim-data (simulator frames) and --target-data (target-domain photos)")
        if runs.list_checkpoints(out, required=CHECKPOINT_FILES):
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    start = None
    if init is not None and not resume:
        b = load_bundle(init, device="cpu")
        start = (b.G, b.E)
        config = replace(config, network=b.G.config,
                         inverter=from_dict(InverterNetworkConfig, b.E.export_config()["network"], f"{init} inverter"))  # fmt: skip
    if sim_masks is not None and str(sim_masks) == "auto":
        sim_masks = masks_beside(sim_data)
    R = config.network.resolution
    tc = config.training
    sim = load_images(sim_data, R, min_images=tc.min_images, progress=progress)
    target = load_images(target_data, R, min_images=tc.min_images, progress=progress)
    if target_limit is not None:
        target = few_shot_subset(target, target_limit, seed)
    masks = class_ids = None
    if sim_masks is not None:
        masks = load_masks(sim_masks, sim_data, R, n_frames=len(sim), progress=progress)
        class_ids = read_class_ids(sim_masks)
    trainer = PairTrainer(config, sim, target, masks, class_ids, run_dir=out, seed=seed, init=start)
    out.mkdir(parents=True, exist_ok=True)
    setup = {} if resume else {"sim": str(Path(sim_data).resolve()), "target": str(Path(target_data).resolve()),
                            "sim_masks": None if sim_masks is None else str(Path(sim_masks).resolve()),
                            "init": None if init is None else str(Path(init).resolve()),
                            "init_hash": None if start is None else checkpoint.weights_hash(start[0]),
                            "target_limit": target_limit, "seed": seed}  # fmt: skip
    start_or_resume(trainer, out, "train-pair", CHECKPOINT_FILES, resume, dump_yaml(config), setup,
                    command or " ".join(sys.argv))
    return trainer.run(kimg, progress=progress, max_seconds=max_seconds)
