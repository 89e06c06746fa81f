"""Autograd wrappers that run the CUDA kernels, with the reference ops' signatures.

Each public function here takes the same arguments as its reference op in
``domrand.generator.nn.ops`` (plus a keyword-only ``runner`` used by tests; by default the runner for
the tensor's device from ``dispatch.runner_for``), so ``dispatch.maybe_cuda`` can hand it back in
place of the reference.

Gradients
---------
* First-order backward (ordinary training steps) runs kernels: ``bias_act`` and
  ``noise_bias_act`` have a backward kernel (their parameter gradients are PyTorch reductions of its
  output); ``upfirdn2d``'s gradient is another upfirdn2d (flipped filter, up and down swapped,
  adjusted padding), run by the same kernel and itself differentiable; the demodulation
  coefficients' gradient is two small matrix products in PyTorch.
* Double backward (R1 and path-length regularization call ``torch.autograd.grad(...,
  create_graph=True)``): when a backward runs with grad mode on, ``bias_act``, ``noise_bias_act``
  and ``modulation_coefficients`` recompute their gradient through the PyTorch reference (under
  ``ops.reference_only()``), so the result is differentiable again by ordinary autograd.
  ``upfirdn2d`` needs no fall-back. This is tested on CPU with the emulated kernels.

STATUS: validated on CPU through the emulated kernels and on a GPU (H200; docs/cuda.md).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from domrand.cuda import launch
from domrand.generator.nn import ops

_runner_lookup: Callable[[torch.device], Any] | None = None  # set by domrand.cuda.dispatch


def set_runner_lookup(lookup: Callable[[torch.device], Any]) -> None:
    """How a wrapper called without ``runner`` finds the kernel runner of a device (the dispatch's)."""
    global _runner_lookup
    _runner_lookup = lookup


def _runner(x: torch.Tensor, runner: Any) -> Any:
    if runner is not None:
        return runner
    if _runner_lookup is None:
        raise RuntimeError("domrand.cuda.autograd: no kernel runner given and none registered (import domrand.cuda)")
    return _runner_lookup(x.device)


def _resolve_act(act: str, alpha: float | None, gain: float | None) -> tuple[float, float]:
    _, default_alpha, default_gain = ops._activation(act)  # raises ValueError for unknown names
    if act not in launch.ACT_CODES:
        raise ValueError(f"no CUDA kernel for activation {act!r}")
    return (default_alpha if alpha is None else float(alpha)), (default_gain if gain is None else float(gain))


def _sum_to(t: torch.Tensor, keep_dim: int) -> torch.Tensor:
    dims = [d for d in range(t.ndim) if d != keep_dim % t.ndim]
    return t.sum(dim=dims, dtype=torch.float32) if dims else t.float()


def _reference_grads(fn, inputs: Sequence[torch.Tensor | None], needs: Sequence[bool], grad_out: torch.Tensor):
    """Gradients of ``fn(*inputs)`` through the reference, differentiable (for create_graph)."""
    wanted = [i for i, (t, need) in enumerate(zip(inputs, needs)) if need and t is not None]
    grads: list[torch.Tensor | None] = [None] * len(inputs)
    if not wanted:
        return grads
    with ops.reference_only(), torch.enable_grad():
        y = fn(*inputs)
        got = torch.autograd.grad(y, [inputs[i] for i in wanted], grad_out, create_graph=True, allow_unused=True)
    for i, g in zip(wanted, got):
        grads[i] = g
    return grads


# --------------------------------------------------------------------------------------------
# bias_act


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp, runner):
        ctx.save_for_backward(x, b)
        ctx.params = (dim, act, alpha, gain, clamp)
        ctx.runner = runner
        return launch.bias_act_forward(runner, x, b, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim, act, alpha, gain, clamp = ctx.params
        needs = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients via the reference
            def ref(x_, b_):
                return ops.bias_act(x_, b_, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

            dx, db = _reference_grads(ref, [x, b], needs, dy)
        else:
            dx = launch.bias_act_backward(ctx.runner, dy, x, b, dim, act, alpha, gain, clamp)
            db = _sum_to(dx, dim).to(b.dtype) if (b is not None and needs[1]) else None
            dx = dx.to(x.dtype) if needs[0] else None
        return dx, db, None, None, None, None, None, None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    *,
    runner: Any = None,
) -> torch.Tensor:
    """CUDA ``ops.bias_act``: ``clamp(act(x + b) * gain, -clamp, clamp)``."""
    alpha, gain = _resolve_act(act, alpha, gain)
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"b: expected shape [{x.shape[dim]}] for x of shape {list(x.shape)}, got {list(b.shape)}")
    dim = dim % x.ndim if x.ndim else 0
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    return _BiasAct.apply(x, b, dim, act, alpha, gain, clamp, _runner(x, runner))


