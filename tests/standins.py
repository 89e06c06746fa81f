"""A stand-in for the Inverter interface, shared by the randomizer, wrapper and bundle tests: a
small conv net predicting offsets from the generator's ``w_avg`` (fast, and any generator fits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domrand.checkpoint import weights_hash


class StandInEncoder(nn.Module):
    """frames ``[N, 3, R, R]`` -> ``{"ws": [N, num_ws, w_dim], "features": None | {keep: [N, C, keep, keep]}}``."""

    def __init__(self, num_ws: int, w_dim: int, keep_resolution: int = 8, generator_hash: str = "",
                 feature_channels: int | None = None):  # fmt: skip
        super().__init__()
        self.num_ws, self.w_dim, self.keep_resolution, self.generator_hash = num_ws, w_dim, keep_resolution, generator_hash
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, num_ws * w_dim)
        self.feat = None if feature_channels is None else nn.Conv2d(3, feature_channels, 3, padding=1)
        self.invert_calls: list[int] = []

    @classmethod
    def for_generator(cls, G: nn.Module, keep_resolution: int = 8, features: bool = False) -> "StandInEncoder":
        channels = G.synthesis.channels[keep_resolution] if features else None
        E = cls(G.num_ws, G.w_dim, keep_resolution, weights_hash(G), channels)
        E.w_avg.copy_(G.mapping.w_avg.detach())
        return E

    def forward(self, images: torch.Tensor) -> dict:
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(images)), 4).flatten(1)
        ws = self.w_avg + self.fc(h).reshape(-1, self.num_ws, self.w_dim)
        feats = None
        if self.feat is not None:
            r = self.keep_resolution
            feats = {r: self.feat(F.interpolate(images, size=(r, r), mode="area"))}
        return {"ws": ws, "features": feats}

    def invert(self, images: torch.Tensor, G: nn.Module, steps: int = 0) -> dict:
        self.invert_calls.append(steps)
        return self(images)
