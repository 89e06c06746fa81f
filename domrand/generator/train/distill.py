"""``domrand distill``: train a small student (``StudentNet``) to stand in for a bundle's randomizer.

The teacher is the bundle's ``StyleRandomizer`` with constant fine noise and ``mix = 1``: a sim
frame and an environment style in, a randomized frame out. Teacher pairs (sim frame, style code,
teacher frame) are made once per run and cached in the run folder (``teacher_pairs.npz``, written
atomically, keyed by the bundle, the data and the pair settings); the student is fitted to them
with a composite loss:

* pixel: L1 between student and teacher frames;
* structure: L1 between their Sobel gradients (edges);
* texture: L1 between the log magnitudes of their 2-D Fourier transforms (high frequencies);
* small objects: with masks, an extra L1 on the pixels of the ``object`` class (the cube).

Held-out sim frames (the last ``holdout_frames``) with their own styles give the PSNR to the
teacher, measured on uint8 frames exactly as the randomizer returns them. Runs resume exactly
(student, Adam state, batch RNG, step) from the newest intact checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domrand import checkpoint
from domrand.bundle import load_bundle
from domrand.config import dump_yaml
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.generator.train import runs
from domrand.generator.train.dataset import load_images, load_masks, masks_beside, read_class_ids
from domrand.generator.train.loop import run_training, start_or_resume, stored_run
from domrand.metrics import psnr
from domrand.randomizer import StyleRandomizer
from domrand.utils import atomic_path, derive_seed

CHECKPOINT_FILES = ("student.safetensors", "train_state.safetensors")
PAIRS_FILE = "teacher_pairs.npz"
PAIRS_VERSION = 2  # 2: pair styles seeded by utils.derive_seed (1: 32-bit SeedSequence states)


LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class StudentShape:
    channels: tuple[int, ...] = (16, 32, 64)  # features per level: R, R/2, R/4
    res_blocks: int = 2  # residual blocks at the coarsest level
    noise_maps: int = 0  # the teacher's constant noise maps fed to each decoder level (2 = all of a StyleGAN2 block)


@dataclass(frozen=True)
class DistillTraining:
    batch: int = 32  # teacher pairs per step
    lr: float = 0.002  # Adam learning rate
    lr_schedule: str = "constant"  # constant | cosine (to 0 at ``kimg``)
    kimg: float = 120.0  # thousand teacher pairs shown to the student
    styles_per_frame: int = 2  # teacher pairs made per training sim frame (each with its own style)
    max_pairs: int = 8192  # cap on the teacher pairs made (frames x styles)
    holdout_frames: int = 64  # last sim frames held out for the metrics (2 styles each)
    pixel_weight: float = 1.0  # L1
    edge_weight: float = 1.0  # L1 of Sobel gradients
    fft_weight: float = 0.2  # L1 of log Fourier magnitudes
    object_weight: float = 10.0  # extra L1 on object-class pixels (needs masks)
    log_steps: int = 50
    metrics_kimg: float = 4.0
    snapshot_kimg: float = 8.0
    keep_snapshots: int = 2

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"training.lr_schedule: one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")


@dataclass(frozen=True)
class DistillConfig:
    name: str = "custom"
    student: StudentShape = field(default_factory=StudentShape)
    training: DistillTraining = field(default_factory=DistillTraining)


def learning_rate(tc: DistillTraining, nimg: int) -> float:
    """The learning rate after ``nimg`` pairs under ``tc.lr_schedule``."""
    if tc.lr_schedule == "constant":
        return tc.lr
    return tc.lr * 0.5 * (1.0 + math.cos(math.pi * min(nimg / max(tc.kimg * 1000.0, 1.0), 1.0)))


def teacher_noise_maps(G: Any, resolutions: list[int]) -> list[torch.Tensor]:
    """The generator's constant noise at each resolution: ``[k_r, r, r]`` per entry of ``resolutions``."""
    const = G.synthesis.sample_noise(1, next(G.parameters()).device, noise_mode="const")
    by_res: dict[int, list[torch.Tensor]] = {}
    for name, r in G.synthesis.noise_layers:
        by_res.setdefault(int(r), []).append(const[name][0, 0])
    missing = [r for r in resolutions if r not in by_res]
    if missing:
        raise ValueError(f"student noise: the teacher generator has no noise at resolution(s) {missing}; it has {sorted(by_res)}")
    return [torch.stack(by_res[r]) for r in resolutions]


