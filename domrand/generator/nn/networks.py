"""StyleGAN2 networks: mapping, synthesis (skip architecture), generator, residual discriminator.

Layer and resolution bookkeeping lives here too: ``SynthesisNetwork.ws_resolutions[i]`` is the
highest resolution that ws index ``i`` drives and ``ws_layers[i]`` the layers it drives, so
callers can say "keep everything up to 16x16" with ``num_ws_up_to(16)``.

Shapes: z ``[N, z_dim]``; w ``[N, w_dim]``; ws (W+) ``[N, num_ws, w_dim]``; images
``[N, 3, R, R]`` in about [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from domrand import checkpoint
from domrand.config import from_dict, to_dict
from domrand.generator.nn import ops
from domrand.generator.nn.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    block_resolutions,
    channels_at,
    normalize_2nd_moment,
)
from domrand.utils import assert_shape

NOISE_MODES = ("random", "const", "none")
Cutoff = int | Sequence[int] | None


@dataclass(frozen=True)
class NetworkConfig:
    resolution: int = 64  # output resolution, a power of two from 16 to 512
    z_dim: int = 256  # input latent size
    w_dim: int = 256  # intermediate latent (style) size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995  # decay of the tracked w average while training
    channel_base: int = 8192  # channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 512  # upper bound on channels
    conv_clamp: float | None = 256.0  # clamp conv outputs to +-this (None = off)
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)  # 1-D FIR kernel for anti-aliased resampling
    num_fp16_res: int = 0  # GPU only: run the N highest resolutions in reduced precision
    mbstd_group: int = 4  # discriminator minibatch-stddev group size
    mbstd_channels: int = 1  # discriminator minibatch-stddev feature channels


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


def _layer_mask(num_ws: int, cutoff: Cutoff, device: torch.device) -> torch.Tensor:
    """Bool ``[num_ws]``: which ws indices a truncation with ``cutoff`` touches."""
    mask = torch.zeros(num_ws, dtype=torch.bool, device=device)
    if cutoff is None:
        mask[:] = True
    elif isinstance(cutoff, (int, np.integer)):
        mask[: int(cutoff)] = True
    else:
        idx = [int(i) for i in cutoff]
        bad = [i for i in idx if not 0 <= i < num_ws]
        if bad:
            raise ValueError(f"cutoff: ws indices {bad} out of range [0, {num_ws})")
        mask[idx] = True
    return mask


# --------------------------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z ``[N, z_dim]`` -> ws ``[N, num_ws, w_dim]``, with a tracked ``w_avg`` for truncation."""

    def __init__(
        self,
        z_dim: int,  # input latent size
        w_dim: int,  # output latent size
        num_ws: int,  # how many copies of w to broadcast (W+ layers)
        num_layers: int = 8,  # fully connected layers
        lr_multiplier: float = 0.01,  # learning-rate multiplier of every layer
        w_avg_beta: float = 0.995,  # decay of the tracked w average
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        widths = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnectedLayer(a, b, activation="lrelu", lr_multiplier=lr_multiplier)
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, psi: float = 1.0, cutoff: Cutoff = None, update_emas: bool = False
    ) -> torch.Tensor:
        """Map z to ws; ``update_emas`` moves ``w_avg`` toward this batch's mean (training)."""
        assert_shape("z", z, [None, self.z_dim])
        x = normalize_2nd_moment(z.to(torch.float32))
        for layer in self.layers:
            x = layer(x)
        if update_emas:
            with torch.no_grad():
                # float32 even when x is bf16 under autocast (lerp needs matching dtypes)
                self.w_avg.copy_(x.detach().to(self.w_avg.dtype).mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, psi, cutoff)

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: Cutoff = None) -> torch.Tensor:
        """``w_avg + psi * (ws - w_avg)`` on the ws indices named by ``cutoff``.

        ``cutoff``: ``None`` = all layers; an int k = the first k layers; a sequence = those indices.
        """
        if psi == 1:
            return ws
        mask = _layer_mask(self.num_ws, cutoff, ws.device).reshape(1, -1, 1)
        truncated = self.w_avg.to(ws.dtype).lerp(ws, psi)
        return torch.where(mask, truncated, ws)


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, crossover: int | torch.Tensor) -> torch.Tensor:
    """Style mixing: ws_a before ``crossover``, ws_b from ``crossover`` on.

    ws_a, ws_b: ``[N, num_ws, w_dim]``; crossover: an int or a per-sample ``[N]`` tensor.
    """
    assert_shape("ws_b", ws_b, list(ws_a.shape))
    n, num_ws, _ = ws_a.shape
    idx = torch.arange(num_ws, device=ws_a.device).reshape(1, -1)
    cross = torch.as_tensor(crossover, device=ws_a.device).reshape(-1, 1)
    use_b = (idx >= cross).unsqueeze(-1)
    return torch.where(use_b, ws_b, ws_a)


