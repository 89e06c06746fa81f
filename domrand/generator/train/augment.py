"""Adaptive discriminator augmentation (ADA): a differentiable augmentation pipe and its p controller.

``AugmentPipe`` applies, to each sample independently and each with probability ``p`` (times a
per-transform multiplier), the geometric transforms x-flip, 90-degree rotation, integer
translation, isotropic scaling and arbitrary rotation (composed into one affine matrix per sample
and applied once with ``grid_sample``, bilinear, reflection padding), the colour transforms
brightness, contrast, hue rotation and saturation (one 4x4 colour matrix per sample), and cutout
(a mask). Everything is differentiable with respect to the images, so generator gradients flow
through it. ``AdaController`` adapts ``p`` so that ``r_t = E[sign(D(real))]`` tracks a target.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from domrand.utils import assert_shape

__all__ = ["TRANSFORMS", "AdaController", "AugmentPipe"]

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate")
COLOUR = ("brightness", "contrast", "hue", "saturation")
TRANSFORMS = GEOMETRIC + COLOUR + ("cutout",)


# ------------------------------------------------------------------------------------------------
# Bilinear, reflection-padded grid sampling that is differentiable twice with respect to the image.
# R1 on augmented reals differentiates D's input gradient again, through the warp; PyTorch's CUDA
# grid sampler has no derivative for its backward. The sampler is linear in the image for a fixed
# grid, so its backward is the adjoint operator and the backward of that is the sampler again.

_BILINEAR, _REFLECTION = 0, 2  # aten's interpolation and padding mode codes


class _GridSampleAdjoint(torch.autograd.Function):
    """``grad_output [N, C, Ho, Wo] -> grad_input [N, C, H, W]`` of the sampler at a fixed grid."""

    @staticmethod
    def forward(ctx, grad_output: torch.Tensor, grid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        grad_input, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, like, grid, _BILINEAR, _REFLECTION, False, [True, False])
        return grad_input

    @staticmethod
    def backward(ctx, grad_grad_input: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return _GridSample.apply(grad_grad_input, grid), None, None


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.x_meta = (x.shape, x.dtype, x.device)
        return torch.ops.aten.grid_sampler_2d(x, grid, _BILINEAR, _REFLECTION, False)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grid,) = ctx.saved_tensors
        shape, dtype, device = ctx.x_meta
        like = torch.empty(shape, dtype=dtype, device=device)  # only its shape is read
        return _GridSampleAdjoint.apply(grad_output, grid, like), None


def grid_sample_reflect(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(x, grid, "bilinear", "reflection", align_corners=False)``, twice differentiable in ``x``.

    x ``[N, C, H, W]``; grid ``[N, Ho, Wo, 2]`` in [-1, 1] (constant: no gradient flows to it).
    """
    if grid.requires_grad:
        raise ValueError("grid_sample_reflect: the grid must not require grad (only the image is differentiated)")
    return _GridSample.apply(x, grid.to(x.dtype))


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """``[N]`` angles -> ``[N, 3, 3]`` homogeneous 2D rotations."""
    c, s = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype, device=angle.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
    return m


