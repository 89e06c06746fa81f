"""StyleGAN2 training loop (issue 3): importable, no argparse.

``train(config, data, out, ...)`` runs a whole training job into a run directory (layout in
``domrand.generator.train.runs``) and returns a ``TrainResult``; ``Trainer`` is the loop itself, one
``train_step()`` at a time, for callers that drive it (tests, future distributed launchers).

One step (global batch ``B``, split evenly over ``world_size`` ranks) runs the four phases of
StyleGAN2: G main (non-saturating loss through D, style mixing, ``w_avg`` update), lazy
path-length regularization every ``pl_interval`` steps, D main (logistic loss on augmented fakes
and reals, ADA statistics), lazy R1 every ``r1_interval`` steps; then the EMA generator update
and the ADA ``p`` update. Adam uses the lazy-regularization correction of lr and betas.

Everything random draws from explicit ``torch.Generator`` objects on the CPU (latents, style
mixing, noise inputs, data sampling, augmentation, path-length noise), seeded from ``seed`` and
``rank``; their states are stored in each checkpoint with the optimizer states, counters and
the global RNG states, so ``resume`` continues bit-for-bit on CPU. Evaluation (SWD, sample
sheets) uses separate fixed-seed generators and never touches training randomness.

Distributed training (``torchrun``, see ``domrand.distributed`` and docs/scaling.md): pass
``rank``, ``world_size`` and ``reduce`` (an all-reduce sum over ranks). Each rank draws its own
``batch / world_size`` samples from its own random streams (seeded from ``seed`` and ``rank``)
and from its own data shard (images ``rank::world_size``); gradients (one flat all-reduce per
phase, see ``_sync_grads``), the ``w_avg`` buffer, ADA statistics, path-length means and logged
losses are averaged through ``reduce``, so parameters stay identical on every rank. Only rank 0
writes files. Checkpoints hold every rank's stream states: resuming on the same number of
ranks is exact; on another number the networks, optimizers, EMA, ADA and counters continue
exactly and the per-rank streams are re-derived from ``(seed, rank, step, world_size)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from domrand import checkpoint as ckpt
from domrand import distributed as dist_utils
from domrand.config import dump_yaml, from_dict, load_config, replace, to_dict
from domrand.generator.nn.layers import block_resolutions
from domrand.generator.nn.networks import Discriminator, Generator
from domrand.generator.train import finetune, runs
from domrand.generator.train.augment import AdaController, AugmentPipe
from domrand.generator.train.dataset import ImageSampler, load_images
from domrand.generator.train.finetune import ARCH_FIELDS, frozen_reference, load_discriminator, load_init
from domrand.generator.train.losses import (
    PathLengthRegularizer,
    auto_r1_gamma,
    coarse_feature_loss,
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_adam_hparams,
    mixed_ws,
    path_length_lengths,
    r1_penalty,
)
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.train.stylegan_state import (
    load_trainer_checkpoint,
    load_trainer_state,
    save_trainer_checkpoint,
    trainer_state,
)
from domrand.generator.visualize import (
    grid_upscale,
    image_grid,
    plot_swd_curve,
    read_swd_records,
    sample_sheet,
    save_png,
)
from domrand.metrics import swd
from domrand.utils import atomic_write_text, cpu_has_fast_bfloat16, derive_seed, prepare_cpu_networks, resolve_device

Reduce = Callable[[torch.Tensor], torch.Tensor]

# Independent random streams of one rank (each a CPU torch.Generator).
STREAMS = ("z", "mix", "noise", "data", "augment", "pl")
DEFAULT_PRESET = "small64"  # the generator preset of a new run that names none
GRID_ROWS, GRID_COLS = 4, 8  # fixed-latent rows of the sample sheet
_INIT_LOCK = threading.Lock()
# Fine-tuning defaults (training.init set; issue 16): a frozen mapping keeps W itself shared with the
# start generator, and FreezeD keeps the discriminator's first (highest-resolution) block.
FINETUNE_MAPPING_LR_MULT = 0.0
FINETUNE_FREEZE_D = 1


# --------------------------------------------------------------------------------------------
# Config resolution


def resolve_config(
    config: GeneratorConfig | str | Path,
    *,
    kimg: float | None = None,
    batch: int | None = None,
    progressive: bool | None = None,
    world_size: int = 1,
    overrides: Mapping[str, Any] | None = None,
) -> GeneratorConfig:
    """Load a preset (name, path or object), apply overrides, fill in ``r1_gamma`` and the
    fine-tuning defaults (``mapping_lr_mult``, ``freeze_d``: see ``TrainingConfig``) and validate.

    ``overrides``: dotted keys (``{"training.freeze_d": 2}``), as ``--set KEY=VALUE`` gives them;
    their types are checked. Raises ``ValueError`` (``ConfigError``) with a clear message for
    impossible settings.
    """
    cfg = config if isinstance(config, GeneratorConfig) else load_config(config, GeneratorConfig)
    if overrides:
        cfg = from_dict(GeneratorConfig, to_dict(replace(cfg, **dict(overrides))), "config (--set)")
    changes: dict[str, Any] = {}
    if kimg is not None:
        changes["training.kimg"] = float(kimg)
    if batch is not None:
        changes["training.batch"] = int(batch)
    if progressive is not None:
        changes["training.progressive"] = bool(progressive)
    if changes:
        cfg = replace(cfg, **changes)
    t, net = cfg.training, cfg.network
    if t.batch < 1:
        raise ValueError(f"training.batch must be >= 1, got {t.batch}")
    if t.batch % world_size:
        raise ValueError(f"training.batch={t.batch} must be divisible by world_size={world_size}")
    if not t.kimg > 0:
        raise ValueError(f"training.kimg must be > 0, got {t.kimg}")
    for key in ("r1_interval", "pl_interval", "pl_batch_shrink", "ada_interval", "log_steps"):
        if getattr(t, key) < 1:
            raise ValueError(f"training.{key} must be >= 1, got {getattr(t, key)}")
    if t.snapshot_kimg <= 0 or t.metrics_kimg <= 0:
        raise ValueError("training.snapshot_kimg and training.metrics_kimg must be > 0")
    if t.progressive:
        r0 = t.start_resolution
        if r0 < 8 or r0 > net.resolution or r0 & (r0 - 1):
            raise ValueError(
                f"training.start_resolution must be a power of two in [8, {net.resolution}] for --progressive, got {r0}"
            )
    fine_tuning = t.init is not None
    d_blocks = len(block_resolutions(net.resolution, lowest=8))
    if t.mapping_lr_mult is not None and not (math.isfinite(t.mapping_lr_mult) and t.mapping_lr_mult >= 0):
        raise ValueError(f"training.mapping_lr_mult must be a finite number >= 0 (0 = frozen mapping), got {t.mapping_lr_mult}")
    if t.freeze_d is not None and not 0 <= t.freeze_d <= d_blocks:
        raise ValueError(f"training.freeze_d must be in [0, {d_blocks}] (the discriminator's blocks at {net.resolution}px), got {t.freeze_d}")
    if not (math.isfinite(t.init_feature_weight) and t.init_feature_weight >= 0):
        raise ValueError(f"training.init_feature_weight must be a finite number >= 0, got {t.init_feature_weight}")
    k = t.keep_resolution
    if k < 4 or k > net.resolution or k & (k - 1):
        raise ValueError(f"training.keep_resolution must be a power of two in [4, {net.resolution}], got {k}")
    if t.init_feature_weight > 0 and not fine_tuning:
        raise ValueError("training.init_feature_weight > 0 needs a start generator to match: pass --init (training.init)")
    if t.init_hash is not None and not fine_tuning:
        raise ValueError("training.init_hash is set but training.init is not")
    filled: dict[str, Any] = {}
    if t.r1_gamma is None:
        filled["training.r1_gamma"] = auto_r1_gamma(net.resolution, t.batch)
    if t.mapping_lr_mult is None:
        filled["training.mapping_lr_mult"] = FINETUNE_MAPPING_LR_MULT if fine_tuning else 1.0
    if t.freeze_d is None:
        filled["training.freeze_d"] = min(FINETUNE_FREEZE_D, d_blocks) if fine_tuning else 0
    return replace(cfg, **filled) if filled else cfg


def progressive_schedule(nimg: int, cfg: GeneratorConfig) -> tuple[int, float]:
    """``(active_resolution, alpha)`` after ``nimg`` real images under the progressive curriculum.

    Start at ``start_resolution`` for ``stabilize_kimg``; then for each doubling fade the new
    resolution in over ``fade_kimg`` (alpha 0 -> 1) and stabilize for ``stabilize_kimg``; the
    full resolution stays once reached. Without ``progressive`` always ``(resolution, 1.0)``.
    """
    t, final = cfg.training, cfg.network.resolution
    if not t.progressive:
        return final, 1.0
    kimg = nimg / 1000.0
    res = t.start_resolution
    kimg -= t.stabilize_kimg
    while res < final and kimg >= 0:
        if kimg < t.fade_kimg:
            return res * 2, float(kimg / t.fade_kimg) if t.fade_kimg > 0 else 1.0
        kimg -= t.fade_kimg + t.stabilize_kimg
        res *= 2
    return res, 1.0


def dataset_key(images: np.ndarray) -> str:
    """A short hash of the training array (shape + bytes), stored to detect data changes on resume."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# The loop


