"""``StyleRandomizer``: frames in, frames out, with per-environment style state.

Pipeline (see DESIGN.md, "One picture"), batched over environments:

1. resize every frame to the generator's resolution (``cv2.INTER_AREA`` down, ``INTER_LINEAR``
   up), to float ``[-1, 1]``, NCHW;
2. ``E(frame)`` -> ws ``[N, num_ws, w_dim]`` (+ an optional coarse feature map);
3. keep ``ws[:, :k]`` with ``k = G.synthesis.num_ws_up_to(keep_resolution)`` ("coarse": layout);
   the fine ws come from the environment's current style, ``G.mapping(z)`` truncated toward
   ``w_avg`` by ``psi`` and blended with the frame's own fine ws by ``mix``;
4. noise layers at resolutions <= ``keep_resolution`` always use G's constant noise (layout must
   never depend on resampled noise); finer layers use the environment's noise maps (``noise``);
5. ``G.synthesis`` -> image, NaN/inf replaced and clamped, to uint8, resized back.

Each environment id owns a style (fine ws + fine noise maps) that stays fixed between calls to
``resample``, so one episode looks like one consistent world. ``resample`` seeds a
``torch.Generator`` per environment from ``(seed, env_id)``, so a style never depends on which other
environments were resampled in the same call. Same seeds -> identical frames on the same device and
backend.

No Gymnasium import here: the wrappers in ``domrand.wrappers`` are thin layers over this class.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from domrand.bundle import Bundle, load_bundle, validate_options
from domrand.config import ConfigError, load_config
from domrand.frames import check_mode, fit_frames, unfit_frames
from domrand.generator.nn.inverter import check_pairing, compose_styles
from domrand.metrics import psnr
from domrand.randomizer_options import MODELS, NOISE_OPTIONS, OPTION_NAMES, RandomizerOptions
from domrand.utils import cpu_has_fast_bfloat16, derive_seed, parse_dtype, prepare_cpu_networks


def env_seeds(ids: Sequence[int], seed: int | Sequence[int] | None, rng: np.random.Generator) -> list[int]:
    """Per-environment seeds for a resample: an int seeds env ``i`` from ``(seed, i)``; a sequence
    gives one seed per env; ``None`` draws a base seed from ``rng``."""
    if seed is None:
        base = int(rng.integers(2**63))
        return [derive_seed(base, i, bits=64) for i in ids]
    if isinstance(seed, (int, np.integer)):
        return [derive_seed(int(seed), i, bits=64) for i in ids]
    return [derive_seed(int(s), bits=64) for s in seed]


def auto_dtype(device: torch.device) -> torch.dtype:
    """The compute dtype ``dtype="auto"`` picks: bfloat16 on a CPU with native bfloat16, float32
    elsewhere (on an H200 at 64x64 half precision measured 0.8-0.9x float32's frames/s)."""
    if device.type == "cpu" and cpu_has_fast_bfloat16():
        return torch.bfloat16
    return torch.float32


FRAME_FORMS = "uint8 [N, H, W, 3] or [H, W, 3] (or channel-first [N, 3, H, W] / [3, H, W]) with N, H, W >= 1"


def _bad_frames(problem: str) -> ValueError:
    """A ``ValueError`` naming what is wrong with the frames and the accepted form."""
    return ValueError(f"frames: {problem}; accepted: {FRAME_FORMS}")


def _frame_layout(shape: Sequence[int], channels_first: bool | None) -> tuple[bool, bool]:
    """``(batched, channels_first)`` for a frame array shape.

    Raises ``ValueError`` for a wrong number of dims, a channel count other than 3, an empty batch
    or an empty frame (height or width 0), naming the problem and the accepted form.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) not in (3, 4):
        raise _bad_frames(f"expected 3 or 4 dims, got {len(shape)} (shape {shape})")
    batched = len(shape) == 4
    last, first = shape[-1], shape[-3]
    if channels_first is None:
        if last != 3 and first != 3:
            raise _bad_frames(f"expected 3 colour channels on the last axis (or the first, channel-first), got shape {shape}")
        channels_first = last != 3 and first == 3  # ambiguous (3x?x3) -> channel-last
    c = first if channels_first else last
    if c != 3:
        where = "first" if channels_first else "last"
        raise _bad_frames(f"expected 3 colour channels on the {where} axis, got {c} in shape {shape}")
    if batched and shape[0] == 0:
        raise _bad_frames(f"empty batch (0 frames) in shape {shape}")
    h, w = shape[-2:] if channels_first else shape[-3:-1]
    if h == 0 or w == 0:
        raise _bad_frames(f"empty frame (height {h}, width {w}) in shape {shape}")
    return batched, channels_first


class OutOfDistributionWarning(UserWarning):
    """The frames a randomizer sees are far from what its bundle can represent (see ``ood_reference``)."""


def bundle_reference_psnr(info: dict[str, Any]) -> float | None:
    """The sim-frame reconstruction PSNR a bundle records (``eval-bundle``'s figure), else None."""
    value = ((info.get("about") or {}).get("evaluation") or {}).get("reconstruction", {})
    value = value.get("psnr") if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


class StyleRandomizer:
    """Re-render frames through a StyleGAN2 generator with per-environment fine styles.

    ``randomizer.randomize(frames, env_ids)``: uint8 ``[N, H, W, 3]`` / ``[H, W, 3]`` (or channel-first)
    -> the same shape and dtype. ``randomizer.resample(env_ids, seed)`` draws new styles.

    ``psi``, ``mix``, ``noise`` and ``refine_steps`` are plain attributes: change them between calls.
    """

    def __init__(
        self,
        G: torch.nn.Module,  # Generator (domrand.generator.nn.networks), on the device to run on
        E: torch.nn.Module,  # Inverter for that G: E(images) -> {"ws", "features"}
        *,
        keep_resolution: int | None = None,  # ws/noise up to this resolution come from the frame; None = E's (else 16)
        psi: float = 0.7,  # truncation of sampled fine styles toward w_avg (1 = none, 0 = the mean style)
        mix: float = 1.0,  # 0 = the frame's own fine styles, 1 = fully sampled ones, between = blend
        noise: str = "random",  # fine noise: random (per env, held) | step (fresh each call) | const | none
        refine_steps: int = 0,  # >0: refine E's ws by this many optimization steps (E.invert)
        seed: int | None = None,  # seeds styles drawn without an explicit seed (None = OS entropy)
        max_batch: int = 64,  # micro-batch size bounding memory of one forward
        dtype: str | torch.dtype = "auto",  # compute dtype: auto | float32 | float16 | bfloat16 (autocast)
        drift_steps: int = 0,  # >0: a non-immediate resample glides to the new style over this many calls
        check_pairing: bool = True,  # refuse an E whose generator_hash differs from weights_hash(G)
        fit: str = "pad",  # non-square frames: pad (keep the aspect ratio) | crop (centre) | stretch; see domrand.frames
        ood_reference: float | None = None,  # PSNR (dB) of G(E(x)) on the frames the pair was made for; None = no check
        ood_margin_db: float = 6.0,  # warn once when the first frames reconstruct this much worse than ood_reference
        model: str = "teacher",  # teacher (E + G) | student (a distilled StudentNet: fast; renders noise const, mix 1)
        student: torch.nn.Module | None = None,  # the StudentNet distilled from this G and E (Bundle.student)
    ):
        self.G = G.eval()
        self.E = E.eval()
        for p in list(G.parameters()) + list(E.parameters()):
            p.requires_grad_(False)
        try:
            self.device = next(G.parameters()).device
        except StopIteration:  # pragma: no cover - a Generator always has parameters
            self.device = torch.device("cpu")
        if self.device.type == "cpu":
            prepare_cpu_networks(G, E, student)  # NHWC weights (the frames are NHWC) and reused memory
        if check_pairing:
            self._check_pairing()
        syn = G.synthesis
        self.resolution = int(G.img_resolution)
        if keep_resolution is None:
            keep_resolution = int(getattr(E, "keep_resolution", None) or 16)
        keep_resolution = int(keep_resolution)
        if keep_resolution < 4 or keep_resolution & (keep_resolution - 1):
            raise ValueError(f"keep_resolution must be a power of two >= 4, got {keep_resolution}")
        e_keep = getattr(E, "keep_resolution", None)
        if e_keep is not None and keep_resolution < int(e_keep):
            raise ValueError(
                f"keep_resolution={keep_resolution} is below the inverter's keep_resolution {int(e_keep)}: its "
                f"feature map fixes everything up to {int(e_keep)}x{int(e_keep)}; use keep_resolution >= {int(e_keep)}"
            )
        self.keep_resolution = keep_resolution
        self.num_coarse = syn.num_ws_up_to(keep_resolution)
        self.num_fine = int(G.num_ws) - self.num_coarse
        self.fine_noise_layers = [(n, r) for n, r in syn.noise_layers if r > keep_resolution]
        if self.num_fine == 0:
            warnings.warn(
                f"StyleRandomizer: keep_resolution={keep_resolution} covers the whole {self.resolution}x"
                f"{self.resolution} generator, so frames are only reconstructed, not randomized",
                stacklevel=2,
            )
        with torch.no_grad():
            const = syn.sample_noise(1, self.device, noise_mode="const")
        self._coarse_noise = {n: const[n] for n, r in syn.noise_layers if r <= keep_resolution}
        self._const_fine_noise = {n: const[n] for n, _ in self.fine_noise_layers}
        self.psi = psi
        self.mix = mix
        self.noise = noise
        self.refine_steps = refine_steps
        self.max_batch = int(max_batch)
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.dtype = auto_dtype(self.device) if str(dtype).lower() == "auto" else parse_dtype(dtype)

        self.fit = check_mode(fit)
        self.ood_reference = None if ood_reference is None else float(ood_reference)
        self.ood_margin_db = float(ood_margin_db)
        self.ood_psnr: float | None = None  # measured on the first frames seen (when ood_reference is set)
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if model == "student" and student is None:
            raise ValueError("model='student' needs a distilled student: this bundle carries none (make one with "
                             "'domrand distill --bundle B --sim-data DIR --out RUN --bundle-out B_STUDENT')")  # fmt: skip
        self.model = model
        self.student = None if student is None else student.eval().requires_grad_(False)
        self.drift_steps = int(drift_steps)
        if self.drift_steps < 0:
            raise ValueError(f"drift_steps must be >= 0, got {drift_steps}")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._step_gen = torch.Generator().manual_seed(derive_seed(self._rng.integers(2**63), 7, bits=64))
        self._warned_nonfinite = False
        # Per-environment state, grown on demand; index = env id.
        w_dim = int(G.w_dim)
        self._cap = 0
        self._has_style = torch.zeros(0, dtype=torch.bool)
        self._w = torch.zeros(0, self.num_fine, w_dim, device=self.device)  # untruncated fine ws
        self._w_prev = torch.zeros_like(self._w)
        self._noise = {n: torch.zeros(0, 1, r, r, device=self.device) for n, r in self.fine_noise_layers}
        self._noise_prev = {n: v.clone() for n, v in self._noise.items()}
        self._age = torch.zeros(0, dtype=torch.long)  # randomize calls since the last resample
        self._drifting = torch.zeros(0, dtype=torch.bool)
        self._next_id = 0

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls, path: Any, device: str | torch.device = "auto", preset: str | os.PathLike | None = None, **options: Any
    ) -> "StyleRandomizer":
        """Load a bundle (folder or single ``.safetensors`` file; or take a loaded ``bundle.Bundle``,
        then ``device`` is its own) and build a randomizer.

        The options are, in increasing priority: the bundle's stored randomizer defaults, a
        ``preset`` (a name in ``configs/randomizer/`` such as ``student``, or a YAML path; see
        ``RandomizerOptions``), then ``options`` (see ``OPTION_NAMES``).
        """
        bundle = path if isinstance(path, Bundle) else load_bundle(path, device=device)
        unknown = sorted(set(options) - set(OPTION_NAMES) - {"check_pairing", "ood_reference", "ood_margin_db"})
        if unknown:
            raise TypeError(f"StyleRandomizer.from_bundle: unknown option(s) {unknown}; valid: {', '.join(OPTION_NAMES)}")
        merged = {k: v for k, v in bundle.options.items() if k in OPTION_NAMES}
        if preset is not None:
            chosen = load_config(preset, RandomizerOptions, kind="randomizer").as_options()
            merged.update(validate_options(chosen, f"randomizer preset {preset}", ConfigError))
        merged.update(options)
        merged.setdefault("ood_reference", bundle_reference_psnr(bundle.info))
        return cls(bundle.G, bundle.E, student=bundle.student, **merged)

    def _check_pairing(self) -> None:
        try:
            check_pairing(self.G, self.E, require_hash=True)
        except ValueError as exc:
            raise ValueError(f"{exc} (pass check_pairing=False if you are sure they belong together)") from None

    # ---- controls -------------------------------------------------------------------------------
    @property
    def psi(self) -> float:
        return self._psi

    @psi.setter
    def psi(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"psi must be a finite number, got {value}")
        self._psi = value

    @property
    def mix(self) -> float:
        return self._mix

    @mix.setter
    def mix(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {value}")
        self._mix = value

    @property
    def noise(self) -> str:
        return self._noise_mode

    @noise.setter
    def noise(self, value: str) -> None:
        if value not in NOISE_OPTIONS:
            raise ValueError(f"noise must be one of {', '.join(NOISE_OPTIONS)}, got {value!r}")
        self._noise_mode = value

    @property
    def refine_steps(self) -> int:
        return self._refine_steps

    @refine_steps.setter
    def refine_steps(self, value: int) -> None:
        if int(value) < 0:
            raise ValueError(f"refine_steps must be >= 0, got {value}")
        self._refine_steps = int(value)

    @property
    def num_envs(self) -> int:
        """Number of environment slots currently held (highest id used + 1)."""
        return self._cap

    def allocate_env_ids(self, n: int = 1) -> list[int]:
        """Reserve ``n`` fresh environment ids (for wrappers sharing one randomizer)."""
        ids = list(range(self._next_id, self._next_id + int(n)))
        self._next_id += int(n)
        return ids

    # ---- per-environment state -------------------------------------------------------------------
    def _grow(self, cap: int) -> None:
        if cap <= self._cap:
            return
        extra = cap - self._cap

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, torch.zeros((extra, *t.shape[1:]), dtype=t.dtype, device=t.device)])

        self._has_style = pad(self._has_style)
        self._w, self._w_prev = pad(self._w), pad(self._w_prev)
        self._noise = {n: pad(v) for n, v in self._noise.items()}
        self._noise_prev = {n: pad(v) for n, v in self._noise_prev.items()}
        self._age, self._drifting = pad(self._age), pad(self._drifting)
        self._cap = cap
        self._next_id = max(self._next_id, cap)

    def _ids(self, env_ids: Iterable[int] | None, n: int | None) -> list[int]:
        if env_ids is None:
            if n is None:
                return list(range(self._cap))
            return list(range(n))
        ids = [int(i) for i in (env_ids.tolist() if hasattr(env_ids, "tolist") else env_ids)]
        if any(i < 0 for i in ids):
            raise ValueError(f"env_ids must be >= 0, got {ids}")
        if n is not None and len(ids) != n:
            raise ValueError(f"env_ids: {len(ids)} ids for {n} frames")
        return ids

    def _ensure(self, ids: list[int]) -> None:
        if ids:
            self._grow(max(ids) + 1)
        missing = sorted({i for i in ids if not bool(self._has_style[i])})
        if missing:
            self.resample(missing, immediate=True)

    def _alpha(self, ids: list[int]) -> torch.Tensor:
        """Per-env interpolation weight old -> new style, ``[n]`` float (1 = fully the new style)."""
        idx = torch.as_tensor(ids, dtype=torch.long)
        if self.drift_steps <= 0:
            return torch.ones(len(ids))
        a = ((self._age[idx] + 1).float() / self.drift_steps).clamp(max=1.0)
        return torch.where(self._drifting[idx], a, torch.ones_like(a))

    def _effective(self, ids: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Current (possibly drifting) untruncated fine ws ``[n, num_fine, w_dim]`` and fine noise maps."""
        idx = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        a = self._alpha(ids).to(self.device)
        w = self._w[idx]
        noise = {n: v[idx] for n, v in self._noise.items()}
        if bool((a < 1).any()):
            w = self._w_prev[idx].lerp(w, a.reshape(-1, 1, 1))
            ang = (a * (math.pi / 2)).reshape(-1, 1, 1, 1)  # variance-preserving blend of unit noise
            noise = {n: torch.cos(ang) * self._noise_prev[n][idx] + torch.sin(ang) * v for n, v in noise.items()}
        return w, noise

    @torch.no_grad()
    def resample(
        self,
        env_ids: Iterable[int] | None = None,
        seed: int | Sequence[int] | None = None,
        immediate: bool | None = None,
    ) -> None:
        """Draw new fine styles and noise maps for ``env_ids`` (None = every known environment).

        seed: an int -> environment ``i`` is seeded from ``(seed, i)``; a sequence -> one seed per id
        (the style then depends on that seed only); None -> drawn from the randomizer's own RNG.
        immediate: switch at once (default when ``drift_steps == 0``); ``False`` with ``drift_steps > 0``
        glides from the current to the new style over ``drift_steps`` randomize calls.
        """
        ids = self._ids(env_ids, None)
        if not ids:
            return
        self._grow(max(ids) + 1)
        seeds = env_seeds(ids, seed, self._rng)
        if len(seeds) != len(ids):
            raise ValueError(f"resample: {len(seeds)} seeds for {len(ids)} env ids")
        G = self.G
        zs, noises = [], {n: [] for n, _ in self.fine_noise_layers}
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            zs.append(torch.randn(1, G.z_dim, generator=g))
            for n, r in self.fine_noise_layers:
                noises[n].append(torch.randn(1, 1, r, r, generator=g))
        # one mapping call per env: bit-identical styles whatever else is resampled in the same call
        w = torch.cat([G.mapping(z.to(self.device), psi=1.0) for z in zs])[:, self.num_coarse :].to(self._w.dtype)
        idx = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        cpu_idx = idx.cpu()
        drift = self.drift_steps > 0 and immediate is not True
        if drift:
            old = self._has_style[cpu_idx]
            w_now, n_now = self._effective(ids)
            keep = old.to(self.device)
            self._w_prev[idx] = torch.where(keep.reshape(-1, 1, 1), w_now, w)
            for n in self._noise_prev:
                new = torch.cat(noises[n]).to(self.device)
                self._noise_prev[n][idx] = torch.where(keep.reshape(-1, 1, 1, 1), n_now[n], new)
            self._drifting[cpu_idx] = old
        else:
            self._drifting[cpu_idx] = False
        self._w[idx] = w
        for n in self._noise:
            self._noise[n][idx] = torch.cat(noises[n]).to(self.device)
        self._age[cpu_idx] = 0
        self._has_style[cpu_idx] = True

    def styles(self, env_ids: Iterable[int] | None = None) -> torch.Tensor:
        """The fine ws currently applied (truncated by ``psi``, before ``mix``): ``[n, num_fine, w_dim]``."""
        ids = self._ids(env_ids, None)
        self._ensure(ids)
        w, _ = self._effective(ids)
        return self.G.mapping.w_avg.to(w.dtype).lerp(w, self.psi)

    # ---- frames ---------------------------------------------------------------------------------
    def _to_model(self, frames: np.ndarray | torch.Tensor, channels_first: bool) -> torch.Tensor:
        """uint8 batch (NHWC or NCHW) -> float ``[N, 3, R, R]`` in [-1, 1] on the device."""
        R = self.resolution
        h, w = (frames.shape[2:4] if channels_first else frames.shape[1:3])
        if h != w and self.fit != "stretch":  # keep the aspect ratio: pad or crop to a square (domrand.frames)
            arr = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else frames
            arr = fit_frames(np.ascontiguousarray(arr.transpose(0, 2, 3, 1) if channels_first else arr), R, self.fit)
            return torch.from_numpy(arr).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if isinstance(frames, torch.Tensor):
            x = frames.to(self.device)
            x = x if channels_first else x.permute(0, 3, 1, 2)
            x = x.float()
            h, w = x.shape[-2:]
            if (h, w) != (R, R):
                mode = "area" if h * w > R * R else "bilinear"
                kw = {} if mode == "area" else {"align_corners": False}
                x = F.interpolate(x, size=(R, R), mode=mode, **kw)
            return x / 127.5 - 1.0
        arr = frames.transpose(0, 2, 3, 1) if channels_first else frames
        h, w = arr.shape[1:3]
        if (h, w) != (R, R):
            interp = cv2.INTER_AREA if h * w > R * R else cv2.INTER_LINEAR
            arr = np.stack([cv2.resize(np.ascontiguousarray(f), (R, R), interpolation=interp) for f in arr])
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _from_model(
        self, y: torch.Tensor, like: np.ndarray | torch.Tensor, size: tuple[int, int], channels_first: bool
    ) -> np.ndarray | torch.Tensor:
        """float ``[N, 3, R, R]`` -> uint8 in ``like``'s layout and size."""
        if not bool(torch.isfinite(y).all()):
            if not self._warned_nonfinite:
                warnings.warn(
                    "StyleRandomizer: the networks produced NaN/inf; those pixels were replaced (further "
                    "occurrences are replaced silently)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned_nonfinite = True
            y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round()
        h, w = size
        R = self.resolution
        if h != w and self.fit != "stretch":  # undo the pad/crop of _to_model (crop: the margins replicate the centre's edge)
            out = unfit_frames(y.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy(), (h, w), self.fit)
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2) if channels_first else out)
            return torch.from_numpy(out).to(like.device) if isinstance(like, torch.Tensor) else out
        if isinstance(like, torch.Tensor):
            if (h, w) != (R, R):
                mode = "area" if h * w < R * R else "bilinear"
                kw = {} if mode == "area" else {"align_corners": False}
                y = F.interpolate(y, size=(h, w), mode=mode, **kw).round()
            y = y.clamp(0, 255).to(torch.uint8)
            y = y if channels_first else y.permute(0, 2, 3, 1)
            return y.contiguous().to(like.device)
        out = y.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if (h, w) != (R, R):
            interp = cv2.INTER_AREA if h * w < R * R else cv2.INTER_LINEAR
            out = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in out])
        if channels_first:
            out = out.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(out)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        if self.refine_steps > 0:
            out = self.E.invert(x, self.G, steps=self.refine_steps)
        else:
            use_amp = self.dtype != torch.float32
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=use_amp):
                out = self.E(x)
        ws = out["ws"].detach().float()
        feats = out.get("features")
        if feats:
            feats = {int(r): f.detach().float() for r, f in feats.items()}
            too_fine = [r for r in feats if r > self.keep_resolution]
            if too_fine:
                raise ValueError(
                    f"the inverter returned features at {too_fine}, above keep_resolution={self.keep_resolution}"
                )
        return ws, (feats or None)

    def _compose(self, ws: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Frame ws + env styles -> synthesis ws and noise dict."""
        n = ws.shape[0]
        noise: dict[str, torch.Tensor | None] = dict(self._coarse_noise)
        if self.num_fine == 0:
            return ws, noise
        w_fine, env_noise = self._effective(ids)
        sampled = self.G.mapping.w_avg.to(w_fine.dtype).lerp(w_fine, self.psi)
        ws = compose_styles(ws, sampled, self.num_coarse, self.mix)
        for name, r in self.fine_noise_layers:
            if self.noise == "random":
                noise[name] = env_noise[name]
            elif self.noise == "step":
                noise[name] = torch.randn(n, 1, r, r, generator=self._step_gen).to(self.device)
            elif self.noise == "const":
                noise[name] = self._const_fine_noise[name]
            else:
                noise[name] = None
        return ws, noise

    @torch.no_grad()
    def _check_distribution(self, x: torch.Tensor, ws: torch.Tensor, feats: dict[int, torch.Tensor] | None) -> None:
        """Once, on the first frames: reconstruct them (E's ws, const noise) and warn when their PSNR
        is ``ood_margin_db`` below the figure the bundle records for its own frames."""
        n = min(len(x), 8)
        noise = self.G.synthesis.sample_noise(1, self.device, noise_mode="const")
        rec = self.G.synthesis(ws[:n], noise=noise, features=None if feats is None else {r: f[:n] for r, f in feats.items()})
        self.ood_psnr = float(psnr(rec.float().clamp(-1, 1), x[:n].clamp(-1, 1)).mean())
        if self.ood_psnr < self.ood_reference - self.ood_margin_db:
            warnings.warn(
                f"StyleRandomizer: these frames are far from what the bundle was made for: they reconstruct at "
                f"{self.ood_psnr:.1f} dB PSNR through its inverter and generator, vs {self.ood_reference:.1f} dB on its "
                "own frames, so randomized frames will not keep their content. Train a bundle for this env: "
                "'domrand collect --env ID --n 4000 --out data/sim', then 'domrand train-pair --config small64 "
                "--sim-data data/sim/frames --target-data PHOTOS --out runs/pair' and 'domrand bundle --generator "
                "runs/pair --inverter runs/pair --out my_bundle' (README, On your own env)",
                OutOfDistributionWarning,
                stacklevel=4,
            )

    def _forward(self, x: torch.Tensor, ids: list[int]) -> torch.Tensor:
        ws, feats = self._encode(x)
        if self.ood_reference is not None and self.ood_psnr is None:
            self._check_distribution(x, ws, feats)
        ws, noise = self._compose(ws, ids)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            img = self.G.synthesis(ws, noise_mode="const", noise=noise, features=feats)
        return img.float()

    def _forward_student(self, x: torch.Tensor, ids: list[int]) -> torch.Tensor:
        """The student's frame: the sim frame and the env's style code (its fine ws, truncated, averaged)."""
        if self.ood_reference is not None and self.ood_psnr is None:
            self._check_distribution(x, *self._encode(x))
        w, _ = self._effective(ids)
        style = self.G.mapping.w_avg.to(w.dtype).lerp(w, self.psi).mean(1)
        use_amp = self.dtype != torch.float32
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=use_amp):
            img = self.student(x, style)
        return img.float()

    def _prepare(
        self, frames: np.ndarray | torch.Tensor, env_ids: Iterable[int] | None, channels_first: bool | None
    ) -> tuple[np.ndarray | torch.Tensor, bool, bool, list[int]]:
        if isinstance(frames, torch.Tensor):
            if frames.dtype != torch.uint8:
                raise _bad_frames(f"expected dtype uint8, got {str(frames.dtype).removeprefix('torch.')}")
        else:
            if not isinstance(frames, (np.ndarray, list, tuple)) and not hasattr(frames, "__array__"):
                raise _bad_frames(f"expected a numpy array or torch tensor, got {type(frames).__name__}")
            frames = np.asarray(frames)
            if frames.dtype != np.uint8:
                raise _bad_frames(f"expected dtype uint8, got {frames.dtype}")
        batched, cf = _frame_layout(tuple(frames.shape), channels_first)
        if not batched:
            frames = frames[None]
        ids = self._ids(env_ids, frames.shape[0])
        self._ensure(ids)
        return frames, batched, cf, ids

    def randomize(
        self,
        frames: np.ndarray | torch.Tensor,
        env_ids: Iterable[int] | None = None,
        channels_first: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Randomize uint8 frames; returns the same shape, dtype and container (numpy or torch).

        frames: ``[N, H, W, 3]``, ``[H, W, 3]``, ``[N, 3, H, W]`` or ``[3, H, W]``, any H and W.
        env_ids: the environment of each frame (None = ``0..N-1``); each environment's current style
        is used (drawn on first use). channels_first: None = infer (3xHx3 is taken as channel-last).
        """
        frames, batched, cf, ids = self._prepare(frames, env_ids, channels_first)
        size = tuple(frames.shape[2:4] if cf else frames.shape[1:3])
        outs = []
        for s in range(0, frames.shape[0], self.max_batch):
            x = self._to_model(frames[s : s + self.max_batch], cf)
            forward = self._forward_student if self.model == "student" else self._forward
            y = forward(x, ids[s : s + self.max_batch])
            outs.append(self._from_model(y, frames[s : s + self.max_batch], size, cf))
        out = torch.cat(outs) if isinstance(frames, torch.Tensor) else np.concatenate(outs)
        if self.drift_steps > 0:
            self._age[torch.as_tensor(sorted(set(ids)), dtype=torch.long)] += 1
        return out if batched else out[0]

    __call__ = randomize

    def latents(
        self, frames: np.ndarray | torch.Tensor, env_ids: Iterable[int] | None = None, channels_first: bool | None = None
    ) -> dict[str, Any]:
        """What ``randomize`` would feed the generator, without rendering (for inspection and tests).

        Returns ``{"frame_ws": E's ws [N, num_ws, w_dim], "ws": the composed ws, "noise": {layer: maps},
        "features": E's features or None}``. Does not advance drift.
        """
        frames, _, cf, ids = self._prepare(frames, env_ids, channels_first)
        x = self._to_model(frames, cf)
        frame_ws, feats = self._encode(x)
        ws, noise = self._compose(frame_ws, ids)
        return {"frame_ws": frame_ws, "ws": ws, "noise": noise, "features": feats}

    def __repr__(self) -> str:
        return (
            f"StyleRandomizer(resolution={self.resolution}, keep_resolution={self.keep_resolution}, "
            f"coarse_ws={self.num_coarse}, fine_ws={self.num_fine}, psi={self.psi}, mix={self.mix}, "
            f"noise={self.noise!r}, refine_steps={self.refine_steps}, drift_steps={self.drift_steps}, "
            f"envs={self._cap}, device={self.device}, dtype={self.dtype}, model={self.model!r})"
        )