def random_crossover(
    n: int, num_ws: int, prob: float, generator: torch.Generator | None = None, device: Any = "cpu"
) -> torch.Tensor:
    """Per-sample crossover points for mixing regularization: ``[N]`` ints.

    With probability ``prob`` a sample mixes at a uniform point in ``[1, num_ws)``; otherwise its
    crossover is ``num_ws`` (no mixing).
    """
    cross = torch.randint(1, num_ws, (n,), generator=generator)
    mixes = torch.rand(n, generator=generator) < prob
    return torch.where(mixes, cross, torch.full_like(cross, num_ws)).to(device)


# --------------------------------------------------------------------------------------------
# Synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu: ``[N, in, r/up, r/up] -> [N, out, r, r]``."""

    def __init__(
        self,
        in_channels: int,  # input feature channels
        out_channels: int,  # output feature channels
        w_dim: int,  # style vector size
        resolution: int,  # output resolution
        up: int = 1,  # 2 = FIR upsample inside the conv
        kernel_size: int = 3,  # conv kernel width
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel
        conv_clamp: float | None = None,  # clamp outputs to +-this
    ):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))

    def draw_noise(self, n: int, noise_mode: str, device: torch.device, generator: torch.Generator | None = None):
        """Unit-variance noise ``[N, 1, r, r]`` for ``noise_mode`` (None for ``"none"``)."""
        r = self.resolution
        if noise_mode == "random":
            if generator is not None and generator.device.type != device.type:  # e.g. a CPU generator for CUDA
                return torch.randn(n, 1, r, r, device=generator.device, generator=generator).to(device)
            return torch.randn(n, 1, r, r, device=device, generator=generator)
        if noise_mode == "const":
            return self.noise_const.reshape(1, 1, r, r).expand(n, 1, r, r)
        return None

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise: torch.Tensor | None,
        fused: bool | None = None,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """x ``[N, in, h, w]``, w ``[N, w_dim]``, noise ``[N|1, 1, r, r]`` unit variance or None."""
        styles = self.affine(w)
        if noise is not None:
            assert_shape("noise", noise, [None, 1, self.resolution, self.resolution])
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        if not fused and ops.folded_forms(x) and gain > 0:  # the same function in fewer passes
            return ops.modulated_conv2d_bias_act(
                x, self.weight, styles, noise, self.noise_strength, self.bias, up=self.up,
                resample_filter=self.resample_filter, gain=math.sqrt(2) * gain, clamp=clamp,
            )
        x = ops.modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, fused=fused)
        return ops.noise_bias_act(x, noise, self.noise_strength, self.bias, act="lrelu", gain=math.sqrt(2) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation: features ``[N, C, r, r]`` -> image ``[N, 3, r, r]``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | 2x-up conv), conv, toRGB."""

    def __init__(
        self,
        in_channels: int,  # 0 for the 4x4 block (learned constant input)
        out_channels: int,  # feature channels at this resolution
        w_dim: int,  # style size
        resolution: int,  # this block's resolution
        img_channels: int = 3,  # output image channels
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel
        conv_clamp: float | None = None,  # clamp conv outputs
        use_fp16: bool = False,  # reduced precision on CUDA
    ):
        super().__init__()
        self.resolution, self.in_channels, self.use_fp16 = resolution, in_channels, use_fp16
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, resample_filter=resample_filter, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def conv_layers(self) -> list[tuple[str, SynthesisLayer]]:
        """``[(name, layer)]`` of this block's noise-carrying conv layers, in order."""
        names = ["conv1"] if self.conv0 is None else ["conv0", "conv1"]
        return [(f"b{self.resolution}.{n}", getattr(self, n)) for n in names]

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noises: list[torch.Tensor | None],
        fused: bool | None = None,
        feature_override: torch.Tensor | None = None,
        alpha: float = 1.0,
        force_fp32: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws ``[N, num_conv + 1, w_dim]``; returns features ``[N, C, r, r]`` and image ``[N, 3, r, r]``."""
        dtype = torch.float16 if self.use_fp16 and ws.device.type == "cuda" and not force_fp32 else torch.float32
        n = ws.shape[0]
        if self.conv0 is None:
            x = self.const.to(dtype).unsqueeze(0).expand(n, -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noises[0], fused=fused)
        else:
            x = x.to(dtype)
            x = self.conv0(x, ws[:, 0], noises[0], fused=fused)
            x = self.conv1(x, ws[:, 1], noises[1], fused=fused)
        if feature_override is not None:
            assert_shape(f"features[{self.resolution}]", feature_override, list(x.shape))
            x = feature_override.to(dtype)
        y = self.torgb(x, ws[:, -1], fused=fused).to(torch.float32)
        if img is None:
            img = y
        else:
            img = ops.upsample2d(img, self.resample_filter) + alpha * y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` (or W ``[N, w_dim]``) -> images ``[N, 3, R, R]``."""

    def __init__(
        self,
        w_dim: int,  # style size
        img_resolution: int,  # output resolution (power of two, 16..512)
        img_channels: int = 3,  # output channels
        channel_base: int = 8192,  # channels(r) = min(channel_base // r, channel_max)
        channel_max: int = 512,  # channel cap
        num_fp16_res: int = 0,  # highest resolutions run in fp16 on CUDA
        conv_clamp: float | None = 256.0,  # clamp conv outputs
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = block_resolutions(img_resolution)
        fp16_resolution = max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)
        self.channels = {r: channels_at(r, channel_base, channel_max) for r in self.block_resolutions}
        self.ws_layers: list[list[str]] = []
        self.ws_resolutions: list[int] = []
        self.noise_layers: list[tuple[str, int]] = []
        self.blocks = nn.ModuleDict()
        for r in self.block_resolutions:
            block = SynthesisBlock(
                0 if r == 4 else self.channels[r // 2],
                self.channels[r],
                w_dim,
                r,
                img_channels=img_channels,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                use_fp16=r >= fp16_resolution,
            )
            self.blocks[f"b{r}"] = block
            for name, _ in block.conv_layers():
                self.noise_layers.append((name, r))
            # ws bookkeeping: each conv consumes a new index; toRGB shares the next block's first one.
            if self.ws_layers:
                self.ws_layers[-1].append(f"b{r}.conv0")
                self.ws_resolutions[-1] = r
            self.ws_layers.append([f"b{r}.conv1"])
            self.ws_resolutions.append(r)
            self.ws_layers.append([f"b{r}.torgb"])
            self.ws_resolutions.append(r)
        self.num_ws = len(self.ws_layers)

    # ---- bookkeeping -------------------------------------------------------------------------
    def num_ws_up_to(self, resolution: int) -> int:
        """How many leading ws indices drive only layers at or below ``resolution``."""
        return sum(1 for r in self.ws_resolutions if r <= resolution)

    def block_ws_range(self, resolution: int) -> tuple[int, int]:
        """``(start, stop)`` of the ws indices block ``resolution`` reads (toRGB shares ``stop - 1``)."""
        start = 0
        for r in self.block_resolutions:
            block = self.blocks[f"b{r}"]
            if r == resolution:
                return start, start + block.num_conv + 1
            start += block.num_conv
        raise ValueError(f"no synthesis block at resolution {resolution}; blocks: {self.block_resolutions}")

    def sample_noise(
        self, n: int, device: Any = "cpu", generator: torch.Generator | None = None, noise_mode: str = "random"
    ) -> dict[str, torch.Tensor | None]:
        """Per-layer unit noise ``{name: [N, 1, r, r]}`` in the order of ``noise_layers``."""
        _check_noise_mode(noise_mode)
        out: dict[str, torch.Tensor | None] = {}
        for r in self.block_resolutions:
            for name, layer in self.blocks[f"b{r}"].conv_layers():
                out[name] = layer.draw_noise(n, noise_mode, torch.device(device), generator)
        return out

    # ---- forward -----------------------------------------------------------------------------
    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise: dict[str, torch.Tensor | None] | None = None,
        fused: bool | None = None,
        features: dict[int, torch.Tensor] | None = None,
        active_resolution: int | None = None,
        alpha: float = 1.0,
        return_extras: bool = False,
        force_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """Render images from ws.

        ws: ``[N, num_ws, w_dim]`` (W+) or ``[N, w_dim]`` (W, broadcast to every layer).
        noise_mode: ``random`` | ``const`` | ``none`` for layers not given in ``noise``.
        noise: ``{layer_name: [N|1, 1, r, r]}`` explicit unit noise (see ``noise_layers``).
        features: ``{resolution: [N, C_r, r, r]}`` replaces that block's features before its toRGB.
        active_resolution, alpha: progressive growing; stop at that block, its toRGB scaled by alpha.
        return_extras: also return ``{"features": {r: x}, "noise": {name: unit noise used}}``.
        """
        _check_noise_mode(noise_mode)
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.num_ws, 1)
        assert_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        noise = noise or {}
        unknown = set(noise) - {name for name, _ in self.noise_layers}
        if unknown:
            raise ValueError(f"noise: unknown layer(s) {sorted(unknown)}; valid: {[n for n, _ in self.noise_layers]}")
        features = features or {}
        last = active_resolution or self.img_resolution
        if last not in self.block_resolutions:
            raise ValueError(f"active_resolution must be one of {self.block_resolutions}, got {last}")
        n = ws.shape[0]
        x = img = None
        extras: dict[str, Any] = {"features": {}, "noise": {}}
        w_idx = 0
        for r in self.block_resolutions:
            if r > last:
                break
            block = self.blocks[f"b{r}"]
            block_noise = []
            for name, layer in block.conv_layers():
                z = noise[name] if name in noise else layer.draw_noise(n, noise_mode, ws.device)
                block_noise.append(z)
                extras["noise"][name] = z
            block_ws = ws[:, w_idx : w_idx + block.num_conv + 1]
            x, img = block(
                x,
                img,
                block_ws,
                block_noise,
                fused=fused,
                feature_override=features.get(r),
                alpha=alpha if r == last else 1.0,
                force_fp32=force_fp32,
            )
            extras["features"][r] = x
            w_idx += block.num_conv
        return (img, extras) if return_extras else img


