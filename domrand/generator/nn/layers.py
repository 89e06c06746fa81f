"""Equalized-learning-rate building blocks shared by the generator, discriminator and inverter.

Weights are stored with unit variance and scaled at run time by ``lr_multiplier / sqrt(fan_in)``
(Karras et al.), so Adam's per-parameter step size is the same for every layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import domrand.cuda  # noqa: F401  (plugs the CUDA kernels into ops: ops.register_accelerator)
from domrand.generator.nn import ops


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer ``[N, in] -> [N, out]`` with fused bias + activation."""

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        bias: bool = True,  # learn a bias
        activation: str = "linear",  # any ops.bias_act activation
        lr_multiplier: float = 1.0,  # learning-rate multiplier (mapping network: 0.01)
        bias_init: float = 0.0,  # initial bias value (style affines: 1)
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return ops.bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution ``[N, in, H, W] -> [N, out, H*up/down, W*up/down]``."""

    def __init__(
        self,
        in_channels: int,  # input channels
        out_channels: int,  # output channels
        kernel_size: int,  # odd kernel width
        bias: bool = True,  # learn a bias
        activation: str = "linear",  # any ops.bias_act activation
        up: int = 1,  # FIR upsampling factor
        down: int = 1,  # FIR downsampling factor
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel for up/down
        conv_clamp: float | None = None,  # clamp the output to +-this (None = off)
        lr_multiplier: float = 1.0,  # learning-rate multiplier
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ops.activation_gain(activation)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        g = self.act_gain * gain
        if ops.folds_gain(self.activation) and g > 0 and ops.folded_forms(x):
            # the same function in fewer passes after the conv: gain folded into weight and bias, the
            # bias added by the convolution; without autograd activation and clamp run in place
            # (ops, "Inference forms"), with it they are the reference's, minus its bias and gain passes
            w = (self.weight * (self.weight_gain * g)).to(x.dtype)
            b = None if self.bias is None else self.bias * (self.bias_gain * g)
            f = self.resample_filter
            if ops.inference_shortcuts(x):
                x = ops.conv2d_resample(x, w, f, up=self.up, down=self.down, bias=b, act=self.activation)
                return ops.act_clamp_(x, "linear", clamp=clamp)
            x = ops.conv2d_resample(x, w, f, up=self.up, down=self.down, bias=b)
            return ops.bias_act(x, None, act=self.activation, gain=1.0, clamp=clamp)
        w = self.weight.to(x.dtype) * self.weight_gain
        x = ops.conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down)
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        return ops.bias_act(x, b, act=self.activation, gain=g, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of ``x`` to unit mean square along ``dim`` (the mapping network's z norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature channels used at ``resolution``: ``min(channel_base // resolution, channel_max)``."""
    return int(min(channel_base // resolution, channel_max))


def block_resolutions(img_resolution: int, lowest: int = 4) -> list[int]:
    """``[lowest, ..., img_resolution]``; ``img_resolution`` must be a power of two from 16 to 512."""
    log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
    if img_resolution < 16 or 2**log2 != img_resolution or img_resolution > 512:
        raise ValueError(f"resolution must be a power of two from 16 to 512, got {img_resolution}")
    return [2**i for i in range(int(np.log2(lowest)), log2 + 1)]
