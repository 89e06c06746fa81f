"""The inverter: an encoder that maps frames to a generator's W+ (and optionally a coarse feature map).

Network
-------
``Inverter`` is a residual CNN with a feature pyramid. The bottom-up path halves the resolution
per level (``R -> R/2 -> ... -> 4``, FIR-filtered strided convs, residual skips); a top-down path
adds upsampled coarse context into every level. One head per ws resolution turns a pyramid level
into that group's ws: ws driving resolution ``r`` read the level at ``min(r,
max_head_resolution)``, so coarse styles come from the low-resolution level and fine styles from
the high-resolution level. Every head predicts an *offset* from the generator's ``w_avg`` (scaled
by the spread of W); the last layer of each head starts at zero, so an untrained inverter returns
``w_avg`` for every layer, i.e. the average image.

Spatial latent (``spatial_latent: true``): a further head predicts a feature map
``[N, C, k, k]`` at ``keep_resolution = k`` that replaces the synthesis network's features of
block ``k`` (before its toRGB). It is an offset from the features the generator computes for
``w_avg`` with const noise, so it also starts at the average image. Layout is then carried
spatially, while the fine ws still set appearance.

Noise convention (decided; the randomizer relies on it)
--------------------------------------------------------
The inverter predicts **no** noise maps. Noise layers at resolutions ``<= keep_resolution`` always
use the generator's fixed ``const`` noise, in training, reconstruction and randomization alike, so
layout can never depend on resampled noise. Only noise layers above ``keep_resolution`` are free:
reconstruction uses ``const`` there too (a deterministic answer), the randomizer resamples them.
:func:`layout_noise` builds exactly this noise dict. Refinement (``invert(steps>0)``) optimizes
ws (and the spatial feature map), never noise.

Pairing
-------
``E.generator_hash`` is ``checkpoint.weights_hash(G)`` of the generator the inverter was built and
trained for; it is stored in the checkpoint, and :meth:`Inverter.check_pairing` refuses any other
generator with a ``ValueError``.

Shapes: images ``[N, 3, R, R]`` float in ``[-1, 1]``; ws ``[N, num_ws, w_dim]``; features
``{keep_resolution: [N, C_k, k, k]}`` or ``None``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from domrand import checkpoint
from domrand.config import from_dict, to_dict
from domrand.generator.nn import ops
from domrand.generator.nn.layers import Conv2dLayer, FullyConnectedLayer, block_resolutions, channels_at
from domrand.metrics import ms_ssim
from domrand.utils import assert_shape

__all__ = [
    "Inverter",
    "InverterNetworkConfig",
    "generator_info",
    "layout_noise",
    "render",
    "save_inverter",
]


# --------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class InverterNetworkConfig:
    keep_resolution: int = 16  # coarse/fine boundary; also the spatial latent's resolution
    spatial_latent: bool = True  # predict a feature map at keep_resolution (replaces G's features)
    channel_base: int = 4096  # encoder channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 256  # upper bound on encoder channels
    fpn_channels: int = 128  # channels of every pyramid level after the top-down merge
    head_channels: int = 128  # channels of the heads' strided convs
    blocks_per_level: int = 1  # extra residual blocks (no resampling) at every level
    max_head_resolution: int = 32  # fine heads read the pyramid level at min(r, this)


# --------------------------------------------------------------------------------------------
# Generator bookkeeping helpers


def generator_info(G: nn.Module, keep_resolution: int) -> dict[str, Any]:
    """What the inverter needs to know about ``G`` (JSON-able)."""
    syn = G.synthesis
    if keep_resolution not in syn.block_resolutions or keep_resolution >= syn.img_resolution:
        raise ValueError(
            f"keep_resolution must be one of the generator's block resolutions below its output "
            f"resolution {syn.img_resolution}: {[r for r in syn.block_resolutions if r < syn.img_resolution]}; "
            f"got {keep_resolution}"
        )
    return {
        "resolution": int(syn.img_resolution),
        "num_ws": int(syn.num_ws),
        "w_dim": int(syn.w_dim),
        "ws_resolutions": [int(r) for r in syn.ws_resolutions],
        "keep_channels": int(syn.channels[keep_resolution]),
    }


def compose_styles(frame_ws: torch.Tensor, fine_ws: torch.Tensor, num_coarse: int, mix: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Keep a frame's coarse styles, take fine ones from elsewhere: ``frame_ws`` ``[N, num_ws, w_dim]``
    (the inversion), ``fine_ws`` ``[N, num_ws - num_coarse, w_dim]`` (drawn, already truncated) ->
    ``[N, num_ws, w_dim]``; ``mix`` blends the frame's own fine styles (0) into the drawn ones (1).
    The one style composition of domrand (the randomizer, inverter training and evaluation)."""
    fine = frame_ws[:, num_coarse:].lerp(fine_ws.to(frame_ws.dtype), mix)
    return torch.cat([frame_ws[:, :num_coarse], fine], dim=1)