# --------------------------------------------------------------------------------------------
# Generator


@checkpoint.register_network
class Generator(nn.Module):
    """Mapping + synthesis. ``G(z)`` -> images ``[N, 3, R, R]``; both parts callable on their own."""

    def __init__(self, config: NetworkConfig, img_channels: int = 3):
        super().__init__()
        self.config = config
        self.img_channels = img_channels
        self.z_dim, self.w_dim, self.img_resolution = config.z_dim, config.w_dim, config.resolution
        self.synthesis = SynthesisNetwork(
            w_dim=config.w_dim,
            img_resolution=config.resolution,
            img_channels=img_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp,
            resample_filter=config.fir_kernel,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim,
            w_dim=config.w_dim,
            num_ws=self.num_ws,
            num_layers=config.mapping_layers,
            lr_multiplier=config.mapping_lr_mult,
            w_avg_beta=config.w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        psi: float = 1.0,
        cutoff: Cutoff = None,
        noise_mode: str = "random",
        update_emas: bool = False,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """z ``[N, z_dim]`` -> images ``[N, 3, R, R]`` (truncation ``psi`` on ``cutoff`` layers)."""
        ws = self.mapping(z, psi=psi, cutoff=cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)

    # ---- checkpoint protocol ------------------------------------------------------------------
    def export_config(self) -> dict[str, Any]:
        return {"network": to_dict(self.config), "img_channels": self.img_channels}

    @classmethod
    def from_exported_config(cls, data: dict[str, Any]) -> "Generator":
        return cls(from_dict(NetworkConfig, data["network"], "generator config"), img_channels=data.get("img_channels", 3))


# --------------------------------------------------------------------------------------------
# Discriminator


class MinibatchStdLayer(nn.Module):
    """Append the std of features across groups of samples: ``[N, C, H, W] -> [N, C+F, H, W]``."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w).to(torch.float32)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [N/g, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block ``[N, C_r, r, r] -> [N, C_{r/2}, r/2, r/2]`` with FIR downsampling."""

    def __init__(
        self,
        channels: int,  # input (and hidden) channels at this resolution
        out_channels: int,  # output channels at half resolution
        resolution: int,  # input resolution
        img_channels: int = 3,  # image channels for fromRGB
        has_from_rgb: bool = False,  # this block can start from an image
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel
        conv_clamp: float | None = None,  # clamp conv outputs
        use_fp16: bool = False,  # reduced precision on CUDA
    ):
        super().__init__()
        self.resolution, self.use_fp16 = resolution, use_fp16
        kw = dict(resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.fromrgb = Conv2dLayer(img_channels, channels, 1, activation="lrelu", **kw) if has_from_rgb else None
        self.conv0 = Conv2dLayer(channels, channels, 3, activation="lrelu", **kw)
        self.conv1 = Conv2dLayer(channels, out_channels, 3, activation="lrelu", down=2, **kw)
        self.skip = Conv2dLayer(channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def from_rgb(self, img: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is None:
            raise ValueError(f"discriminator block {self.resolution} has no fromRGB layer (progressive=False)")
        return self.fromrgb(img)

    def forward(self, x: torch.Tensor, force_fp32: bool = False) -> torch.Tensor:
        dtype = torch.float16 if self.use_fp16 and x.device.type == "cuda" and not force_fp32 else torch.float32
        x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


@checkpoint.register_network
class Discriminator(nn.Module):
    """Residual discriminator: images ``[N, 3, R, R]`` -> logits ``[N, 1]``.

    ``return_features=True`` also returns each block's output (a perceptual-loss feature pyramid).
    With ``progressive=True`` every block has a fromRGB layer so training can start at a lower
    ``active_resolution`` and fade in higher ones with ``alpha``.
    """

    def __init__(self, config: NetworkConfig, img_channels: int = 3, progressive: bool = False):
        super().__init__()
        self.config, self.img_channels, self.progressive = config, img_channels, progressive
        self.img_resolution = config.resolution
        res = block_resolutions(config.resolution, lowest=8)[::-1]  # R, ..., 8
        self.block_resolutions = res
        ch = {r: channels_at(r, config.channel_base, config.channel_max) for r in res + [4]}
        fp16_resolution = max(2 ** (int(np.log2(config.resolution)) + 1 - config.num_fp16_res), 8)
        self.blocks = nn.ModuleDict()
        for r in res:
            self.blocks[f"b{r}"] = DiscriminatorBlock(
                ch[r],
                ch[r // 2],
                r,
                img_channels=img_channels,
                has_from_rgb=progressive or r == config.resolution,
                resample_filter=config.fir_kernel,
                conv_clamp=config.conv_clamp,
                use_fp16=r >= fp16_resolution,
            )
        c4 = ch[4]
        self.mbstd = MinibatchStdLayer(config.mbstd_group, config.mbstd_channels)
        self.conv = Conv2dLayer(c4 + config.mbstd_channels, c4, 3, activation="lrelu", conv_clamp=config.conv_clamp)
        self.fc = FullyConnectedLayer(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnectedLayer(c4, 1)
        self.register_buffer("resample_filter", ops.setup_filter(config.fir_kernel))

    def forward(
        self,
        img: torch.Tensor,
        active_resolution: int | None = None,
        alpha: float = 1.0,
        return_features: bool = False,
        force_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """img ``[N, 3, r, r]`` with r = ``active_resolution`` (default the full resolution)."""
        top = active_resolution or self.img_resolution
        assert_shape("img", img, [None, self.img_channels, top, top])
        if top not in self.block_resolutions:
            raise ValueError(f"active_resolution must be one of {self.block_resolutions}, got {top}")
        img = img.to(torch.float32)
        first = self.blocks[f"b{top}"]
        x = first(first.from_rgb(img), force_fp32=force_fp32)
        if alpha < 1 and top // 2 in self.block_resolutions:
            lower = self.blocks[f"b{top // 2}"]
            x_low = lower.from_rgb(ops.downsample2d(img, self.resample_filter))
            x = x_low.to(x.dtype).lerp(x, alpha)
        features = [x]
        for r in self.block_resolutions:
            if r >= top:
                continue
            x = self.blocks[f"b{r}"](x, force_fp32=force_fp32)
            features.append(x)
        x = x.to(torch.float32)
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1)))
        return (x, features) if return_features else x

    def export_config(self) -> dict[str, Any]:
        return {"network": to_dict(self.config), "img_channels": self.img_channels, "progressive": self.progressive}

    @classmethod
    def from_exported_config(cls, data: dict[str, Any]) -> "Discriminator":
        return cls(
            from_dict(NetworkConfig, data["network"], "discriminator config"),
            img_channels=data.get("img_channels", 3),
            progressive=data.get("progressive", False),
        )
