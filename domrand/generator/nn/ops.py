"""Reference (pure PyTorch) implementations of the generator's heavy ops.

* ``setup_filter`` / ``upfirdn2d`` / ``upsample2d`` / ``downsample2d``: anti-aliased FIR resampling.
* ``bias_act``: bias + activation + gain + clamp; ``noise_bias_act``: noise + bias + activation.
* ``conv2d_resample``: a convolution with optional FIR up/down-sampling around it.
* ``modulated_conv2d``: StyleGAN2 style modulation and demodulation, fused or non-fused.

Everything here is differentiable (twice, as R1 and path-length regularization need) through
ordinary autograd. Callers import the ops from here; a fast backend plugs in through
``register_accelerator``: at the top of each op it is asked for an implementation for these tensors
and the reference below runs when it answers ``None`` (or when none is registered). ``domrand.cuda``
registers its CUDA kernels this way when it is imported (``domrand.generator.nn.layers`` imports it), so
this module imports nothing of domrand but the shape-check helper.

All images are ``[N, C, H, W]``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from domrand.utils import assert_shape

Padding = int | Sequence[int]

# --------------------------------------------------------------------------------------------
# The registration point of fast backends

Accelerator = Callable[..., Callable | None]  # (op_name, *tensors) -> an implementation or None
_accelerator: Accelerator | None = None
_local = threading.local()


def register_accelerator(accelerator: Accelerator | None) -> Accelerator | None:
    """Plug a fast backend into the ops (``None`` unplugs it); returns the one it replaces.

    ``accelerator(op_name, *tensors)`` is called at the top of ``upfirdn2d``, ``bias_act``,
    ``noise_bias_act`` and ``modulation_coefficients`` with the op's tensor arguments (main input first) and returns a
    callable taking the op's own arguments, or ``None`` to run the reference."""
    global _accelerator
    old, _accelerator = _accelerator, accelerator
    return old


def _fast(op_name: str, *tensors: torch.Tensor | None) -> Callable | None:
    return None if _accelerator is None else _accelerator(op_name, *tensors)


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Within this block (on this thread) a registered backend is asked to run the reference
    (``reference_only_active()``), e.g. to differentiate a kernel's backward through the ops."""
    prev = getattr(_local, "reference_only", False)
    _local.reference_only = True
    try:
        yield
    finally:
        _local.reference_only = prev


def reference_only_active() -> bool:
    """Whether this thread is inside ``reference_only()``."""
    return bool(getattr(_local, "reference_only", False))

# --------------------------------------------------------------------------------------------
# FIR filters and upfirdn2d