# --------------------------------------------------------------------------------------------
# noise_bias_act


class _NoiseBiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, noise, strength, b, act, alpha, gain, clamp, runner):
        ctx.save_for_backward(x, noise, strength, b)
        ctx.params = (act, alpha, gain, clamp)
        ctx.runner = runner
        return launch.noise_bias_act_forward(runner, x, noise, strength, b, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, noise, strength, b = ctx.saved_tensors
        act, alpha, gain, clamp = ctx.params
        needs = ctx.needs_input_grad[:4]
        if torch.is_grad_enabled():
            def ref(x_, noise_, strength_, b_):
                return ops.noise_bias_act(x_, noise_, strength_, b_, act=act, alpha=alpha, gain=gain, clamp=clamp)

            dx, dnoise, dstrength, db = _reference_grads(ref, [x, noise, strength, b], needs, dy)
            return dx, dnoise, dstrength, db, None, None, None, None, None
        dz = launch.noise_bias_act_backward(ctx.runner, dy, x, noise, strength, b, act, alpha, gain, clamp)
        dx = dz.to(x.dtype) if needs[0] else None
        db = _sum_to(dz, 1).to(b.dtype) if (b is not None and needs[3]) else None
        dnoise = dstrength = None
        if noise is not None and (needs[1] or needs[2]):
            dz_c = dz.sum(dim=1, keepdim=True, dtype=torch.float32)  # [N, 1, H, W]
            if needs[1]:
                s = strength.float() if strength is not None else 1.0
                dnoise = dz_c * s
                if noise.shape[0] == 1 and dz_c.shape[0] != 1:
                    dnoise = dnoise.sum(dim=0, keepdim=True)
                dnoise = dnoise.to(noise.dtype)
            if needs[2] and strength is not None:
                dstrength = (dz_c * noise.float()).sum().reshape(strength.shape).to(strength.dtype)
        return dx, dnoise, dstrength, db, None, None, None, None, None


def noise_bias_act(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    strength: torch.Tensor | float | None = None,
    b: torch.Tensor | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    *,
    runner: Any = None,
) -> torch.Tensor:
    """CUDA ``ops.noise_bias_act``: fused noise injection + bias + activation."""
    alpha, gain = _resolve_act(act, alpha, gain)
    if x.ndim != 4:
        raise ValueError(f"x: expected shape [N, C, H, W], got {list(x.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise ValueError(f"b: expected shape [{x.shape[1]}] for x of shape {list(x.shape)}, got {list(b.shape)}")
    if noise is not None:
        n, _, h, w = x.shape
        if noise.ndim != 4 or noise.shape[1] != 1 or noise.shape[0] not in (1, n) or tuple(noise.shape[2:]) != (h, w):
            raise ValueError(f"noise: expected shape [{n} or 1, 1, {h}, {w}], got {list(noise.shape)}")
    if strength is not None and not isinstance(strength, torch.Tensor):
        strength = torch.tensor(float(strength), dtype=torch.float32, device=x.device)
    if strength is not None and strength.numel() != 1:
        raise ValueError(f"strength: expected a scalar, got shape {list(strength.shape)}")
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    return _NoiseBiasAct.apply(x, noise, strength, b, act, alpha, gain, clamp, _runner(x, runner))


# --------------------------------------------------------------------------------------------
# upfirdn2d


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, up, down, pad, flip_filter, gain, runner):
        y = launch.upfirdn2d_forward(runner, x, f, up, down, pad, flip_filter, gain)
        ctx.f = f
        ctx.params = (up, down, pad, flip_filter, gain)
        ctx.shapes = (tuple(x.shape[2:]), tuple(y.shape[2:]))
        ctx.runner = runner
        return y

    @staticmethod
    def backward(ctx, dy):
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        up, down, pad, flip_filter, gain = ctx.params
        in_hw, out_hw = ctx.shapes
        f = ctx.f
        if f is None:
            taps = (1, 1)
        elif f.ndim == 1:
            taps = (f.shape[0], f.shape[0])
        else:
            taps = (f.shape[1], f.shape[0])
        up_t, down_t, pad_t = launch.upfirdn2d_adjoint_params(in_hw, out_hw, taps, up, down, pad)
        # The gradient is an upfirdn2d itself, so it is differentiable again (double backward).
        dx = _Upfirdn2d.apply(dy, f, up_t, down_t, pad_t, not flip_filter, gain, ctx.runner)
        return dx, None, None, None, None, None, None, None


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    *,
    runner: Any = None,
) -> torch.Tensor:
    """CUDA ``ops.upfirdn2d`` (same arguments and output)."""
    if x.ndim != 4:
        raise ValueError(f"x: expected shape [N, C, H, W], got {list(x.shape)}")
    upx, upy = ops._pair(up, "up")
    downx, downy = ops._pair(down, "down")
    pad = ops._padding4(padding)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    if f is not None and f.ndim not in (1, 2):
        raise ValueError(f"f: expected a 1-D or 2-D filter, got shape {list(f.shape)}")
    if f is not None and f.requires_grad and torch.is_grad_enabled():
        raise ValueError("f: the CUDA upfirdn2d gives no filter gradient; use the reference for a learned filter")
    return _Upfirdn2d.apply(x, f, (upx, upy), (downx, downy), pad, bool(flip_filter), float(gain), _runner(x, runner))