# ---- losses -------------------------------------------------------------------------------------
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Per-channel horizontal and vertical Sobel gradients: ``[N, C, H, W]`` -> ``[N, 2C, H, W]``."""
    c = x.shape[1]
    k = torch.stack([_SOBEL, _SOBEL.t()]).unsqueeze(1).repeat(c, 1, 1, 1).to(x)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """log(1 + |FFT2|) per channel, ``[N, C, H, W // 2 + 1]`` (orthonormal scaling)."""
    return torch.log1p(torch.fft.rfft2(x.float(), norm="ortho").abs())


def distill_losses(pred: torch.Tensor, target: torch.Tensor, obj: torch.Tensor | None, tc: DistillTraining) -> dict[str, torch.Tensor]:
    """The composite loss of ``pred`` vs ``target`` (``[N, 3, R, R]`` in [-1, 1]); ``obj``: ``[N, 1, R, R]`` object mask or None."""
    out = {
        "pixel": (pred - target).abs().mean(),
        "edge": (sobel(pred) - sobel(target)).abs().mean(),
        "fft": (log_spectrum(pred) - log_spectrum(target)).abs().mean(),
    }
    total = tc.pixel_weight * out["pixel"] + tc.edge_weight * out["edge"] + tc.fft_weight * out["fft"]
    if obj is not None and tc.object_weight > 0:
        out["object"] = ((pred - target).abs() * obj).sum() / (3 * obj.sum()).clamp_min(1.0)
        total = total + tc.object_weight * out["object"]
    out["total"] = total
    return out


# ---- teacher pairs ------------------------------------------------------------------------------
def make_teacher_pairs(
    randomizer: Any, frames: np.ndarray, styles_per_frame: int, seed: int, max_pairs: int | None = None, progress: bool = True
) -> dict[str, np.ndarray]:
    """Teacher frames for (frame, style) pairs: ``frame`` int64 ``[P]`` (index into ``frames``),
    ``style`` float32 ``[P, w_dim]`` (the code the student gets), ``target`` uint8 ``[P, R, R, 3]``.

    Pair ``k`` uses frame ``k % N`` and the style seeded by ``(seed, k)``."""
    from tqdm import tqdm

    n = len(frames)
    total = n * styles_per_frame if max_pairs is None else min(n * styles_per_frame, max_pairs)
    idx = np.arange(total) % n
    styles, targets = [], []
    chunk = 64
    for s in tqdm(range(0, total, chunk), disable=not progress, desc="teacher pairs", unit_scale=chunk):
        ks = list(range(s, min(s + chunk, total)))
        ids = list(range(len(ks)))
        randomizer.resample(ids, seed=[derive_seed(seed, k) for k in ks], immediate=True)
        targets.append(randomizer.randomize(frames[idx[ks]], env_ids=ids))
        styles.append(student_styles(randomizer, ids).cpu().numpy())
    return {"frame": idx.astype(np.int64), "style": np.concatenate(styles).astype(np.float32), "target": np.concatenate(targets)}


def student_styles(randomizer: Any, ids: list[int]) -> torch.Tensor:
    """The student's style code of each env: its fine ws (truncated by psi) averaged, ``[n, w_dim]``."""
    return randomizer.styles(ids).mean(1).float()


def teacher(bundle: Any, device: torch.device):
    """The bundle's randomizer as the teacher: constant fine noise, mix 1, float32."""
    return StyleRandomizer.from_bundle(bundle, device=device, noise="const", mix=1.0, dtype="float32", model="teacher",
                                       ood_reference=None)  # fmt: skip


def to_float(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[N, R, R, 3]`` -> float ``[N, 3, R, R]`` in [-1, 1]."""
    t = torch.as_tensor(images).to(device)
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``[N, 3, R, R]`` in [-1, 1] -> uint8 ``[N, R, R, 3]`` (as the randomizer rounds)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ---- trainer ------------------------------------------------------------------------------------
class DistillTrainer:
    """Fits a ``StudentNet`` to teacher pairs (see the module docstring)."""

    def __init__(
        self,
        config: DistillConfig,
        bundle: Any,  # a loaded domrand.bundle.Bundle (the teacher)
        sim_frames: np.ndarray,  # uint8 [N, R, R, 3]
        object_masks: np.ndarray | None = None,  # bool [N, R, R]: pixels of the object class
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        progress: bool = True,
    ):
        self.cfg, self.tc = config, config.training
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.device = next(bundle.G.parameters()).device
        R, w_dim = int(bundle.G.img_resolution), int(bundle.G.w_dim)
        if sim_frames.dtype != np.uint8 or sim_frames.shape[1:] != (R, R, 3):
            raise ValueError(f"sim frames: expected uint8 [N, {R}, {R}, 3] (the teacher's resolution), got {sim_frames.dtype} {list(sim_frames.shape)}")
        hold = min(self.tc.holdout_frames, len(sim_frames) // 4)
        if len(sim_frames) - hold < 4:
            raise ValueError(f"sim frames: {len(sim_frames)} is too few (at least 8)")
        self.frames, self.hold_frames = sim_frames[: len(sim_frames) - hold], sim_frames[len(sim_frames) - hold :]
        self.masks = self.hold_masks = None
        if object_masks is not None:
            self.masks, self.hold_masks = object_masks[: len(self.frames)], object_masks[len(self.frames) :]
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        self.student = StudentNet(StudentConfig(resolution=R, w_dim=w_dim, channels=config.student.channels,
                                                res_blocks=config.student.res_blocks,
                                                noise_maps=config.student.noise_maps)).to(self.device)  # fmt: skip
        if config.student.noise_maps:
            self.student.load_teacher_noise(teacher_noise_maps(bundle.G, self.student.noise_resolutions()))
        self.opt = torch.optim.Adam(self.student.parameters(), lr=self.tc.lr, betas=(0.9, 0.99))
        self.rng = torch.Generator().manual_seed(self.seed)
        self.step = self.nimg = 0
        self.teacher_hash = bundle.info["generator_hash"]
        t = teacher(bundle, self.device)
        self.pairs = self._pairs(t, bundle, progress)
        self.hold_pairs = make_teacher_pairs(t, self.hold_frames, 2, seed=self.seed + 1_000_003, progress=False)

    @property
    def kimg(self) -> float:
        return self.nimg / 1000.0

    def _pairs(self, t: Any, bundle: Any, progress: bool) -> dict[str, np.ndarray]:
        """Teacher pairs of the training frames: from the run's cache when its key matches, else made and cached."""
        key = json.dumps({"pairs": PAIRS_VERSION, "teacher": self.teacher_hash, "frames": checkpoint.tensors_hash({"f": torch.from_numpy(self.frames)}),
                          "styles_per_frame": self.tc.styles_per_frame, "max_pairs": self.tc.max_pairs, "seed": self.seed,
                          "psi": t.psi})  # fmt: skip
        path = None if self.run_dir is None else self.run_dir / PAIRS_FILE
        if path is not None and path.is_file():
            try:
                with np.load(path) as data:
                    if str(data["key"]) == key:
                        return {k: data[k] for k in ("frame", "style", "target")}
            except (OSError, ValueError, KeyError):
                pass  # damaged: made again
        pairs = make_teacher_pairs(t, self.frames, self.tc.styles_per_frame, self.seed, self.tc.max_pairs, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, key=np.array(key), **pairs)
        return pairs

    # ---- one step ----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        tc = self.tc
        k = torch.randint(len(self.pairs["frame"]), (tc.batch,), generator=self.rng).numpy()
        fi = self.pairs["frame"][k]
        x = to_float(self.frames[fi], self.device)
        y = to_float(self.pairs["target"][k], self.device)
        style = torch.from_numpy(self.pairs["style"][k]).to(self.device)
        obj = None if self.masks is None else torch.from_numpy(self.masks[fi]).to(self.device).unsqueeze(1).float()
        losses = distill_losses(self.student(x, style), y, obj, tc)
        self.opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(tc, self.nimg)
        self.opt.step()
        self.step += 1
        self.nimg += tc.batch
        return {f"loss/{n}": float(v.detach()) for n, v in losses.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """PSNR (dB) of the student's uint8 frames against the teacher's on the held-out frames and styles."""
        p = self.hold_pairs
        x = to_float(self.hold_frames[p["frame"]], self.device)
        pred = self.student.eval()(x, torch.from_numpy(p["style"]).to(self.device))
        self.student.train()
        a, b = to_float(to_uint8(pred), self.device), to_float(p["target"], self.device)
        out = {"psnr/teacher": float(psnr(a, b).mean())}
        if self.hold_masks is not None:
            m = torch.from_numpy(self.hold_masks[p["frame"]]).to(self.device)
            if bool(m.any()):
                err = ((a - b) ** 2).mean(1)[m].mean()
                out["psnr/teacher_object"] = float(10 * torch.log10(4.0 / err.clamp_min(1e-10)))
        return out

    def sample_sheet(self, n: int = 8) -> np.ndarray:
        """uint8 grid: rows = sim frame, teacher, student for ``n`` held-out pairs."""
        p = self.hold_pairs
        n = min(n, len(p["frame"]))
        sim = self.hold_frames[p["frame"][:n]]
        with torch.no_grad():
            stu = to_uint8(self.student.eval()(to_float(sim, self.device), torch.from_numpy(p["style"][:n]).to(self.device)))
        self.student.train()
        rows = [np.concatenate(list(r), axis=1) for r in (sim, p["target"][:n], stu)]
        return np.concatenate(rows, axis=0)

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        assert self.run_dir is not None
        info = {"kimg": self.kimg, "step": self.step, "teacher_generator_hash": self.teacher_hash}
        t_opt, m_opt = checkpoint.optimizer_state_to_tensors(self.opt, "opt")
        tensors = {"rng_state": self.rng.get_state().clone(), **t_opt}
        meta = {"step": self.step, "nimg": self.nimg, "seed": self.seed, "opt": m_opt}

        def write(tmp: Path) -> None:
            checkpoint.save_network(tmp / "student.safetensors", self.student, info)
            checkpoint.save_tensors(tmp / "train_state.safetensors", tensors, meta)

        d = runs.write_checkpoint_dir(self.run_dir, self.kimg, write, required=CHECKPOINT_FILES)
        checkpoint.save_network(self.run_dir / "student.safetensors", self.student, info)
        runs.prune_to_newest(self.run_dir, self.tc.keep_snapshots, CHECKPOINT_FILES)
        return d

    def load_checkpoint(self, ckpt_dir: str | os.PathLike) -> None:
        ckpt_dir = Path(ckpt_dir)
        self.student.load_state_dict(checkpoint.load_network(ckpt_dir / "student.safetensors", "StudentNet").state_dict())
        tensors, meta = checkpoint.load_tensors(ckpt_dir / "train_state.safetensors")
        checkpoint.load_optimizer_state(self.opt, tensors, meta["opt"], "opt")
        self.rng.set_state(tensors["rng_state"])
        self.step, self.nimg = int(meta["step"]), int(meta["nimg"])

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, kimg: float | None = None, progress: bool = True, max_seconds: float | None = None) -> dict[str, Any]:
        """Train to ``kimg`` thousand pairs (default the config's) or ``max_seconds``; returns the last metrics."""
        total = int(round((self.tc.kimg if kimg is None else kimg) * 1000))

        def summary(r: dict[str, Any], rate: float, eta: float) -> str:
            return (f"kimg {self.kimg:.2f} | {rate:.0f} img/s | loss {r['loss/total']:.4f} (pixel {r['loss/pixel']:.4f}) | "
                    f"ETA {eta / 60:.0f} min")  # fmt: skip

        return run_training(self, "distill", total, self.student.config.resolution,
                            lambda logs: {"loss": f"{logs['loss/total']:.3f}"}, summary, progress, max_seconds)  # fmt: skip


def object_masks_of(masks: np.ndarray, class_ids: dict[str, int] | None) -> np.ndarray | None:
    """Bool ``[N, R, R]``: pixels of the ``object`` class (None when the masks do not name one)."""
    if not class_ids or "object" not in class_ids:
        return None
    return masks == int(class_ids["object"])


def distill(
    config: DistillConfig | None,
    bundle_path: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    sim_data: str | os.PathLike | None = None,
    sim_masks: str | os.PathLike | None = None,
    kimg: float | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    max_seconds: float | None = None,
    command: str | None = None,
) -> tuple[DistillTrainer, dict[str, Any]]:
    """Train (or resume) a distillation run in ``out``; returns the trainer and its last metrics."""
    out = Path(out)
    if resume:
        config, data = stored_run(out, DistillConfig, config)
        bundle_path, sim_data, sim_masks, seed = data["bundle"], data["sim"], data.get("sim_masks"), data.get("seed", seed)
    else:
        if config is None:
            raise ValueError("--config is required for a new run (e.g. --config default)")
        if bundle_path is None or sim_data is None:
            raise ValueError("a new run needs --bundle (the teacher) and --sim-data (simulator frames)")
        if runs.list_checkpoints(out, required=CHECKPOINT_FILES):
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    bundle = load_bundle(bundle_path, device=device)
    if sim_masks is not None and str(sim_masks) == "auto":
        sim_masks = masks_beside(sim_data)
    R = int(bundle.G.img_resolution)
    frames = load_images(sim_data, R, progress=progress)
    obj = None
    if sim_masks is not None:
        obj = object_masks_of(load_masks(sim_masks, sim_data, R, n_frames=len(frames), progress=progress), read_class_ids(sim_masks))
    out.mkdir(parents=True, exist_ok=True)
    trainer = DistillTrainer(config, bundle, frames, obj, run_dir=out, seed=seed, progress=progress)
    setup = {} if resume else {"bundle": str(Path(bundle_path).resolve()), "sim": str(Path(sim_data).resolve()),
                            "sim_masks": None if sim_masks is None else str(Path(sim_masks).resolve()), "seed": seed,
                            "teacher_generator_hash": bundle.info["generator_hash"]}  # fmt: skip
    start_or_resume(trainer, out, "distill", CHECKPOINT_FILES, resume, dump_yaml(config), setup, command or " ".join(sys.argv))
    return trainer, trainer.run(kimg, progress=progress, max_seconds=max_seconds)