def layout_noise(
    G: nn.Module,
    n: int,
    keep_resolution: int,
    fine: str = "const",
    generator: torch.Generator | None = None,
    device: Any = None,
) -> dict[str, torch.Tensor | None]:
    """Noise dict for ``G.synthesis(noise=...)`` following the inverter's noise convention.

    Layers at resolutions ``<= keep_resolution`` get G's ``const`` noise (layout never depends on
    resampled noise); layers above get ``fine`` (``"const"``, ``"random"`` drawn from
    ``generator``, or ``"none"``).
    """
    syn = G.synthesis
    device = device if device is not None else next(G.parameters()).device
    coarse = syn.sample_noise(n, device=device, noise_mode="const")
    if fine == "const":
        return coarse
    rest = syn.sample_noise(n, device=device, generator=generator, noise_mode=fine)
    return {name: coarse[name] if r <= keep_resolution else rest[name] for name, r in syn.noise_layers}


def render(
    G: nn.Module,
    out: dict[str, Any],
    keep_resolution: int,
    fine_noise: str = "const",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``G.synthesis`` of an inverter answer ``{"ws", "features"}`` -> images ``[N, 3, R, R]``."""
    ws = out["ws"]
    noise = layout_noise(G, ws.shape[0], keep_resolution, fine_noise, generator, ws.device)
    return G.synthesis(ws, noise=noise, features=out.get("features"))


def save_inverter(path, E: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Save an inverter checkpoint (``checkpoint.save_network``; kept for callers of this name)."""
    checkpoint.save_network(path, E, extra)


def recorded_generator_hash(E: Any) -> str | None:
    """The generator weights hash an inverter (or a stand-in with ``extra``) records, or None."""
    value = getattr(E, "generator_hash", None)
    if value is None:
        value = (getattr(E, "extra", None) or {}).get("generator_hash")
    return None if value is None else str(value)


def check_pairing(G: nn.Module, E: Any, require_hash: bool = True) -> str:
    """Raise ``ValueError`` unless ``E`` was trained for ``G``; returns ``G``'s weights hash.

    An ``Inverter`` is also checked against the generator's shape (``generator_info``). An inverter
    that records no generator hash is refused when ``require_hash`` (bundles, the randomizer) and
    passes otherwise (an inverter in training, before it is tied to weights)."""
    if isinstance(E, Inverter):
        info = generator_info(G, E.keep_resolution)
        if info != E.gen_info:
            raise ValueError(f"inverter/generator mismatch: the inverter was built for a generator with {E.gen_info}, "
                             f"this generator has {info}")  # fmt: skip
    have = cached_weights_hash(G)
    want = recorded_generator_hash(E)
    if want is None:
        if require_hash:
            raise ValueError("the inverter records no generator_hash, so it cannot be paired with a generator")
        return have
    if want != have:
        raise ValueError(
            f"inverter/generator mismatch: the inverter was trained for generator weights {want}, "
            f"this generator's weights hash to {have}; train an inverter for this generator "
            "(domrand train-inverter) or load the generator it was trained with"
        )
    return have


_HASH_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def cached_weights_hash(G: nn.Module) -> str:
    """``weights_hash(G)``, recomputed only when a tensor of ``G`` was replaced or changed in place.

    Cached per live generator object; the key is the identity, storage pointer and in-place
    version counter of every parameter and buffer, so per-frame ``invert`` calls do not hash the
    whole generator each time.
    """
    key = tuple((id(t), t.data_ptr(), t._version) for t in G.state_dict(keep_vars=True).values())
    hit = _HASH_CACHE.get(G)
    if hit is not None and hit[0] == key:
        return hit[1]
    h = checkpoint.weights_hash(G)
    _HASH_CACHE[G] = (key, h)
    return h


# --------------------------------------------------------------------------------------------
# Building blocks


class _ResBlock(nn.Module):
    """Residual block ``[N, cin, r, r] -> [N, cout, r/down, r/down]`` (down = 1 or 2)."""

    def __init__(self, cin: int, cout: int, down: int, resample_filter: tuple[int, ...]):
        super().__init__()
        self.conv0 = Conv2dLayer(cin, cin, 3, activation="lrelu", resample_filter=resample_filter)
        self.conv1 = Conv2dLayer(cin, cout, 3, activation="lrelu", down=down, resample_filter=resample_filter)
        self.skip = (
            None
            if cin == cout and down == 1
            else Conv2dLayer(cin, cout, 1, bias=False, down=down, resample_filter=resample_filter)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.skip is None else self.skip(x, gain=math.sqrt(0.5))
        scale = 1.0 if self.skip is not None else math.sqrt(0.5)
        out = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        if ops.inference_shortcuts(out):  # out is conv1's fresh output: add in place
            return out.add_(y.to(out.dtype), alpha=scale)
        return y * scale + out


class _StyleHead(nn.Module):
    """Pyramid level ``[N, C, r, r]`` -> ws offsets ``[N, count, w_dim]`` (zero at init)."""

    def __init__(self, cin: int, level: int, count: int, w_dim: int, head_channels: int, resample_filter):
        super().__init__()
        self.count, self.w_dim = count, w_dim
        convs = []
        c = cin
        r = level
        while r > 4:
            convs.append(Conv2dLayer(c, head_channels, 3, activation="lrelu", down=2, resample_filter=resample_filter))
            c, r = head_channels, r // 2
        self.convs = nn.ModuleList(convs)
        self.fc = FullyConnectedLayer(c * 16, w_dim, activation="lrelu")
        self.out = FullyConnectedLayer(w_dim, count * w_dim)
        with torch.no_grad():
            self.out.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        x = self.out(self.fc(x.flatten(1)))
        return x.reshape(-1, self.count, self.w_dim)


# --------------------------------------------------------------------------------------------
# The inverter


@checkpoint.register_network
class Inverter(nn.Module):
    """Encoder: images ``[N, 3, R, R]`` in ``[-1, 1]`` -> ``{"ws": [N, num_ws, w_dim], "features": ...}``.

    Build it for a generator with :meth:`for_generator`; load it with
    ``checkpoint.load_network(path, "Inverter")``.
    """

    def __init__(
        self,
        config: InverterNetworkConfig,  # encoder shape, keep_resolution, spatial latent on/off
        gen_info: dict[str, Any],  # generator_info(G, keep_resolution)
        generator_hash: str = "",  # weights_hash(G) of the paired generator
        fir_kernel: tuple[int, ...] = (1, 3, 3, 1),  # FIR kernel for strided convs
    ):
        super().__init__()
        self.config = config
        self.gen_info = dict(gen_info)
        self.generator_hash = str(generator_hash)
        self.fir_kernel = tuple(int(v) for v in fir_kernel)
        self.img_resolution = int(gen_info["resolution"])
        self.num_ws = int(gen_info["num_ws"])
        self.w_dim = int(gen_info["w_dim"])
        self.ws_resolutions = [int(r) for r in gen_info["ws_resolutions"]]
        self.keep_resolution = int(config.keep_resolution)
        self.spatial_latent = bool(config.spatial_latent)
        if len(self.ws_resolutions) != self.num_ws:
            raise ValueError(f"gen_info: {len(self.ws_resolutions)} ws_resolutions for num_ws={self.num_ws}")
        levels = block_resolutions(self.img_resolution)  # 4 .. R
        if self.keep_resolution not in levels or self.keep_resolution >= self.img_resolution:
            raise ValueError(
                f"keep_resolution must be one of {[r for r in levels if r < self.img_resolution]} for a "
                f"{self.img_resolution}px generator, got {self.keep_resolution}"
            )
        ch = {r: channels_at(r, config.channel_base, config.channel_max) for r in levels}
        f = self.fir_kernel
        R = self.img_resolution

        # bottom-up
        self.fromrgb = Conv2dLayer(3, ch[R], 1, activation="lrelu")
        self.down = nn.ModuleDict()
        self.level_blocks = nn.ModuleDict()
        for r in levels[::-1]:
            self.level_blocks[f"b{r}"] = nn.Sequential(*[_ResBlock(ch[r], ch[r], 1, f) for _ in range(config.blocks_per_level)])
            if r > 4:
                self.down[f"b{r}"] = _ResBlock(ch[r], ch[r // 2], 2, f)
        # top-down
        fc = config.fpn_channels
        self.lateral = nn.ModuleDict({f"b{r}": Conv2dLayer(ch[r], fc, 1) for r in levels})
        self.smooth = nn.ModuleDict({f"b{r}": Conv2dLayer(fc, fc, 3, activation="lrelu") for r in levels})

        # style heads, one per distinct ws resolution
        self.head_levels: dict[int, int] = {}
        self.head_indices: dict[int, list[int]] = {}
        for i, r in enumerate(self.ws_resolutions):
            self.head_indices.setdefault(r, []).append(i)
        self.heads = nn.ModuleDict()
        for r, idx in self.head_indices.items():
            level = min(r, config.max_head_resolution, R)
            level = max(level, 4)
            self.head_levels[r] = level
            self.heads[f"r{r}"] = _StyleHead(fc, level, len(idx), self.w_dim, config.head_channels, f)

        # spatial latent head
        k = self.keep_resolution
        self.keep_channels = int(gen_info["keep_channels"])
        if self.spatial_latent:
            self.spatial = nn.Sequential(
                Conv2dLayer(fc, config.head_channels, 3, activation="lrelu"),
                Conv2dLayer(config.head_channels, self.keep_channels, 3),
            )
            with torch.no_grad():
                self.spatial[1].weight.zero_()
        else:
            self.spatial = None

        # statistics of the paired generator (filled by for_generator, stored in checkpoints)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.register_buffer("w_std", torch.ones([]))  # RMS per dim of (w - w_avg) over W
        self.register_buffer("w_radius", torch.ones([]))  # RMS of ||w - w_avg|| over W
        self.register_buffer("feat_avg", torch.zeros(self.keep_channels, k, k))  # G's features of w_avg
        self.register_buffer("feat_std", torch.ones([]))  # spread of those features across W

    # ---- construction --------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def for_generator(
        cls, G: nn.Module, config: InverterNetworkConfig, samples: int = 1024, seed: int = 0
    ) -> "Inverter":
        """A fresh inverter for ``G``: records its hash, ``w_avg`` and the spread of W and features."""
        info = generator_info(G, config.keep_resolution)
        fir = tuple(getattr(getattr(G, "config", None), "fir_kernel", (1, 3, 3, 1)))
        E = cls(config, info, checkpoint.weights_hash(G), fir)
        device = next(G.parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(samples, G.z_dim, generator=gen).to(device)
        w = G.mapping(z)[:, 0]
        w_avg = G.mapping.w_avg.to(torch.float32)
        if not bool(w_avg.abs().sum() > 0):  # an untrained generator never tracked w_avg
            w_avg = w.mean(0)
        d = w - w_avg
        E.w_avg.copy_(w_avg.cpu())
        E.w_std.copy_(d.square().mean().sqrt().clamp(min=1e-6).cpu())
        E.w_radius.copy_(d.square().sum(1).mean().sqrt().clamp(min=1e-6).cpu())
        k = config.keep_resolution
        noise = layout_noise(G, 1, k, "const", device=device)
        _, extras = G.synthesis(w_avg.reshape(1, -1), noise=noise, return_extras=True)
        E.feat_avg.copy_(extras["features"][k][0].float().cpu())
        m = min(samples, 64)
        noise = layout_noise(G, m, k, "const", device=device)
        _, extras = G.synthesis(w[:m], noise=noise, return_extras=True)
        spread = (extras["features"][k].float() - extras["features"][k].float().mean(0)).square().mean().sqrt()
        E.feat_std.copy_(spread.clamp(min=1e-6).cpu())
        return E.to(device)

    # ---- pairing -------------------------------------------------------------------------
    def check_pairing(self, G: nn.Module) -> None:
        """Raise ``ValueError`` unless ``G`` is the generator this inverter was trained for
        (``check_pairing(G, self, require_hash=False)``)."""
        check_pairing(G, self, require_hash=False)

    # ---- forward -------------------------------------------------------------------------
    def pyramid(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """Images -> ``{r: [N, fpn_channels, r, r]}`` for r in 4..R."""
        R = self.img_resolution
        assert_shape("images", images, [None, 3, R, R])
        x = self.fromrgb(images.to(torch.float32))
        bottom: dict[int, torch.Tensor] = {}
        for r in block_resolutions(R)[::-1]:
            x = self.level_blocks[f"b{r}"](x)
            bottom[r] = x
            if r > 4:
                x = self.down[f"b{r}"](x)
        out: dict[int, torch.Tensor] = {}
        top = None
        for r in block_resolutions(R):
            lat = self.lateral[f"b{r}"](bottom[r])
            if top is not None:
                lat = lat + F.interpolate(top, scale_factor=2, mode="bilinear", align_corners=False)
            top = self.smooth[f"b{r}"](lat)
            out[r] = top
        return out

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        """images ``[N, 3, R, R]`` -> ``{"ws": [N, num_ws, w_dim], "features": {k: [N, C, k, k]} | None}``."""
        pyr = self.pyramid(images)
        n = images.shape[0]
        offsets = images.new_zeros(n, self.num_ws, self.w_dim, dtype=torch.float32)
        for r, idx in self.head_indices.items():
            offsets[:, idx] = self.heads[f"r{r}"](pyr[self.head_levels[r]]).to(offsets.dtype)
        ws = self.w_avg.reshape(1, 1, -1) + offsets * self.w_std
        features = None
        if self.spatial is not None:
            k = self.keep_resolution
            delta = self.spatial(pyr[k])
            features = {k: self.feat_avg.unsqueeze(0) + delta * self.feat_std}
        return {"ws": ws, "features": features}

    @property
    def num_coarse_ws(self) -> int:
        """Leading ws indices that drive only resolutions ``<= keep_resolution``."""
        return sum(1 for r in self.ws_resolutions if r <= self.keep_resolution)

    # ---- hybrid inversion ----------------------------------------------------------------
    def invert(
        self,
        images: torch.Tensor,
        G: nn.Module,
        steps: int = 0,
        *,
        lr: float = 0.02,  # Adam step size on ws (in units of the spread of W) and features
        l2_weight: float = 1.0,  # image MSE
        msssim_weight: float = 0.5,  # 1 - MS-SSIM
        reg_weight: float = 0.01,  # keep ws near the encoder's answer (in units of the spread of W)
        check: bool = True,  # refuse a generator this inverter was not trained for
    ) -> dict[str, Any]:
        """Encoder answer (``steps=0``), or that answer refined by ``steps`` batched Adam steps.

        Refinement optimizes ws and the spatial feature map (never noise: const everywhere, see the
        module docstring) to reconstruct ``images`` through ``G``. Each sample's loss only depends
        on its own variables, so the batch is refined independently in one pass. ``G`` is not
        modified (no gradients are accumulated in its parameters).
        """
        if check:
            self.check_pairing(G)
        with torch.no_grad():
            out = self(images)
        if steps <= 0:
            return out

        images = images.to(torch.float32)
        scale = float(self.w_std)
        w0 = out["ws"].detach()
        # optimize in normalized units so one lr fits every generator
        u = torch.zeros_like(w0, requires_grad=True)
        variables = [u]
        k = self.keep_resolution
        f0 = fv = None
        if out["features"] is not None:
            f0 = out["features"][k].detach()
            fv = torch.zeros_like(f0, requires_grad=True)
            variables.append(fv)
        opt = torch.optim.Adam(variables, lr=lr, betas=(0.9, 0.999))
        noise = layout_noise(G, images.shape[0], k, "const", device=images.device)
        fscale = float(self.feat_std)
        with torch.enable_grad():
            for _ in range(int(steps)):
                ws = w0 + u * scale
                feats = None if fv is None else {k: f0 + fv * fscale}
                img = G.synthesis(ws, noise=noise, features=feats)
                per = l2_weight * (img - images).square().flatten(1).mean(1)
                if msssim_weight:
                    per = per + msssim_weight * (1 - ms_ssim(img, images))
                per = per + reg_weight * u.square().flatten(1).mean(1)
                if fv is not None:
                    per = per + reg_weight * fv.square().flatten(1).mean(1)
                grads = torch.autograd.grad(per.sum(), variables)
                for v, g in zip(variables, grads):
                    v.grad = g
                opt.step()
        with torch.no_grad():
            ws = w0 + u.detach() * scale
            feats = None if fv is None else {k: f0 + fv.detach() * fscale}
        return {"ws": ws, "features": feats}

    # ---- checkpoint protocol -------------------------------------------------------------
    def export_config(self) -> dict[str, Any]:
        return {
            "network": to_dict(self.config),
            "generator": self.gen_info,
            "generator_hash": self.generator_hash,
            "fir_kernel": list(self.fir_kernel),
        }

    @classmethod
    def from_exported_config(cls, data: dict[str, Any]) -> "Inverter":
        return cls(
            from_dict(InverterNetworkConfig, data["network"], "inverter network config"),
            data["generator"],
            data.get("generator_hash", ""),
            tuple(data.get("fir_kernel", (1, 3, 3, 1))),
        )
