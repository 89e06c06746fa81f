"""First-use check of each CUDA kernel against its PyTorch reference.

Before an op's kernel serves a real call on a device, ``check_op`` runs it once on small inputs
(forward, and backward into every differentiable input) next to the reference op, and compares.
The dispatcher (``dispatch.Backend.verified``) keeps the verdict per device and op: a kernel that
disagrees is reported once, with the figures, and the reference runs from then on. This keeps a
kernel that is wrong on some GPU, compiler or driver from silently changing what a user trains.

The inputs are a few hundred elements, float32, so a check costs milliseconds once per process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch

# A kernel passes when every compared tensor satisfies |got - want| <= ATOL + RTOL * |want|.
RTOL = 1e-3
ATOL = 1e-4


@dataclass
class CheckResult:
    """Outcome of one op's check: the worst error per compared tensor and whether all passed."""

    op: str
    device: str
    errors: dict[str, float] = field(default_factory=dict)  # name -> max |got - want| / (ATOL + RTOL |want|)
    failure: str | None = None  # an exception raised by the kernel path, if any

    @property
    def ok(self) -> bool:
        return self.failure is None and all(e <= 1.0 for e in self.errors.values())

    def describe(self) -> str:
        """One line of figures, e.g. ``forward 3.1e+02x tolerance, grad x 1.0e+00x``."""
        if self.failure is not None:
            return f"raised {self.failure}"
        parts = [f"{name} {err:.2g}x tolerance" for name, err in self.errors.items()]
        return ", ".join(parts) + f" (tolerance {ATOL:g} + {RTOL:g}*|reference|)"


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / (ATOL + RTOL * |want|); inf where shapes differ or values are not finite."""
    if got.shape != want.shape:
        return float("inf")
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return float(((got - want).abs() / (ATOL + RTOL * want.abs())).max()) if want.numel() else 0.0


def _inputs(op: str, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Small fixed inputs for ``op``: (tensors, keyword options). Seeded, so every check is alike."""
    gen = torch.Generator().manual_seed(2024)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(device)

    if op == "bias_act":
        return {"x": randn(2, 8, 5, 7, scale=2.0), "b": randn(8)}, {"act": "lrelu", "clamp": 1.5}
    if op == "upfirdn2d":
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        f = (f[:, None] * f[None, :] / 64.0).to(device)
        return {"x": randn(2, 3, 9, 7)}, {"f": f, "up": 2, "down": 1, "padding": [2, 1, 1, 2], "gain": 4.0}
    if op == "noise_bias_act":
        tensors = {"x": randn(2, 4, 8, 8), "noise": randn(2, 1, 8, 8), "strength": torch.tensor(0.4, device=device),
                   "b": randn(4)}
        return tensors, {"act": "lrelu", "clamp": 256.0}
    if op == "modulation_coefficients":
        return {"weight": randn(6, 4, 3, 3), "styles": randn(2, 4, scale=0.5) + 1.0}, {}
    raise ValueError(f"no self-check defined for op {op!r}")


def _call(op: str, fn: Callable, tensors: dict[str, Any], options: dict[str, Any]) -> torch.Tensor:
    if op == "bias_act":
        return fn(tensors["x"], tensors["b"], **options)
    if op == "upfirdn2d":
        opts = dict(options)
        return fn(tensors["x"], opts.pop("f"), **opts)
    if op == "noise_bias_act":
        return fn(tensors["x"], tensors["noise"], tensors["strength"], tensors["b"], **options)
    return fn(tensors["weight"], tensors["styles"])


def _run(op: str, fn: Callable, inputs: dict[str, Any], options: dict[str, Any],
         grad_out: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Forward ``fn`` on fresh leaf copies of ``inputs``, then backward with ``grad_out``."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    with torch.enable_grad():
        y = _call(op, fn, leaves, options)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(y) if grad_out is None else grad_out
        grads = torch.autograd.grad(y, list(leaves.values()), dy, allow_unused=True)
    return y.detach(), {k: g for k, g in zip(leaves, grads) if g is not None}, dy


def check_op(
    op: str,
    kernel: Callable,  # the kernel implementation, same signature as the op
    reference: Callable,  # the PyTorch reference op
    device: torch.device,
    reference_scope: Callable[[], ContextManager] = contextlib.nullcontext,  # forces the reference path
) -> CheckResult:
    """Run ``kernel`` and ``reference`` on small inputs and compare.

    Compares the forward output and the gradient of every input tensor. The reference's forward
    and backward run inside ``reference_scope()`` (the dispatcher passes ``reference_only``, so no
    kernel can leak into the reference). Never raises for a misbehaving kernel: an exception on
    the kernel path becomes ``CheckResult.failure``.
    """
    result = CheckResult(op=op, device=str(device))
    inputs, options = _inputs(op, device)
    with reference_scope():
        want_y, want_grads, dy = _run(op, reference, inputs, options, None)
    try:
        got_y, got_grads, _ = _run(op, kernel, inputs, options, dy)
    except Exception as exc:  # a kernel that cannot even run counts as failed, with the reason
        result.failure = f"{type(exc).__name__}: {exc}"
        return result
    result.errors["forward"] = _relative_error(got_y, want_y)
    for name, want in want_grads.items():
        got = got_grads.get(name)
        result.errors[f"grad {name}"] = float("inf") if got is None else _relative_error(got, want)
    return result