# --------------------------------------------------------------------------------------------
# modulation_coefficients


class _ModulationCoefficients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, styles, eps, runner):
        d = launch.modulation_coefficients_forward(runner, weight, styles, eps)
        ctx.save_for_backward(weight, styles, d)
        ctx.eps = eps
        return d

    @staticmethod
    def backward(ctx, dd):
        weight, styles, d = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():
            def ref(w_, s_):
                return ops.modulation_coefficients(w_, s_, True, ctx.eps)

            dw, ds = _reference_grads(ref, [weight, styles], needs, dd)
            return dw, ds, None, None
        # d = (q + eps)^-1/2 with q[n, o] = sum_i s[n, i]^2 wsq[o, i]: dq = -d^3 / 2 * dd.
        g = dd.float() * d.float().pow(3) * -0.5  # [N, O]
        dw = ds = None
        if needs[0]:
            dw = 2 * weight.float() * (g.t() @ styles.float().square())[:, :, None, None]
            dw = dw.to(weight.dtype)
        if needs[1]:
            wsq = weight.float().square().sum(dim=[2, 3])  # [O, I]
            ds = (2 * styles.float() * (g @ wsq)).to(styles.dtype)
        return dw, ds, None, None


def modulation_coefficients(
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    eps: float = 1e-8,
    *,
    runner: Any = None,
) -> torch.Tensor | None:
    """CUDA ``ops.modulation_coefficients``: ``[N, O]`` demodulation coefficients (``None`` if not demodulating)."""
    if not demodulate:
        return None
    if weight.ndim != 4 or styles.ndim != 2 or styles.shape[1] != weight.shape[1]:
        raise ValueError(f"weight [O, I, kh, kw] and styles [N, I] expected, got {list(weight.shape)} and {list(styles.shape)}")
    return _ModulationCoefficients.apply(weight, styles, float(eps), _runner(weight, runner))


IMPLEMENTATIONS = {
    "bias_act": bias_act,
    "noise_bias_act": noise_bias_act,
    "upfirdn2d": upfirdn2d,
    "modulation_coefficients": modulation_coefficients,
}