def setup_filter(
    f: Sequence[float] | torch.Tensor | None = (1, 3, 3, 1),
    *,
    normalize: bool = True,
    separable: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Build an FIR filter from a 1-D kernel such as ``[1, 3, 3, 1]``.

    Returns a float32 tensor: 1-D ``[taps]`` when ``separable`` (applied along x then y), else the
    2-D outer product ``[taps, taps]``. ``normalize`` makes the 2-D filter sum to 1 (unit DC gain).
    """
    if f is None:
        f = [1.0]
    f = torch.as_tensor(f, dtype=torch.float32, device=device)
    if f.ndim == 0 or f.numel() == 0:
        raise ValueError(f"filter: expected a non-empty 1-D or 2-D kernel, got shape {list(f.shape)}")
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim > 2:
        raise ValueError(f"filter: expected a 1-D or 2-D kernel, got shape {list(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"{name}: expected an int or a pair (x, y), got {v}")
    return v  # type: ignore[return-value]


def _padding4(padding: Padding) -> tuple[int, int, int, int]:
    """int | (px, py) | (px0, px1, py0, py1) -> (px0, px1, py0, py1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = tuple(int(x) for x in padding)
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p  # type: ignore[return-value]
    raise ValueError(f"padding: expected an int, (px, py) or (px0, px1, py0, py1), got {padding}")


def filter_taps(f: torch.Tensor | None) -> tuple[int, int]:
    """Filter width and height in taps (``None`` means the identity filter ``[1]``)."""
    if f is None:
        return 1, 1
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with FIR filter ``f``, then downsample.

    x: ``[N, C, H, W]``; f: 1-D ``[taps]`` (separable) or 2-D ``[fh, fw]``; padding may be negative
    (crops). ``gain`` scales the result (use ``up**2`` to keep the DC level when upsampling).
    ``flip_filter=False`` computes a true convolution; ``True`` a correlation.
    Output: ``[N, C, (H*up + py0 + py1 - fh) // down + 1, ...]``.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected shape [N, C, H, W], got {list(x.shape)}")
    impl = _fast("upfirdn2d", x, f)
    if impl is not None:
        return impl(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _padding4(padding)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    if f is None:
        f = torch.ones([1], dtype=x.dtype, device=x.device)
    n, c, h, w = x.shape

    # 1. Upsample by inserting (up - 1) zeros after every sample.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # 2. Pad (positive) and crop (negative).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # 3+4. Filter (depthwise) and downsample by striding the same convolution.
    f = f.to(device=x.device, dtype=x.dtype)
    if not flip_filter:  # conv2d correlates: flip for a true convolution
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = (f * gain)[None, None].expand(c, 1, *f.shape)
        return F.conv2d(x, weight, stride=(downy, downx), groups=c)
    f = f * math.sqrt(gain)
    x = F.conv2d(x, f.reshape(1, 1, 1, -1).expand(c, 1, 1, f.numel()), stride=(1, downx), groups=c)
    x = F.conv2d(x, f.reshape(1, 1, -1, 1).expand(c, 1, f.numel(), 1), stride=(downy, 1), groups=c)
    return x


def upsample2d(
    x: torch.Tensor, f: torch.Tensor | None, up: int = 2, padding: Padding = 0, gain: float = 1.0
) -> torch.Tensor:
    """FIR upsampling ``[N, C, H, W] -> [N, C, H*up, W*up]`` (plus ``padding``), DC gain preserved."""
    fw, fh = filter_taps(f)
    px0, px1, py0, py1 = _padding4(padding)
    p = [
        px0 + (fw + up - 1) // 2,
        px1 + (fw - up) // 2,
        py0 + (fh + up - 1) // 2,
        py1 + (fh - up) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(
    x: torch.Tensor, f: torch.Tensor | None, down: int = 2, padding: Padding = 0, gain: float = 1.0
) -> torch.Tensor:
    """FIR (anti-aliased) downsampling ``[N, C, H, W] -> [N, C, H/down, W/down]``."""
    fw, fh = filter_taps(f)
    px0, px1, py0, py1 = _padding4(padding)
    p = [
        px0 + (fw - down + 1) // 2,
        px1 + (fw - down) // 2,
        py0 + (fh - down + 1) // 2,
        py1 + (fh - down) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)


# --------------------------------------------------------------------------------------------
# bias_act


def _lrelu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


# name -> (function(x, alpha), default alpha, default gain)
ACTIVATIONS: dict[str, tuple] = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (_lrelu, 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def activation_gain(act: str) -> float:
    """Default gain of an activation (``sqrt(2)`` for relu/lrelu/swish, 1 otherwise)."""
    return _activation(act)[2]


def _activation(act: str) -> tuple:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; accepted: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[act]


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)``.

    x: any shape; b: ``[x.shape[dim]]`` broadcast along ``dim``; ``alpha`` is the activation's
    parameter (lrelu slope, default 0.2); ``gain`` defaults to the activation's own gain.
    """
    fn, default_alpha, default_gain = _activation(act)
    dim %= x.ndim
    impl = _fast("bias_act", x, b)
    if impl is not None:
        return impl(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    alpha = default_alpha if alpha is None else float(alpha)
    gain = default_gain if gain is None else float(gain)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"b: expected shape [{x.shape[dim]}] for x of shape {list(x.shape)}, got {list(b.shape)}")
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    x = fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)  # its gradient passes at exactly +-clamp (hardtanh's would not)
    return x


# --------------------------------------------------------------------------------------------
# Convolution with FIR resampling


def noise_bias_act(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    strength: torch.Tensor | float | None = None,
    b: torch.Tensor | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``bias_act(x + noise * strength, b, act, alpha, gain, clamp)``: the tail of a synthesis layer.

    x ``[N, C, H, W]``; noise ``[N|1, 1, H, W]`` (broadcast over channels) or ``None``; strength a
    scalar (tensor or float; ``None`` means 1). One fused kernel on CUDA, this reference elsewhere.
    """
    impl = _fast("noise_bias_act", x, noise, strength, b)
    if impl is not None:
        return impl(x, noise, strength, b, act=act, alpha=alpha, gain=gain, clamp=clamp)
    if noise is not None:
        x = x + (noise if strength is None else noise * strength).to(x.dtype)
    return bias_act(x, b, dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp)


def _transpose_grouped_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """conv2d weight ``[G*O, I, k, k]`` -> conv_transpose2d weight ``[G*I, O, k, k]``, flipped."""
    go, i, kh, kw = w.shape
    w = w.reshape(groups, go // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, go // groups, kh, kw)
    return w.flip([2, 3])


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    groups: int = 1,
    bias: torch.Tensor | None = None,
    act: str = "linear",
) -> torch.Tensor:
    """``[N, I*groups, H, W]`` conv ``w [O, I, k, k]`` (+ ``bias [O]``) -> ``[N, O, H*up/down, W*up/down]``.

    ``up=2``: strided transposed convolution followed by the FIR filter (the cheap equivalent of
    FIR-upsampling then convolving). ``down=2``: FIR blur then strided convolution. Otherwise a
    plain 'same'-padded convolution. The kernel size must be odd. ``bias`` is added to the output
    (inside the convolution where no FIR filter follows it). ``act`` (linear | lrelu | relu, default
    slope) is an inference form only: the output is activated in place, so it is accepted only
    where ``inference_shortcuts(x)``.
    """
    if act != "linear" and not inference_shortcuts(x):
        raise ValueError(f"conv2d_resample: act={act!r} is an inference form (no autograd, CPU); use bias_act")
    kh, kw = w.shape[2:]
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"w: expected a square, odd kernel, got {kh}x{kw}")
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: up and down at the same time are not supported")
    fw, _ = filter_taps(f)
    if up > 1:
        x = F.conv_transpose2d(x, _transpose_grouped_weight(w, groups), stride=up, groups=groups)
        p = up + fw - 1 - kw  # total padding so that the output is exactly H*up
        x = upfirdn2d(x, f, padding=[(p + 1) // 2, p // 2, (p + 1) // 2, p // 2], gain=up * up)
        x = x if bias is None else x + bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x if act == "linear" else act_clamp_(x, act)
    stride, padding = 1, kw // 2
    if down > 1:
        if kw == 1:
            x = downsample2d(x, f, down=down)
            padding = 0
        else:
            p = kw + fw - 1 - down  # total padding so that the output is exactly H/down
            x = upfirdn2d(x, f, padding=[(p + 1) // 2, p // 2, (p + 1) // 2, p // 2])
            stride, padding = down, 0
    x = F.conv2d(x, w, bias, stride=stride, padding=padding, groups=groups)
    return x if act == "linear" else act_clamp_(x, act)


# --------------------------------------------------------------------------------------------
# Modulated convolution


def modulation_coefficients(
    weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, eps: float = 1e-8
) -> torch.Tensor | None:
    """Demodulation coefficients ``[N, O]``: ``1 / sqrt(sum_{i,k} (w[o,i,k] * s[n,i])^2 + eps)``.

    Returns ``None`` when ``demodulate`` is false.
    """
    if not demodulate:
        return None
    impl = _fast("modulation_coefficients", weight, styles)
    if impl is not None:
        return impl(weight, styles, demodulate, eps)
    w2 = weight.square().sum(dim=[2, 3])  # [O, I]
    return (styles.square() @ w2.t() + eps).rsqrt()


def prefer_fused(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Pick the faster modulated-conv path for this device and batch.

    Measured with ``domrand speed generator --modconv`` (docs/benchmarks.md): on CPU the shared
    convolution of the non-fused path wins at every batch size (grouped convolutions with many
    groups are slow there); on CUDA the grouped convolution is the usual winner for small batches
    where shared weights cannot fill the GPU (not yet measured here: see docs/benchmarks.md).
    """
    if x.device.type == "cuda":
        return x.shape[0] <= 4
    return False


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    x: ``[N, I, H, W]``; weight: ``[O, I, k, k]``; styles: ``[N, I]``; noise: broadcastable to
    ``[N, O, H', W']`` (added after demodulation). Output ``[N, O, H*up/down, W*up/down]``.
    ``fused=True`` modulates the weights per sample and runs one grouped convolution;
    ``fused=False`` scales the activations, runs one shared convolution and scales the outputs.
    ``None`` picks the faster one (``prefer_fused``). Both compute the same function.
    """
    n, i, _, _ = x.shape
    o = weight.shape[0]
    assert_shape("weight", weight, [o, i, None, None])
    assert_shape("styles", styles, [n, i])
    if fused is None:
        fused = prefer_fused(x, weight)
    dcoefs = modulation_coefficients(weight, styles, demodulate)

    if not fused:
        x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, down=down)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, o, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    w = weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, o, 1, 1, 1)
    w = w.reshape(n * o, i, *weight.shape[2:]).to(x.dtype)
    x = conv2d_resample(x.reshape(1, n * i, *x.shape[2:]), w, resample_filter, up=up, down=down, groups=n)
    x = x.reshape(n, o, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# --------------------------------------------------------------------------------------------
# Inference forms: the same functions in fewer passes over memory (no autograd, CPU)
#
# On a CPU the elementwise tails of the layers (bias, noise, activation, gain, clamp: one pass over
# the activations each) cost as much as the convolutions once those run in bfloat16. Without
# autograd the layers fold them: a positive gain moves into the weights and bias
# (``g * lrelu(u) == lrelu(g * u)`` for ``g > 0``), the bias into the convolution, and the rest
# runs in place on the convolution's fresh output. ``tests/test_ops.py`` holds each form to the
# composition of the reference ops above.


FOLDING_DEVICE_TYPES = ("cpu",)  # where layers fold gain and bias into the conv (CUDA has fused kernels)


def folded_forms(x: torch.Tensor) -> bool:
    """Whether layers may fold gain and bias into the convolution for ``x`` (with or without
    autograd): a tensor on a ``FOLDING_DEVICE_TYPES`` device, outside ``reference_only()``."""
    return x.device.type in FOLDING_DEVICE_TYPES and not reference_only_active()


def inference_shortcuts(x: torch.Tensor) -> bool:
    """Whether layers may take the folded inference forms for ``x`` (``folded_forms``) with the
    activation and clamp in place: no autograd recording."""
    return not torch.is_grad_enabled() and folded_forms(x)


_FOLDABLE_ACTS = ("linear", "lrelu", "relu")  # act(g * u) == g * act(u) for g > 0, and an in-place form


def folds_gain(act: str) -> bool:
    """Whether ``act`` commutes with a positive gain (so the gain can move into the weights)."""
    return act in _FOLDABLE_ACTS


def act_clamp_(x: torch.Tensor, act: str, alpha: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """In place: ``clamp(act(x), -clamp, clamp)`` for ``act`` in linear | lrelu | relu; returns ``x``."""
    if act == "lrelu":
        F.leaky_relu_(x, 0.2 if alpha is None else float(alpha))
    elif act == "relu":
        F.relu_(x)
    elif act != "linear":
        raise ValueError(f"act_clamp_: activation {act!r} has no in-place form; accepted: {', '.join(_FOLDABLE_ACTS)}")
    if clamp is not None and clamp >= 0:
        F.hardtanh_(x, -clamp, clamp)
    return x


def modulated_conv2d_bias_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None,
    strength: torch.Tensor | float | None,
    b: torch.Tensor | None,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    gain: float = math.sqrt(2),
    clamp: float | None = None,
) -> torch.Tensor:
    """``noise_bias_act(modulated_conv2d(x, weight, styles, up=up), noise, strength, b, act="lrelu",
    gain=gain, clamp=clamp)`` (demodulated, non-fused) in fewer passes: in place without autograd,
    out of place (differentiable twice) with it.

    x ``[N, I, h, w]``; weight ``[O, I, k, k]``; styles ``[N, I]``; noise ``[N|1, 1, H, W]`` or None;
    b ``[O]`` or None; ``gain > 0``. Returns ``[N, O, H, W]`` in ``x``'s dtype and memory format.
    Passes over the output: one fused multiply-add (demodulation, gain, bias), one for the noise,
    one activation, one clamp, instead of the reference's six.
    """
    if gain <= 0:
        raise ValueError(f"gain must be > 0 to fold into the demodulation, got {gain}")
    n, i = x.shape[:2]
    o = weight.shape[0]
    assert_shape("styles", styles, [n, i])
    dcoefs = modulation_coefficients(weight, styles)  # [N, O]
    x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up)
    scale = (dcoefs * gain).to(x.dtype).reshape(n, o, 1, 1)
    if noise is not None and noise.shape[0] > 1 and noise.stride(0) == 0:  # an expanded constant map: one row is enough
        noise = noise[:1]
    noise = None if noise is None else (noise * (gain if strength is None else strength * gain)).to(x.dtype)
    if torch.is_grad_enabled():  # autograd: the same passes, out of place
        x = x * scale if b is None else torch.addcmul((b * gain).to(x.dtype).reshape(1, o, 1, 1), x, scale)
        x = x if noise is None else x + noise
        return bias_act(x, None, act="lrelu", gain=1.0, clamp=clamp)
    if b is None:
        x.mul_(scale)
    else:
        torch.addcmul((b * gain).to(x.dtype).reshape(1, o, 1, 1), x, scale, out=x)
    if noise is not None:
        x.add_(noise)
    return act_clamp_(x, "lrelu", clamp=clamp)
