"""The distilled student: one small feed-forward network standing in for the whole randomizer.

``StudentNet(frame, style)``: a sim frame ``[N, 3, R, R]`` in [-1, 1] and a style code ``[N, w_dim]``
(the mean of the fine ws the teacher would use: the mapping of the environment's z, truncated)
-> the randomized frame ``[N, 3, R, R]`` in about [-1, 1]. A small U-Net: an encoder down to
``R / 2**(levels - 1)`` (16x16 at 64, the coarse level whose layout the teacher takes from the
frame), residual blocks there, and a decoder whose features are modulated by the style (a
per-channel scale and shift from an affine map of the style, FiLM) on the fine levels only, like
the teacher, whose style drives the resolutions above ``keep_resolution``.

With ``noise_maps = k`` each decoder level also takes ``k`` constant noise maps ``[k, r, r]`` (buffers
copied from the teacher generator's constant noise at that resolution by ``load_teacher_noise``): the
teacher's fine texture is a fixed spatial pattern of those maps, which a translation-equivariant
network cannot make up from the frame alone.

It reproduces the teacher with constant fine noise and ``mix = 1`` (``domrand distill`` trains it
on such pairs); the teacher's per-episode noise is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domrand import checkpoint
from domrand.config import from_dict, to_dict
from domrand.utils import assert_shape


@dataclass(frozen=True)
class StudentConfig:
    resolution: int = 64  # frame side (the teacher generator's resolution)
    w_dim: int = 256  # style code size (the teacher's w_dim)
    channels: tuple[int, ...] = (16, 32, 64)  # features per level: R, R/2, R/4, ...
    res_blocks: int = 2  # residual blocks at the coarsest level
    noise_maps: int = 0  # constant teacher noise maps fed to each decoder level (0: none)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = _conv(c, c), _conv(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


@checkpoint.register_network
class StudentNet(nn.Module):
    """Sim frame + style code -> randomized frame (see the module docstring)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        ch = tuple(int(c) for c in config.channels)
        if len(ch) < 2 or min(ch) < 1:
            raise ValueError(f"student channels: at least two positive levels, got {list(ch)}")
        if config.resolution % 2 ** (len(ch) - 1):
            raise ValueError(f"student resolution {config.resolution} is not divisible by 2**{len(ch) - 1}")
        self.config = config
        self.enc = nn.ModuleList([_conv(3, ch[0])] + [_conv(ch[i - 1], ch[i], stride=2) for i in range(1, len(ch))])
        self.mid = nn.Sequential(*[_ResBlock(ch[-1]) for _ in range(config.res_blocks)])
        k = int(config.noise_maps)
        if k < 0:
            raise ValueError(f"student noise_maps: a count >= 0, got {k}")
        self.dec = nn.ModuleList([_conv(ch[i + 1] + ch[i] + k, ch[i]) for i in range(len(ch) - 1)])
        for i in range(len(ch) - 1 if k else 0):  # level i works at R / 2**i
            r = config.resolution >> i
            self.register_buffer(f"noise{i}", torch.zeros(k, r, r))
        self.film = nn.ModuleList([nn.Linear(config.w_dim, 2 * ch[i]) for i in range(len(ch) - 1)])
        for lin in self.film:  # start as the identity modulation
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.to_rgb = nn.Conv2d(ch[0], 3, 1)

    def forward(self, frames: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        R = self.config.resolution
        assert_shape("frames", frames, [None, 3, R, R])
        assert_shape("style", style, [frames.shape[0], self.config.w_dim])
        skips = []
        x = frames
        for i, conv in enumerate(self.enc):
            x = F.leaky_relu(conv(x), 0.2)
            if i < len(self.enc) - 1:
                skips.append(x)
        x = self.mid(x)
        for i in reversed(range(len(self.dec))):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            parts = [x, skips[i]]
            if self.config.noise_maps:
                parts.append(getattr(self, f"noise{i}").to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1, -1))
            x = self.dec[i](torch.cat(parts, dim=1))
            scale, shift = self.film[i](style.to(x.dtype)).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            x = F.leaky_relu(x * (1 + scale) + shift, 0.2)
        return self.to_rgb(x)

    def noise_resolutions(self) -> list[int]:
        """The resolution of each decoder level's noise maps (level ``i`` at ``R / 2**i``)."""
        return [self.config.resolution >> i for i in range(len(self.dec))]

    @torch.no_grad()
    def load_teacher_noise(self, maps: list[torch.Tensor]) -> None:
        """Set each decoder level's constant noise: ``maps[i]`` ``[>= noise_maps, r_i, r_i]`` (the first ones are used)."""
        k = self.config.noise_maps
        if not k:
            raise ValueError("student noise: this student takes no noise maps (noise_maps = 0)")
        if len(maps) != len(self.dec):
            raise ValueError(f"student noise: {len(self.dec)} levels, got maps for {len(maps)}")
        for i, (m, r) in enumerate(zip(maps, self.noise_resolutions())):
            if m.dim() != 3 or m.shape[1:] != (r, r) or m.shape[0] < k:
                raise ValueError(f"student noise level {i}: needs [>= {k}, {r}, {r}] maps, got {list(m.shape)}")
            getattr(self, f"noise{i}").copy_(m[:k])

    def export_config(self) -> dict[str, Any]:
        return {"student": to_dict(self.config)}

    @classmethod
    def from_exported_config(cls, data: dict[str, Any]) -> "StudentNet":
        return cls(from_dict(StudentConfig, data["student"], "student config"))