def _rotation90(k: torch.Tensor) -> torch.Tensor:
    """``[N]`` integer quarter turns -> exact ``[N, 3, 3]`` rotations (no trig rounding)."""
    cos_tab = torch.tensor([1.0, 0.0, -1.0, 0.0], device=k.device)
    sin_tab = torch.tensor([0.0, 1.0, 0.0, -1.0], device=k.device)
    k = k.long() % 4
    c, s = cos_tab[k], sin_tab[k]
    m = torch.zeros(k.shape[0], 3, 3, device=k.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
    return m


def _diag(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = x, y, 1
    return m


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, dtype=tx.dtype, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


class AugmentPipe(nn.Module):
    """Differentiable per-sample augmentation of ``[N, C, H, W]`` images in about ``[-1, 1]``.

    Transform ``t`` is applied to a sample with probability ``min(1, p * multiplier_t)``; a
    multiplier of 0 disables it (see :meth:`only`). With ``p == 0`` the input is returned as is.
    Hue and saturation need 3 channels and are skipped for other channel counts.
    """

    def __init__(
        self,
        p: float = 0.0,  # initial augmentation probability (buffer ``p``, saved in state_dict)
        *,
        xflip: float = 1.0,  # probability multiplier: horizontal mirror
        rotate90: float = 1.0,  # probability multiplier: rotation by a random multiple of 90 degrees
        xint: float = 1.0,  # probability multiplier: integer translation
        scale: float = 1.0,  # probability multiplier: isotropic scaling
        rotate: float = 1.0,  # probability multiplier: arbitrary rotation
        brightness: float = 1.0,  # probability multiplier: add a constant
        contrast: float = 1.0,  # probability multiplier: scale about mid-grey (0)
        hue: float = 1.0,  # probability multiplier: rotate colours about the luma axis
        saturation: float = 1.0,  # probability multiplier: scale chroma (distance from the luma axis)
        cutout: float = 1.0,  # probability multiplier: zero (mid-grey) a square
        xint_max: float = 0.125,  # translation range, fraction of image size, uniform in +-xint_max
        scale_std: float = 0.2,  # log2 std of the scale factor (lognormal, std 0.2*ln2 in ln)
        rotate_max: float = 1.0,  # rotation range, fraction of a half turn, uniform in +-pi*rotate_max
        brightness_std: float = 0.2,  # std of the added constant
        contrast_std: float = 0.5,  # log2 std of the contrast factor
        hue_max: float = 1.0,  # hue rotation range, fraction of a half turn
        saturation_std: float = 1.0,  # log2 std of the saturation factor
        cutout_size: float = 0.5,  # cutout side, fraction of image size
    ) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.multipliers = {
            "xflip": float(xflip),
            "rotate90": float(rotate90),
            "xint": float(xint),
            "scale": float(scale),
            "rotate": float(rotate),
            "brightness": float(brightness),
            "contrast": float(contrast),
            "hue": float(hue),
            "saturation": float(saturation),
            "cutout": float(cutout),
        }
        self.xint_max = float(xint_max)
        self.scale_std = float(scale_std)
        self.rotate_max = float(rotate_max)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)
        self.cutout_size = float(cutout_size)

    @classmethod
    def only(cls, names: Iterable[str] | str, p: float = 1.0, **kwargs) -> "AugmentPipe":
        """A pipe with only the named transforms enabled (multiplier 1), e.g. ``only("xflip")``."""
        names = (names,) if isinstance(names, str) else tuple(names)
        unknown = sorted(set(names) - set(TRANSFORMS))
        if unknown:
            raise ValueError(f"unknown transform(s) {unknown}; accepted: {', '.join(TRANSFORMS)}")
        flags = {t: (1.0 if t in names else 0.0) for t in TRANSFORMS}
        flags.update(kwargs)
        return cls(p, **flags)

    def set_p(self, value: float) -> None:
        """Set the augmentation probability in place (clamped to ``[0, 1]``)."""
        self.p.fill_(min(max(float(value), 0.0), 1.0))

    def extra_repr(self) -> str:
        on = [t for t, m in self.multipliers.items() if m > 0]
        return f"p={float(self.p):.4f}, transforms={on}"

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images [N, C, H, W]`` -> ``[N, C, H, W]`` (same dtype and device).

        Random draws come from ``generator`` (on its device) or, if ``None``, from torch's global
        CPU generator.
        """
        assert_shape("images", images, [None, None, None, None])
        p = float(self.p)
        n, channels, height, width = images.shape
        if p <= 0.0 or n == 0:
            return images
        device = images.device
        rng_device = generator.device if generator is not None else torch.device("cpu")

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=rng_device).to(device)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=rng_device).to(device)

        def gate(name: str) -> torch.Tensor | None:
            """``[N]`` float 0/1: which samples get transform ``name``; ``None`` if none can."""
            prob = min(p * self.multipliers[name], 1.0)
            if prob <= 0.0:
                return None
            return (uniform(n) < prob).float()

        x = images

        # Geometric: matrix G maps output pixel positions to input positions, in pixel units with
        # the origin at the image centre. Each forward transform T appends its inverse on the right.
        g = torch.eye(3, device=device).repeat(n, 1, 1)
        geometric = False
        m = gate("xflip")
        if m is not None:
            g = g @ _diag(1 - 2 * m, torch.ones_like(m))
            geometric = True
        m = gate("rotate90")
        if m is not None:
            k = torch.floor(uniform(n) * 4).clamp(max=3) * m
            g = g @ _rotation90(-k)
            geometric = True
        m = gate("xint")
        if m is not None:
            t = (uniform(n, 2) * 2 - 1) * self.xint_max
            tx = torch.round(t[:, 0] * width) * m
            ty = torch.round(t[:, 1] * height) * m
            g = g @ _translation(-tx, -ty)
            geometric = True
        m = gate("scale")
        if m is not None:
            s = torch.exp2(normal(n) * self.scale_std * m)
            g = g @ _diag(1 / s, 1 / s)
            geometric = True
        m = gate("rotate")
        if m is not None:
            angle = (uniform(n) * 2 - 1) * math.pi * self.rotate_max * m
            g = g @ _rotation(-angle)
            geometric = True
        if geometric:
            x = self._warp(x, g)

        # Colour: a 4x4 matrix acting on homogeneous [r, g, b, 1]; each transform multiplies on the left.
        c = torch.eye(4, device=device).repeat(n, 1, 1)
        colour = False
        luma = torch.full((3,), 1 / math.sqrt(3), device=device)
        m = gate("brightness")
        if m is not None:
            b = normal(n) * self.brightness_std * m
            t = torch.eye(4, device=device).repeat(n, 1, 1)
            t[:, :3, 3] = b[:, None]
            c = t @ c
            colour = True
        m = gate("contrast")
        if m is not None:
            f = torch.exp2(normal(n) * self.contrast_std * m)
            t = torch.eye(4, device=device).repeat(n, 1, 1)
            t[:, 0, 0], t[:, 1, 1], t[:, 2, 2] = f, f, f
            c = t @ c
            colour = True
        if channels == 3:
            outer = torch.outer(luma, luma)
            m = gate("hue")
            if m is not None:
                angle = (uniform(n) * 2 - 1) * math.pi * self.hue_max * m
                v = 1 / math.sqrt(3)
                cross = torch.tensor([[0.0, -v, v], [v, 0.0, -v], [-v, v, 0.0]], device=device)  # [luma]_x
                cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
                rot = cos * torch.eye(3, device=device) + sin * cross + (1 - cos) * outer  # Rodrigues
                t = torch.eye(4, device=device).repeat(n, 1, 1)
                t[:, :3, :3] = rot
                c = t @ c
                colour = True
            m = gate("saturation")
            if m is not None:
                f = torch.exp2(normal(n) * self.saturation_std * m)[:, None, None]
                t = torch.eye(4, device=device).repeat(n, 1, 1)
                t[:, :3, :3] = outer + f * (torch.eye(3, device=device) - outer)
                c = t @ c
                colour = True
        if colour:
            c = c.to(x.dtype)
            if channels == 3:
                x = torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]
            else:  # only brightness and contrast apply: the same gain and offset on every channel
                x = x * c[:, 0, 0, None, None, None] + c[:, 0, 3, None, None, None]

        m = gate("cutout")
        if m is not None:
            centre = uniform(n, 2)
            ys = (torch.arange(height, device=device) + 0.5) / height
            xs = (torch.arange(width, device=device) + 0.5) / width
            inside_x = (xs[None, :] - centre[:, 0:1]).abs() < self.cutout_size / 2  # [N, W]
            inside_y = (ys[None, :] - centre[:, 1:2]).abs() < self.cutout_size / 2  # [N, H]
            inside = inside_y[:, :, None] & inside_x[:, None, :] & (m[:, None, None] > 0)
            x = x * (~inside)[:, None].to(x.dtype)
        return x

    @staticmethod
    def _warp(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Resample ``x [N, C, H, W]`` at ``G @ (output pixel position)``; ``g [N, 3, 3]`` in pixels."""
        n, channels, height, width = x.shape
        to_norm = torch.diag(torch.tensor([2.0 / width, 2.0 / height, 1.0], device=x.device))
        from_norm = torch.diag(torch.tensor([width / 2.0, height / 2.0, 1.0], device=x.device))
        theta = (to_norm @ g @ from_norm)[:, :2, :].to(x.dtype)
        grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
        return grid_sample_reflect(x, grid.detach())


class AdaController:
    """Adapt ``AugmentPipe.p`` from the sign of D's outputs on real images.

    Call :meth:`accumulate` with D's real logits every D step and :meth:`update` once per step;
    every ``interval`` calls ``update`` computes ``r_t = E[sign(D(real))]`` and moves ``p`` by
    ``sign(r_t - target) * batch * interval / (speed_kimg * 1000)``, clamped to ``[0, 1]``.
    """

    def __init__(
        self,
        target: float = 0.6,  # r_t that p is steered towards
        interval: int = 4,  # adjust p every this many update() calls
        speed_kimg: float = 100.0,  # thousands of real images for p to move from 0 to 1
        batch: int = 32,  # real images per step, all ranks together
    ) -> None:
        if interval < 1 or batch < 1 or speed_kimg <= 0:
            raise ValueError(
                f"need interval >= 1, batch >= 1, speed_kimg > 0; got {interval}, {batch}, {speed_kimg}"
            )
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.batch = int(batch)
        self.r_t: float | None = None
        self._calls = 0
        self._stats: torch.Tensor | None = None  # [sum of signs, count], float64, on the logits' device

    @property
    def step_size(self) -> float:
        """How much one adjustment moves ``p``."""
        return self.batch * self.interval / (self.speed_kimg * 1000.0)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add ``sign(real_logits)`` (any shape, e.g. ``[B, 1]``) to the running sum and count."""
        logits = real_logits.detach()
        dtype = torch.float32 if logits.device.type == "mps" else torch.float64
        count = torch.tensor(logits.numel(), dtype=dtype, device=logits.device)
        stats = torch.stack([torch.sign(logits).sum().to(dtype), count])
        if self._stats is None:
            self._stats = stats
        else:
            self._stats = self._stats.to(stats.device) + stats

    def update(
        self,
        pipe: AugmentPipe,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> float | None:
        """Every ``interval``-th call adjust ``pipe.p`` and return it; otherwise return ``None``.

        ``reduce`` (e.g. an all-reduce sum over ranks) is applied to the ``[sum, count]`` tensor
        before ``r_t`` is computed; every rank must then call ``update`` at the same steps.
        With nothing accumulated since the last adjustment, ``p`` is left unchanged.
        """
        self._calls += 1
        if self._calls % self.interval != 0:
            return None
        stats = self._stats
        if stats is None:
            stats = torch.zeros(2, dtype=torch.float64, device=pipe.p.device)
        if reduce is not None:
            stats = reduce(stats)
        self._stats = None
        total, count = (float(v) for v in stats.tolist())
        if count <= 0:
            return None
        self.r_t = total / count
        direction = (self.r_t > self.target) - (self.r_t < self.target)
        new_p = float(pipe.p) + direction * self.step_size
        if new_p < 0.5 * self.step_size:  # float32 rounding must not leave p a hair above 0
            new_p = 0.0
        pipe.set_p(new_p)
        return float(pipe.p)

    def state_dict(self) -> dict:
        """Plain-Python state for exact resume (``p`` itself lives in the pipe's state_dict)."""
        return {
            "target": self.target,
            "interval": self.interval,
            "speed_kimg": self.speed_kimg,
            "batch": self.batch,
            "r_t": self.r_t,
            "calls": self._calls,
            "stats": None if self._stats is None else [float(v) for v in self._stats.tolist()],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.target = float(state["target"])
        self.interval = int(state["interval"])
        self.speed_kimg = float(state["speed_kimg"])
        self.batch = int(state["batch"])
        self.r_t = None if state["r_t"] is None else float(state["r_t"])
        self._calls = int(state["calls"])
        self._stats = None if state["stats"] is None else torch.tensor(state["stats"], dtype=torch.float64)