class Trainer:
    """StyleGAN2 + ADA training state and one-step update. See the module docstring."""

    def __init__(
        self,
        cfg: GeneratorConfig,  # resolved config (see resolve_config)
        images: np.ndarray,  # uint8 [N, R, R, 3] training images (all ranks: the full set)
        *,
        device: str | torch.device = "cpu",  # training device
        seed: int = 0,  # seeds every random stream
        rank: int = 0,  # this process's rank
        world_size: int = 1,  # number of processes
        reduce: Reduce | None = None,  # all-reduce sum over ranks (None: single process)
    ):
        t0 = cfg.training
        if t0.r1_gamma is None or t0.mapping_lr_mult is None or t0.freeze_d is None:
            cfg = resolve_config(cfg, world_size=world_size)
        self.cfg, self.t = cfg, cfg.training
        self.device = resolve_device(device)
        self.seed, self.rank, self.world_size, self.reduce = int(seed), int(rank), int(world_size), reduce
        self.batch = self.t.batch
        self.local_batch = self.batch // self.world_size
        res = cfg.network.resolution
        if images.ndim != 4 or images.shape[1:] != (res, res, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 [N, {res}, {res}, 3], got {images.dtype} {list(images.shape)}")
        self.images = images
        self.data_key = dataset_key(images)
        self.sampler = ImageSampler(images, xflip=self.t.xflip, rank=rank, world_size=world_size)

        # Weight init: same on every rank; caller's RNG untouched; the lock keeps ranks that are
        # threads of one process (tests) from interleaving on torch's global RNG.
        with _INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 0, 100))
            self.G = Generator(cfg.network).to(self.device).train()
            self.D = Discriminator(cfg.network, progressive=self.t.progressive).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # CUDA mixed precision: networks with num_fp16_res > 0 run those layers in fp16 (with conv_clamp);
        # otherwise bf16 autocast of the main passes when training.amp.
        # A CPU with native bfloat16 runs the same autocast with training.cpu_amp.
        on_cpu = self.device.type == "cpu"
        native_bf16 = self.device.type == "cuda" or (on_cpu and self.t.cpu_amp and cpu_has_fast_bfloat16())
        self.amp = native_bf16 and self.t.amp and cfg.network.num_fp16_res == 0
        if self.device.type == "cuda" and self.t.channels_last:
            self.D = self.D.to(memory_format=torch.channels_last)
        if on_cpu:  # oneDNN's convolutions and their backward are faster on NHWC; reuse freed activations
            prepare_cpu_networks(self.G, self.D, self.G_ema)

        pl_interval = self.t.pl_interval if self.t.pl_weight > 0 else None
        r1_interval = self.t.r1_interval if self.t.r1_gamma and self.t.r1_gamma > 0 else None
        g_lr, g_betas = lazy_adam_hparams(self.t.g_lr, self.t.betas, pl_interval)
        d_lr, d_betas = lazy_adam_hparams(self.t.d_lr, self.t.betas, r1_interval)
        # Fine-tuning controls: a slower or frozen mapping network, FreezeD's frozen first D blocks.
        # Frozen parameters never get gradients and are not in the optimizers.
        mapping = [p for name, p in self.G.named_parameters() if name.startswith("mapping.")]
        synthesis = [p for name, p in self.G.named_parameters() if not name.startswith("mapping.")]
        mult = float(self.t.mapping_lr_mult)
        self.frozen_G = mapping if mult == 0 else []
        frozen_d = tuple(f"blocks.b{r}." for r in self.D.block_resolutions[: int(self.t.freeze_d)])
        self.frozen_D = [p for name, p in self.D.named_parameters() if name.startswith(frozen_d)] if frozen_d else []
        if mult == 1:  # one group, as in a fresh run (and in checkpoints written before these options)
            g_params: Any = list(self.G.parameters())
        elif mult == 0:
            g_params = synthesis
        else:
            g_params = [{"params": synthesis}, {"params": mapping, "lr": g_lr * mult}]
        frozen_ids = {id(p) for p in self.frozen_D}
        d_params = [p for p in self.D.parameters() if id(p) not in frozen_ids]
        self.G_opt = torch.optim.Adam(g_params, lr=g_lr, betas=g_betas, eps=1e-8)
        self.D_opt = torch.optim.Adam(d_params, lr=d_lr, betas=d_betas, eps=1e-8)
        self.G_init: Generator | None = None  # frozen start generator (fine-tuning; see set_init_reference)

        self.augment = None
        self.ada = None
        if self.t.ada:
            self.augment = AugmentPipe(0.0).to(self.device)
            self.ada = AdaController(
                target=self.t.ada_target, interval=self.t.ada_interval, speed_kimg=self.t.ada_kimg, batch=self.batch
            )
        self.pl = PathLengthRegularizer(self.t.pl_decay, device=self.device, reduce=reduce, world_size=world_size)
        self.gens = {name: torch.Generator().manual_seed(derive_seed(seed, rank, i)) for i, name in enumerate(STREAMS)}
        self.resumed_streams = "fresh"  # fresh | restored | rederived (after load_state)
        self.grid_z = torch.randn(GRID_ROWS * GRID_COLS, cfg.network.z_dim, generator=torch.Generator().manual_seed(seed))
        self.step = 0
        self.nimg = 0
        self.data_source: str | None = None  # dataset path recorded in checkpoints (for eval/resume)

    # ---- small helpers ------------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.nimg / 1000.0

    def schedule(self) -> tuple[int, float]:
        return progressive_schedule(self.nimg, self.cfg)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _trainable(self, net: torch.nn.Module, on: bool) -> None:
        """Switch gradients of G or D on (except the frozen parameters) or off."""
        net.requires_grad_(on)
        if on:
            for p in self.frozen_G if net is self.G else self.frozen_D if net is self.D else []:
                p.requires_grad_(False)

    def set_init_reference(self, G_start: Generator) -> None:
        """Keep a frozen copy of the start generator (on this device): the reference of the
        coarse-feature term ``training.init_feature_weight``."""
        if to_dict(G_start.config) != to_dict(self.G.config):
            mine, theirs = to_dict(self.G.config), to_dict(G_start.config)
            diff = [k for k in mine if mine[k] != theirs.get(k)]

            if any(k in ARCH_FIELDS for k in diff):
                raise ValueError(f"the start generator's network differs from this run's in {diff}")
        self.G_init = frozen_reference(G_start).to(self.device)

    def start_from(self, src: Any, log: Callable[[str], None] | None = None) -> None:
        """Fine-tuning: load a start's weights (``finetune.InitSource``) before the first step.

        G_ema <- the start's G_ema; G <- the start's G_ema (``training.init_from_ema``) or its raw G
        when it has one; D <- the start's D when it has one (else D keeps its fresh init). The
        optimizers keep the same parameter objects (weights are copied in place)."""
        if self.step or self.nimg:
            raise RuntimeError("start_from: the trainer has already taken steps")
        G_src = src.G if src.G is not None and not self.t.init_from_ema else src.G_ema
        with torch.no_grad():
            self.G.load_state_dict(G_src.state_dict(), strict=True)
            self.G_ema.load_state_dict(src.G_ema.state_dict(), strict=True)
            if src.D is not None:
                note = load_discriminator(self.D, src.D, src.files.get("D", "?"))
                if note and log:
                    log(f"domrand: {note}")
        self.set_init_reference(src.G_ema)

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.network.z_dim, generator=self.gens["z"]).to(self.device)

    def _noise(self, G: Generator, n: int, res: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {
            name: torch.randn(n, 1, r, r, generator=gen).to(self.device)
            for name, r in G.synthesis.noise_layers
            if r <= res
        }

    def _generate(
        self, n: int, res: int, alpha: float, update_emas: bool, extras: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """``(images [n, 3, res, res], ws [n, num_ws, w_dim])`` (+ synthesis extras when ``extras``)."""
        z, z2 = self._z(n), self._z(n)
        ws = mixed_ws(self.G, z, z2, self.t.style_mixing_prob, generator=self.gens["mix"], update_emas=update_emas)
        if torch.is_grad_enabled() and not ws.requires_grad:  # frozen mapping: path length still needs d/dws
            ws = ws.detach().requires_grad_(True)
        out = self.G.synthesis(
            ws, noise=self._noise(self.G, n, res, self.gens["noise"]), active_resolution=res, alpha=alpha,
            return_extras=extras,
        )  # fmt: skip
        return (out[0], ws, out[1]) if extras else (out, ws)

    def _init_feature_loss(self, ws: torch.Tensor, extras: dict[str, Any], res: int) -> torch.Tensor:
        """MSE between G's coarse features (``extras`` of this batch) and the start generator's for
        the same ws and unit noise, over blocks up to ``keep_resolution``; a scalar."""
        if self.G_init is None:
            raise RuntimeError("training.init_feature_weight > 0 but no start generator is set (set_init_reference)")
        keep = min(self.t.keep_resolution, res)
        names = {name for name, r in self.G.synthesis.noise_layers if r <= keep}
        noise = {k: v for k, v in extras["noise"].items() if k in names}
        with torch.no_grad():
            _, ref = self.G_init.synthesis(ws.detach(), noise=noise, active_resolution=keep, return_extras=True)
        return coarse_feature_loss(extras["features"], ref["features"], keep)

    def _run_D(self, img: torch.Tensor, res: int, alpha: float) -> torch.Tensor:
        if self.augment is not None:
            img = self.augment(img, generator=self.gens["augment"])
        if self.device.type == "cuda" and self.t.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        return self.D(img, active_resolution=res, alpha=alpha)

    def _reals(self, n: int, res: int, alpha: float) -> torch.Tensor:
        x = self.sampler.sample(n, self.gens["data"], self.device)
        full = self.cfg.network.resolution
        if res < full:
            x = F.avg_pool2d(x, full // res)
            if alpha < 1:
                low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
                x = low.lerp(x, alpha)
        return x

    def _distributed(self) -> bool:
        return self.world_size > 1 and self.reduce is not None

    def _sync_grads(self, module: torch.nn.Module) -> None:
        """Average gradients over ranks (by hand, not ``DistributedDataParallel``: the R1 and
        path-length phases differentiate through gradients, which DDP's reducer does not support,
        and phases switch parameters on and off, which DDP would need ``find_unused_parameters``
        for; see ``distributed.average_gradients``)."""
        dist_utils.average_gradients(module.parameters(), self.reduce, self.world_size, rank=self.rank, what=type(module).__name__)

    def _rank_mean(self, value: torch.Tensor) -> float:
        return dist_utils.mean_over_ranks(value, self.reduce, self.world_size)

    # ---- one step -----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimization step on the global batch; returns scalars for logging."""
        t, b = self.t, self.local_batch
        res, alpha = self.schedule()
        stats: dict[str, float] = {}

        # G main: non-saturating loss (+ the coarse-feature term when fine-tuning); w_avg follows this batch.
        self._trainable(self.G, True)
        self.D.requires_grad_(False)
        feature_weight = t.init_feature_weight
        with self._autocast():
            if feature_weight > 0:
                fake, ws, extras = self._generate(b, res, alpha, update_emas=True, extras=True)
            else:
                fake, _ = self._generate(b, res, alpha, update_emas=True)
            logits = self._run_D(fake, res, alpha)
        loss_g = g_nonsaturating_loss(logits.float())
        total_g = loss_g
        if feature_weight > 0:
            with self._autocast():
                loss_feat = self._init_feature_loss(ws, extras, res)
            total_g = loss_g + feature_weight * loss_feat
            stats["loss_init_feat"] = self._rank_mean(loss_feat)
        self.G_opt.zero_grad(set_to_none=True)
        total_g.backward()
        self._sync_grads(self.G)
        self.G_opt.step()
        dist_utils.average_buffers(self.G, "w_avg", self.reduce, self.world_size)  # lerp is linear: as one process
        stats["loss_G"] = self._rank_mean(loss_g)

        # G reg: lazy path length (fp32).
        if t.pl_weight > 0 and self.step % t.pl_interval == 0:
            n = max(1, b // t.pl_batch_shrink)
            img, ws = self._generate(n, res, alpha, update_emas=False)
            lengths = path_length_lengths(img.float(), ws, generator=self.gens["pl"])
            penalty = self.pl.penalty(lengths)
            loss_pl = penalty.mean() * t.pl_weight * t.pl_interval
            self.G_opt.zero_grad(set_to_none=True)
            loss_pl.backward()
            self._sync_grads(self.G)
            self.G_opt.step()
            stats["loss_pl"] = self._rank_mean(penalty.mean())
        self.G.requires_grad_(False)

        # D main: logistic loss on augmented fakes and reals; ADA statistics.
        self._trainable(self.D, True)
        with torch.no_grad(), self._autocast():
            fake, _ = self._generate(b, res, alpha, update_emas=False)
        real = self._reals(b, res, alpha)
        with self._autocast():
            fake_logits = self._run_D(fake.float(), res, alpha)
            real_logits = self._run_D(real, res, alpha)
        if self.ada is not None:
            self.ada.accumulate(real_logits)
        loss_fake, loss_real = d_logistic_loss(real_logits.float(), fake_logits.float())
        self.D_opt.zero_grad(set_to_none=True)
        (loss_fake + loss_real).backward()
        self._sync_grads(self.D)
        self.D_opt.step()
        stats["loss_D"] = self._rank_mean(loss_fake + loss_real)
        stats["D_real"] = self._rank_mean(real_logits.float().mean())
        stats["D_fake"] = self._rank_mean(fake_logits.float().mean())

        # D reg: lazy R1 on (un-augmented) reals, gradient through the augmentation (fp32).
        if t.r1_gamma and t.r1_gamma > 0 and self.step % t.r1_interval == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = r1_penalty(real_r1, self._run_D(real_r1, res, alpha))
            loss_r1 = penalty.mean() * (t.r1_gamma / 2) * t.r1_interval
            self.D_opt.zero_grad(set_to_none=True)
            loss_r1.backward()
            self._sync_grads(self.D)
            self.D_opt.step()
            stats["loss_r1"] = self._rank_mean(penalty.mean())
        self.D.requires_grad_(False)

        self._update_ema()
        if self.ada is not None:
            self.ada.update(self.augment, reduce=self.reduce)
            stats["p"] = float(self.augment.p)
            if self.ada.r_t is not None:
                stats["r_t"] = float(self.ada.r_t)
        stats["pl_mean"] = float(self.pl.pl_mean)
        self.step += 1
        self.nimg += self.batch
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_nimg = self.t.ema_kimg * 1000
        if self.t.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * self.t.ema_rampup)
        beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_ema(
        self, n: int, seed: int = 123, batch: int = 32, full_resolution: bool = True, split: bool = False
    ) -> torch.Tensor:
        """``n`` G_ema images, float ``[n, 3, R, R]`` on the CPU, from fixed-seed latents and noise.

        During progressive growing the current resolution is upsampled to R when ``full_resolution``.
        ``split`` (a collective with several ranks): rank r renders chunks ``r::world_size`` and the
        chunks are summed into place over ranks, so every rank returns the same images a single
        process renders (every rank draws all chunks' latents and noise to stay in step).
        """
        res, alpha = self.schedule()
        gen = torch.Generator().manual_seed(int(seed))
        split = split and self._distributed()
        out = []
        for c, i in enumerate(range(0, n, batch)):
            m = min(batch, n - i)
            z = torch.randn(m, self.cfg.network.z_dim, generator=gen).to(self.device)
            noise = self._noise(self.G_ema, m, res, gen)
            if split and c % self.world_size != self.rank:
                out.append(None)
                continue
            ws = self.G_ema.mapping(z)
            img = self.G_ema.synthesis(ws, noise=noise, active_resolution=res, alpha=alpha)
            out.append(img.float().cpu())
        if split:
            shape = next(o for o in out if o is not None).shape[1:] if any(o is not None for o in out) else None
            shape = (3, res, res) if shape is None else shape
            buf = torch.zeros((n, *shape), dtype=torch.float32)
            for c, img in enumerate(out):
                if img is not None:
                    buf[c * batch : c * batch + len(img)] = img
            images = self.reduce(buf).cpu()
        else:
            images = torch.cat(out)
        full = self.cfg.network.resolution
        if full_resolution and images.shape[-1] != full:
            images = F.interpolate(images, size=(full, full), mode="bilinear", align_corners=False)
        return images

    def swd_reals(self) -> np.ndarray:
        """The fixed subset of dataset images SWD compares against (``swd_images`` of them)."""
        n = min(self.t.swd_images, len(self.images))
        idx = np.sort(np.random.default_rng(self.seed).choice(len(self.images), size=n, replace=False))
        return self.images[idx]

    def evaluate_swd(self, reals: np.ndarray | None = None, fakes: torch.Tensor | None = None) -> dict[str, float]:
        """SWD of ``swd_images`` G_ema images against ``reals``; ``fakes`` if already rendered."""
        reals = self.swd_reals() if reals is None else reals
        fakes = self.generate_ema(self.t.swd_images) if fakes is None else fakes
        return swd(fakes, reals, seed=0)

    @torch.no_grad()
    def sample_sheet(self) -> np.ndarray:
        res, alpha = self.schedule()
        return sample_sheet(self.G_ema, self.grid_z, GRID_COLS, psi=0.5, active_resolution=res, alpha=alpha)

    # ---- state ------------------------------------------------------------------------------------
    # ---- state on disk (stylegan_state) ---------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything besides the networks as tensors + JSON (a collective with several ranks)."""
        return trainer_state(self)

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        load_trainer_state(self, tensors, meta)

    def save_checkpoint(self, run_dir: str | Path, swd_mean: float | None, state: tuple[dict, dict] | None = None) -> Path:
        """Write ``checkpoints/kimg-<kimg>/`` (atomic dir) for the current state."""
        return save_trainer_checkpoint(self, run_dir, swd_mean, state)

    def load_checkpoint(self, ckpt_dir: str | Path) -> dict[str, Any]:
        """Restore networks and training state from a checkpoint dir; returns its metadata."""
        return load_trainer_checkpoint(self, ckpt_dir)

# --------------------------------------------------------------------------------------------
# Whole runs


@dataclass
class TrainResult:
    run_dir: Path | None  # the run directory (None when out=None)
    step: int  # optimization steps done in total
    kimg: float  # real images shown in total / 1000
    swd: list[tuple[float, float]] = field(default_factory=list)  # [(kimg, mean SWD)] of this call
    img_per_s: float = 0.0  # training throughput of this call (excluding evaluation)
    seconds: float = 0.0  # wall time of this call
    trainer: Trainer | None = None  # the trainer (networks, optimizers) at the end


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Logger:
    """metrics.jsonl + optional TensorBoard scalars (rank 0 only)."""

    _tb_note_shown = False

    def __init__(self, run_dir: Path | None, tensorboard: bool = True):
        self.path = None if run_dir is None else run_dir / runs.METRICS
        self.tb = None
        if run_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: skip quietly after one line
                if not _Logger._tb_note_shown:
                    _info("domrand: TensorBoard not installed; scalars go to metrics.jsonl only")
                    _Logger._tb_note_shown = True

    def write(self, record: dict[str, Any], step: int) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step",):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)
            for key, value in record.get("swd", {}).items():
                self.tb.add_scalar(f"swd/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _crossed(before: int, after: int, every_nimg: float) -> bool:
    every = max(1, int(round(every_nimg)))
    return after // every > before // every


def _load_data(data: str | Path | np.ndarray, resolution: int, min_images: int, cache_dir, progress: bool) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if len(data) < min_images:
            raise ValueError(f"found {len(data)} image(s) in the given array, need at least {min_images}")
        return data

    return load_images(data, resolution, cache_dir=cache_dir, min_images=min_images, progress=progress)


def prepare_run_dir(out: Path, resume: bool, log: Callable[[str], None] | None = _info) -> Path | None:
    """Check ``out`` for a fresh run (must be empty or absent) or a resume (must hold a checkpoint).

    Returns the checkpoint dir to resume from (None for a fresh run): the newest one whose files
    pass their checksums (a corrupt newer one is skipped and reported through ``log``).
    """
    if resume:
        if not out.is_dir():
            raise FileNotFoundError(f"--resume: run directory {out} does not exist")
        latest = runs.resume_checkpoint(out, log=log)
        if latest is None:
            what = "intact" if runs.list_checkpoints(out) else "complete"
            raise ValueError(f"--resume: no {what} checkpoint in {out / runs.CHECKPOINTS}; nothing to resume")
        if not (out / runs.CONFIG).is_file():
            raise ValueError(f"--resume: {out / runs.CONFIG} is missing; is {out} a train-generator run?")
        return latest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(
            f"output directory {out} already exists and is not empty; pass --resume to continue that run "
            "or choose another --out (refusing to overwrite)"
        )
    return None


FALLBACK_PRESET = "small64"  # training section of a fine-tuning run from a bundle or file without --config


def fresh_config(
    config: GeneratorConfig | str | Path | None,
    *,
    init: str | Path | None = None,  # fine-tuning start (run, checkpoint dir, bundle, file); None: training.init
    overrides: Mapping[str, Any] | None = None,  # dotted --set keys
    kimg: float | None = None,
    batch: int | None = None,
    progressive: bool | None = None,
    world_size: int = 1,
    fallback_preset: str = FALLBACK_PRESET,
    log: Callable[[str], None] | None = _info,  # notes (None: quiet)
) -> tuple[GeneratorConfig, Any]:
    """The resolved config of a new run and its fine-tuning start (``finetune.InitSource`` or None).

    A start comes from ``init``, else from ``training.init`` of the config or the overrides. Without
    a config a fine-tuning run takes ``finetune.default_config`` (the start's run config or
    ``fallback_preset`` with the start's network). ``training.init`` and ``training.init_hash``
    are filled in; a recorded ``init_hash`` that differs from the start's weights is an error, and
    so is a network that is not the start's architecture.
    """
    base = None
    if config is not None:
        base = config if isinstance(config, GeneratorConfig) else load_config(config, GeneratorConfig)
    sets = dict(overrides or {})
    init_path = init if init is not None else sets.get("training.init", base.training.init if base is not None else None)
    if init_path is None:
        if base is None:
            raise ValueError("a config (preset name or YAML path) is required")
        return resolve_config(base, kimg=kimg, batch=batch, progressive=progressive, world_size=world_size, overrides=sets), None

    src = finetune.load_init(init_path, log=log)
    if base is None:
        base, where = finetune.default_config(src, fallback_preset)
        if log:
            log(f"domrand: fine-tuning config: {where}")
    want = sets.get("training.init_hash", base.training.init_hash)
    if want is not None and want != src.hash:
        raise ValueError(f"--init: the config records init_hash {want}, but {src.path} holds generator {src.hash}")
    sets.update({"training.init": str(src.path), "training.init_hash": src.hash})
    cfg = resolve_config(base, kimg=kimg, batch=batch, progressive=progressive, world_size=world_size, overrides=sets)
    for note in finetune.check_architecture(cfg.network, src):
        if log:
            log(f"domrand: note: {note}")
    return cfg, src


def _resume_config(out: Path, config, kimg, batch, progressive, world_size, overrides=None) -> GeneratorConfig:
    stored = load_config(out / runs.CONFIG, GeneratorConfig)
    cfg = resolve_config(stored, kimg=kimg, world_size=world_size)
    if config is not None or overrides:
        asked = resolve_config(
            config if config is not None else stored, kimg=cfg.training.kimg, batch=batch, progressive=progressive,
            world_size=world_size, overrides=overrides,
        )  # fmt: skip
        a, b = to_dict(asked), to_dict(cfg)
        diff = [f"{s}.{k}" for s in ("network", "training") for k in a[s] if a[s][k] != b[s][k]]
        if diff:
            raise ValueError(
                f"--resume: the given config differs from the run's {out / runs.CONFIG} in {', '.join(diff)}; "
                "only --kimg may change when resuming"
            )
    if config is None:
        if batch is not None and batch != cfg.training.batch:
            raise ValueError(f"--resume: the run was trained with batch {cfg.training.batch}; --batch {batch} cannot change it")
        if progressive is not None and progressive != cfg.training.progressive:
            raise ValueError("--resume: --progressive cannot change when resuming")
    return cfg


def train(
    config: GeneratorConfig | str | Path | None,
    data: str | Path | np.ndarray | None,
    out: str | Path | None,
    *,
    kimg: float | None = None,  # total training length (overrides the preset); resume continues up to it
    batch: int | None = None,  # global batch (overrides the preset)
    progressive: bool | None = None,  # progressive-growing curriculum (overrides the preset)
    resume: bool = False,  # continue the newest complete checkpoint in ``out``
    device: str | torch.device = "auto",  # auto | cpu | cuda | cuda:N
    seed: int = 0,  # seeds everything
    progress: bool = True,  # tqdm progress bar
    cache_dir: str | Path | None = None,  # dataset cache folder (dataset.load_images)
    command: str | None = None,  # command line to record in command.txt (default: sys.argv)
    eval_at_start: bool = True,  # fresh runs: SWD + samples at kimg 0
    tensorboard: bool = True,  # TensorBoard scalars when the package is installed
    rank: int = 0,  # distributed rank (only rank 0 writes files)
    world_size: int = 1,  # number of ranks
    reduce: Reduce | None = None,  # all-reduce sum over ranks
    allow_changes: bool = False,  # resume: accept a dataset other than the one the run was trained on
    init: str | Path | None = None,  # fine-tune: start from this generator run, checkpoint dir, bundle or file
    overrides: Mapping[str, Any] | None = None,  # dotted config keys (--set), e.g. {"training.freeze_d": 2}
) -> TrainResult:
    """Train a generator into run directory ``out`` (None: keep nothing on disk). See module doc."""
    out_path = None if out is None else Path(out)
    if resume and out_path is None:
        raise ValueError("resume needs an output directory")
    distributed = world_size > 1 and reduce is not None

    ranks = world_size if distributed else 1
    resume_from = dist_utils.raise_together(
        lambda: prepare_run_dir(out_path, resume) if out_path is not None and rank == 0 else None,
        reduce,
        ranks,
        f"rank {rank}: rank 0 could not prepare {out_path}; see its error",
        catch=(ValueError, FileNotFoundError),
    )
    if out_path is not None and rank != 0 and resume:
        resume_from = runs.resume_checkpoint(out_path)
    src = None
    if resume_from is not None:
        cfg = _resume_config(out_path, config, kimg, batch, progressive, world_size, overrides)
        if init is not None and (cfg.training.init is None or str(Path(init).expanduser().resolve()) != cfg.training.init):
            raise ValueError(
                f"--resume: {out_path} was started from {cfg.training.init or 'scratch'}; --init {init} cannot change "
                "that (omit --init: a resume continues the run's own weights)"
            )
        _, state_meta = ckpt.load_tensors(resume_from / "train_state.safetensors")
        if data is None:
            data = state_meta.get("data")
            if not data:
                raise ValueError("--resume: the checkpoint does not record its dataset; pass --data")
    else:
        if data is None:
            raise ValueError("--data is required")
        cfg, src = fresh_config(
            config, init=init, overrides=overrides, kimg=kimg, batch=batch, progressive=progressive,
            world_size=world_size, log=_info if rank == 0 else None,
        )  # fmt: skip
    t = cfg.training
    if distributed and not isinstance(data, np.ndarray):
        # Rank 0 decodes (and caches) first; the other ranks then read the cache.
        images = dist_utils.raise_together(
            lambda: _load_data(data, cfg.network.resolution, t.min_images, cache_dir, progress) if rank == 0 else None,
            reduce,
            ranks,
            f"rank {rank}: rank 0 could not load {data}; see its error",
        )
        if rank != 0:
            images = _load_data(data, cfg.network.resolution, t.min_images, cache_dir, False)
    else:
        images = _load_data(data, cfg.network.resolution, t.min_images, cache_dir, progress and rank == 0)
    if distributed and rank == 0:
        _info(f"domrand: {world_size} ranks, global batch {t.batch} = {world_size} x {t.batch // world_size}")
    trainer = Trainer(cfg, images, device=device, seed=seed, rank=rank, world_size=world_size, reduce=reduce)
    trainer.data_source = None if isinstance(data, np.ndarray) else str(Path(data).resolve())
    writes = out_path is not None and rank == 0
    if src is not None:
        trainer.start_from(src, log=_info if rank == 0 else None)
        if rank == 0:
            _info(f"domrand: fine-tuning from {src.describe()}")

    best_swd = math.inf
    if resume_from is not None:
        meta = trainer.load_checkpoint(resume_from)
        if meta.get("data_key") != trainer.data_key:
            if not allow_changes:
                raise ValueError(
                    f"--resume: the dataset {'(an array)' if isinstance(data, np.ndarray) else data} differs from the one {resume_from} was trained on "
                    f"({meta.get('data')}); pass the run's data, or --allow-changes to continue on this one"
                )
            _info(f"domrand: warning: the dataset differs from the one {resume_from} was trained on; resume is not exact")
        if cfg.training.init_feature_weight > 0:
            trainer.set_init_reference(_stored_init_generator(out_path, cfg))
        if (out_path / runs.G_EMA_BEST).is_file():
            s = ckpt.read_network_info(out_path / runs.G_EMA_BEST)["extra"].get("swd")
            best_swd = math.inf if s is None else float(s)
        if rank == 0:
            note = "" if trainer.resumed_streams == "restored" else (
                f"; it was written by {meta.get('world_size', 1)} rank(s), so the per-rank random streams are "
                f"re-derived from (seed, rank, step) for {world_size}"
            )
            _info(f"domrand: resumed {resume_from} (step {trainer.step}, kimg {trainer.kimg:.3f}){note}")

    logger = _Logger(out_path if writes else None, tensorboard=tensorboard)
    cmd = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    if writes:
        out_path.mkdir(parents=True, exist_ok=True)
        for p in runs.remove_temp_files(out_path):
            _info(f"domrand: removed {p}, left by an interrupted run")
        if resume_from is not None:
            dropped = runs.trim_metrics(out_path / runs.METRICS, trainer.step)
            if dropped:
                _info(f"domrand: {out_path / runs.METRICS}: dropped {dropped} record(s) written after {resume_from.name}")
        if resume_from is None:
            atomic_write_text(out_path / runs.CONFIG, dump_yaml(cfg))
            atomic_write_text(out_path / runs.COMMAND, cmd + "\n")
            if src is not None:  # the start generator: provenance, the coarse-feature reference on resume
                about = {"source": str(src.path), "kind": src.kind, "files": src.files, "weights_hash": src.hash}
                ckpt.save_network(out_path / runs.G_INIT, src.G_ema, about)
        else:
            with open(out_path / runs.COMMAND, "a", encoding="utf-8") as f:
                f.write(cmd + "\n")
            if cfg.training.kimg != load_config(out_path / runs.CONFIG, GeneratorConfig).training.kimg:
                atomic_write_text(out_path / runs.CONFIG, dump_yaml(cfg))
        if not (out_path / runs.REALS).is_file():
            n = min(len(images), GRID_ROWS * GRID_COLS)
            save_png(out_path / runs.REALS, image_grid(images[:n], GRID_COLS), upscale=grid_upscale(cfg.network.resolution))

    total_nimg = int(round(t.kimg * 1000))
    swd_reals = trainer.swd_reals() if writes or out_path is None else None
    result = TrainResult(run_dir=out_path, step=trainer.step, kimg=trainer.kimg, trainer=trainer)
    start = time.perf_counter()
    train_seconds = 0.0
    train_images = 0

    def evaluate(snapshot: bool) -> None:
        nonlocal best_swd
        state = trainer.state() if snapshot and distributed else None  # a collective: every rank
        # SWD fakes: each rank renders its share of G_ema's fixed-seed images (a collective too).
        fakes = trainer.generate_ema(t.swd_images, split=True) if distributed else None
        if rank != 0:
            return
        scores = trainer.evaluate_swd(swd_reals, fakes)
        mean = float(scores["mean"])
        result.swd.append((trainer.kimg, mean))
        logger.write({"kind": "swd", "kimg": trainer.kimg, "step": trainer.step, "swd": scores, "swd_mean": mean}, trainer.step)
        if not writes:
            return

        save_png(out_path / runs.samples_name(trainer.kimg), trainer.sample_sheet(), upscale=grid_upscale(cfg.network.resolution))
        plot_swd_curve(out_path / runs.SWD_PLOT, read_swd_records(out_path / runs.METRICS), title=f"{out_path.name}: SWD")
        if snapshot:
            extra = {"kimg": trainer.kimg, "step": trainer.step, "swd": mean}
            trainer.save_checkpoint(out_path, mean, state)
            ckpt.save_network(out_path / runs.G_EMA, trainer.G_ema, extra)
            if mean <= best_swd:
                best_swd = mean
                ckpt.save_network(out_path / runs.G_EMA_BEST, trainer.G_ema, extra)
            runs.prune_checkpoints(out_path, t.keep_snapshots)

    if eval_at_start and resume_from is None and trainer.nimg < total_nimg:
        evaluate(snapshot=False)

    bar = None
    if progress and rank == 0 and trainer.nimg < total_nimg:
        from tqdm import tqdm

        bar = tqdm(total=round(t.kimg, 3), initial=round(trainer.kimg, 3), unit="kimg", dynamic_ncols=True, leave=True,
                   bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}{postfix}]")
    window: dict[str, list[float]] = {}
    window_seconds, window_images = 0.0, 0  # training time and images since the last log record
    img_per_s = 0.0
    try:
        while trainer.nimg < total_nimg:
            before = trainer.nimg
            t0 = time.perf_counter()
            stats = trainer.train_step()
            dt = time.perf_counter() - t0
            train_seconds += dt
            train_images += trainer.batch
            window_seconds += dt
            window_images += trainer.batch
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            after = trainer.nimg
            done = after >= total_nimg
            if img_per_s == 0.0 or trainer.step % 5 == 0:
                img_per_s = train_images / max(train_seconds, 1e-9)
            if bar is not None:
                eta = (total_nimg - after) / max(img_per_s, 1e-9)
                bar.set_postfix_str(
                    f"kimg={trainer.kimg:.3f} img/s={img_per_s:.1f} G={stats['loss_G']:.3f} D={stats['loss_D']:.3f} "
                    f"p={stats.get('p', 0.0):.3f} ETA={_fmt_time(eta)}",
                    refresh=False,
                )
                bar.update(round(trainer.kimg - bar.n, 3))
            if trainer.step % t.log_steps == 0 or done:
                record = {"kind": "train", "kimg": trainer.kimg, "step": trainer.step}
                record.update({k: float(np.mean(v)) for k, v in window.items()})
                record["img_per_s"] = window_images / max(window_seconds, 1e-9)  # training steps only
                record["time"] = time.time()
                if rank == 0:
                    logger.write(record, trainer.step)
                window, window_seconds, window_images = {}, 0.0, 0
            snapshot = _crossed(before, after, t.snapshot_kimg * 1000) or done
            metrics = _crossed(before, after, t.metrics_kimg * 1000)
            if snapshot or metrics:
                evaluate(snapshot=snapshot and out_path is not None)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    result.step, result.kimg = trainer.step, trainer.kimg
    result.img_per_s = train_images / max(train_seconds, 1e-9) if train_images else 0.0
    result.seconds = time.perf_counter() - start
    return result


def _stored_init_generator(run_dir: Path, cfg: GeneratorConfig) -> Generator:
    """A fine-tuning run's start generator (``G_init.safetensors``), checked against ``init_hash``;
    falls back to ``training.init`` itself when the copy is missing."""
    path = run_dir / runs.G_INIT
    if path.is_file():
        G = ckpt.load_network(path, "Generator")
        where = str(path)
    elif cfg.training.init:
        G, where = load_init(cfg.training.init).G_ema, cfg.training.init
    else:
        raise ValueError(f"--resume: {run_dir} has init_feature_weight > 0 but neither {runs.G_INIT} nor training.init")
    if cfg.training.init_hash is not None and ckpt.weights_hash(G) != cfg.training.init_hash:
        raise ValueError(
            f"--resume: the start generator {where} has weights hash {ckpt.weights_hash(G)}, but the run was started "
            f"from {cfg.training.init_hash} (training.init_hash)"
        )
    return G


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def dry_run_summary(
    out: Path,
    resume_from: Path | None,
    config: str | None,
    data: str | None,
    *,
    init: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    kimg: float | None = None,
    batch: int | None = None,
    progressive: bool | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
    seed: int = 0,
    device: str = "auto",
) -> str:
    """What ``train`` would do, as text (``train-generator --dry-run``): the resolved config, the
    dataset, the run folder, the start and the network sizes. Nothing is written."""
    src = None
    if resume_from is not None:
        cfg = _resume_config(out, config, kimg, batch, progressive, 1, overrides)
        if data is None:
            data = ckpt.load_tensors(resume_from / "train_state.safetensors")[1].get("data")
            if not data:
                raise ValueError("--resume: the checkpoint does not record its dataset; pass --data")
    else:
        if data is None:
            raise ValueError("--data is required")
        cfg, src = fresh_config(config or (None if init else DEFAULT_PRESET), init=init, overrides=overrides, kimg=kimg,
                                batch=batch, progressive=progressive)  # fmt: skip
    res = cfg.network.resolution
    images = load_images(data, res, cache_dir=cache_dir, min_images=cfg.training.min_images, progress=progress)
    g_params = sum(p.numel() for p in Generator(cfg.network).parameters())
    d_params = sum(p.numel() for p in Discriminator(cfg.network, progressive=cfg.training.progressive).parameters())
    steps = int(np.ceil(cfg.training.kimg * 1000 / cfg.training.batch))
    mean = images.reshape(-1, 3).mean(0)
    lines = ["# resolved config", dump_yaml(cfg).rstrip("\n"), "# dataset", f"source: {Path(data).resolve()}",
             f"images: {len(images)} x {res}x{res} RGB uint8 (mean RGB {mean[0]:.1f}, {mean[1]:.1f}, {mean[2]:.1f})",
             "# run", f"out: {out} ({'resume from ' + str(resume_from) if resume_from else 'new run'})",
             f"device: {device}, seed: {seed}"]  # fmt: skip
    if src is not None:
        lines.append(f"init: {src.describe()}")
    elif cfg.training.init:
        lines.append(f"init: {cfg.training.init} (generator {cfg.training.init_hash}); resume continues the run's own weights")
    lines += [f"steps: {steps} of batch {cfg.training.batch} ({cfg.training.kimg:g} kimg)",
              f"parameters: G {g_params:,}, D {d_params:,}"]  # fmt: skip
    return "\n".join(lines) + "\n"
