"""Launchers: turn tensors into kernel arguments and run the kernels of ``kernels.cu``.

Two layers, so that everything except the GPU itself can be tested on a CPU:

* **Planners** (``bias_act_forward``, ``upfirdn2d_forward``, ...): check and make inputs contiguous,
  allocate outputs with PyTorch (so the caching allocator owns them), and build the argument tuple
  of one kernel (device pointers from ``tensor.data_ptr()``, sizes, scalars). They hand it to a
  *runner*.
* **Runners**: ``run(kernel_name, work_items, args)``. ``PyCudaRunner`` launches on the GPU with
  PyCUDA. The test suite has a CPU runner that calls the same kernels compiled with ``g++`` from the
  same ``kernels.cu`` (``DOMRAND_CPU_EMULATION``), which checks the planners and the kernel
  arithmetic against the reference ops without a GPU.

Context and stream ordering (``PyCudaRunner``)
----------------------------------------------
* Context: PyTorch uses each device's *primary* context. The runner retains the same primary
  context (``pycuda.driver.Device(i).retain_primary_context()``) and pushes it around each module
  load and launch, so kernels see PyTorch's allocations and PyTorch's current context is untouched.
* Stream: kernels must run after the PyTorch work that produced their inputs and before the work
  that consumes their outputs, with no host synchronization. When PyTorch's current stream is the
  legacy default stream (``torch.cuda.current_stream().cuda_stream == 0``, the usual case) the
  kernel is launched on that same stream (PyCUDA ``stream=None`` is the NULL stream), so ordering is
  simply program order. PyCUDA cannot wrap a foreign stream handle, so when the current stream is
  another one (inside ``with torch.cuda.stream(s)``), the runner launches on its own PyCUDA stream
  bracketed by events: that stream waits for the current stream before the kernel, and the current
  stream waits for it after (``torch.cuda.ExternalStream`` + ``wait_stream``). Outputs are allocated
  on, and inputs are kept alive by, the current stream, which is ordered after the kernel, so the
  caching allocator cannot reuse their memory too early.

STATUS: the planners and kernels are tested on CPU through emulation; ``PyCudaRunner`` has NOT
been run on a GPU yet (see docs/cuda.md).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Protocol, Sequence

import torch

# Activation codes shared with kernels.cu (DR_ACT_*).
ACT_CODES: dict[str, int] = {
    "linear": 0,
    "relu": 1,
    "lrelu": 2,
    "tanh": 3,
    "sigmoid": 4,
    "elu": 5,
    "selu": 6,
    "softplus": 7,
    "swish": 8,
}

# Kernel dtypes: torch dtype -> name suffix in kernels.cu.
DTYPE_SUFFIX: dict[torch.dtype, str] = {torch.float32: "f32", torch.float16: "f16"}

# Argument types of each kernel, one character per argument (struct codes as PyCUDA's
# Function.prepare takes them): P pointer, q int64, i int32, f float32. Keep in sync with the
# DR_EXPORT_ALL block of kernels.cu.
SIGNATURES: dict[str, str] = {
    "bias_act_fwd": "PPPqqqifff",
    "bias_act_bwd": "PPPPqqqifff",
    "noise_bias_act_fwd": "PPPPPqqqqifff",
    "noise_bias_act_bwd": "PPPPPPqqqqifff",
    "upfirdn2d": "PPPqiiiiiiiiiiii",
    "weight_sq": "PPqi",
    "demod_coefs": "PPPqqqf",
}

KERNEL_NAMES: tuple[str, ...] = tuple(f"{k}_{s}" for k in SIGNATURES for s in DTYPE_SUFFIX.values())

BLOCK_SIZE = 256  # threads per block
MAX_BLOCKS = 65535  # grid-stride loops cover the rest


class Runner(Protocol):
    def run(self, kernel: str, work_items: int, args: Sequence[Any]) -> None:
        """Launch ``kernel`` (full name, with dtype suffix) over ``work_items`` threads."""


def kernel_name(base: str, dtype: torch.dtype) -> str:
    if dtype not in DTYPE_SUFFIX:
        raise TypeError(f"{base}: no CUDA kernel for dtype {dtype}; supported: float32, float16")
    return f"{base}_{DTYPE_SUFFIX[dtype]}"


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else int(t.data_ptr())


def _clamp_arg(clamp: float | None) -> float:
    return -1.0 if clamp is None or clamp < 0 else float(clamp)


# --------------------------------------------------------------------------------------------
# Planners


def bias_act_forward(runner: Runner, x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str,
                     alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    """``clamp(act(x + b) * gain)`` with resolved ``alpha``/``gain``; ``b`` is ``[x.shape[dim]]``."""
    x = x.contiguous()
    b = None if b is None else b.to(x.dtype).contiguous()
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    channels, inner = _channels_inner(x, dim)
    n = x.numel()
    if n:
        runner.run(kernel_name("bias_act_fwd", x.dtype), n,
                   (_ptr(x), _ptr(b), _ptr(y), n, channels, inner, ACT_CODES[act], alpha, gain, _clamp_arg(clamp)))
    return y


def bias_act_backward(runner: Runner, dy: torch.Tensor, x: torch.Tensor, b: torch.Tensor | None, dim: int,
                      act: str, alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    """Gradient with respect to ``x`` (the bias gradient is its sum over all but ``dim``)."""
    x = x.contiguous()
    dy = dy.to(x.dtype).contiguous()
    b = None if b is None else b.to(x.dtype).contiguous()
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    channels, inner = _channels_inner(x, dim)
    n = x.numel()
    if n:
        runner.run(kernel_name("bias_act_bwd", x.dtype), n,
                   (_ptr(dy), _ptr(x), _ptr(b), _ptr(dx), n, channels, inner, ACT_CODES[act], alpha, gain,
                    _clamp_arg(clamp)))
    return dx


def _channels_inner(x: torch.Tensor, dim: int) -> tuple[int, int]:
    if x.ndim == 0:
        return 1, 1
    dim = dim % x.ndim
    return int(x.shape[dim]), int(math.prod(x.shape[dim + 1:]))


def _noise_args(x: torch.Tensor, noise: torch.Tensor | None, strength: torch.Tensor | None):
    """Noise ``[N|1, 1, H, W]`` and strength (float32 scalar on the device) as kernel inputs."""
    n, c, h, w = x.shape
    if noise is None:
        return None, None, 0
    noise = noise.to(x.dtype).contiguous()
    if strength is None:
        strength = torch.ones([], dtype=torch.float32, device=x.device)
    strength = strength.detach().to(device=x.device, dtype=torch.float32).reshape([]).contiguous()
    stride = 0 if noise.shape[0] == 1 else h * w
    return noise, strength, stride


def noise_bias_act_forward(runner: Runner, x: torch.Tensor, noise: torch.Tensor | None,
                           strength: torch.Tensor | None, b: torch.Tensor | None, act: str, alpha: float,
                           gain: float, clamp: float | None) -> torch.Tensor:
    """``clamp(act(x + noise * strength + b) * gain)``; x ``[N, C, H, W]``, noise ``[N|1, 1, H, W]``."""
    x = x.contiguous()
    b = None if b is None else b.to(x.dtype).contiguous()
    noise, strength, stride = _noise_args(x, noise, strength)
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    n, c, h, w = x.shape
    if x.numel():
        runner.run(kernel_name("noise_bias_act_fwd", x.dtype), x.numel(),
                   (_ptr(x), _ptr(noise), _ptr(strength), _ptr(b), _ptr(y), x.numel(), c, h * w, stride,
                    ACT_CODES[act], alpha, gain, _clamp_arg(clamp)))
    return y


def noise_bias_act_backward(runner: Runner, dy: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None,
                            strength: torch.Tensor | None, b: torch.Tensor | None, act: str, alpha: float,
                            gain: float, clamp: float | None) -> torch.Tensor:
    """Gradient with respect to the pre-activation ``x + noise * strength + b`` (= gradient of x)."""
    x = x.contiguous()
    dy = dy.to(x.dtype).contiguous()
    b = None if b is None else b.to(x.dtype).contiguous()
    noise, strength, stride = _noise_args(x, noise, strength)
    dz = torch.empty_like(x, memory_format=torch.contiguous_format)
    n, c, h, w = x.shape
    if x.numel():
        runner.run(kernel_name("noise_bias_act_bwd", x.dtype), x.numel(),
                   (_ptr(dy), _ptr(x), _ptr(noise), _ptr(strength), _ptr(b), _ptr(dz), x.numel(), c, h * w,
                    stride, ACT_CODES[act], alpha, gain, _clamp_arg(clamp)))
    return dz


def upfirdn2d_output_size(h: int, w: int, fh: int, fw: int, up: tuple[int, int], down: tuple[int, int],
                          pad: tuple[int, int, int, int]) -> tuple[int, int]:
    """Output ``(OH, OW)`` of upfirdn2d for an ``[.., h, w]`` input and an ``fh x fw`` filter."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    oh = (h * upy + py0 + py1 - fh) // downy + 1
    ow = (w * upx + px0 + px1 - fw) // downx + 1
    return oh, ow


def correlation_filter(f: torch.Tensor | None, flip_filter: bool, gain: float, device) -> torch.Tensor:
    """The 2-D float32 correlation kernel ``g [fh, fw]`` the upfirdn2d kernel applies.

    A 1-D (separable) filter becomes its outer product; ``flip_filter=False`` (true convolution)
    flips it; ``gain`` is folded in.
    """
    if f is None:
        f = torch.ones([1], dtype=torch.float32, device=device)
    f = f.detach().to(device=device, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if not flip_filter:
        f = f.flip([0, 1])
    return (f * gain).contiguous()


def upfirdn2d_forward(runner: Runner, x: torch.Tensor, f: torch.Tensor | None, up: tuple[int, int],
                      down: tuple[int, int], pad: tuple[int, int, int, int], flip_filter: bool,
                      gain: float) -> torch.Tensor:
    """upfirdn2d of ``x [N, C, H, W]``; ``up``/``down`` are ``(x, y)``, ``pad`` ``(px0, px1, py0, py1)``."""
    x = x.contiguous()
    g = correlation_filter(f, flip_filter, gain, x.device)
    fh, fw = g.shape
    n, c, h, w = x.shape
    oh, ow = upfirdn2d_output_size(h, w, fh, fw, up, down, pad)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"upfirdn2d: empty output {oh}x{ow} for input {h}x{w}, filter {fh}x{fw}, "
                         f"up={up}, down={down}, padding={pad}")
    y = torch.empty([n, c, oh, ow], dtype=x.dtype, device=x.device)
    if y.numel():
        runner.run(kernel_name("upfirdn2d", x.dtype), y.numel(),
                   (_ptr(x), _ptr(g), _ptr(y), n * c, h, w, oh, ow, up[0], up[1], down[0], down[1],
                    pad[0], pad[2], fw, fh))
    return y


def upfirdn2d_adjoint_params(in_hw: tuple[int, int], out_hw: tuple[int, int], taps: tuple[int, int],
                             up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]):
    """Parameters of the upfirdn2d that computes the gradient of another one.

    The gradient of ``upfirdn2d(x, f, up, down, pad, flip)`` is
    ``upfirdn2d(dy, f, up=down, down=up, pad=pad', flip=not flip, same gain)`` with
    ``pad' = (fw - 1 - px0, W*upx - OW*downx + px0, fh - 1 - py0, H*upy - OH*downy + py0)``.
    Returns ``(up', down', pad')``.
    """
    h, w = in_hw
    oh, ow = out_hw
    fw, fh = taps
    upx, upy = up
    downx, downy = down
    px0, _, py0, _ = pad
    pad_t = (fw - 1 - px0, w * upx - ow * downx + px0, fh - 1 - py0, h * upy - oh * downy + py0)
    return (downx, downy), (upx, upy), pad_t


def modulation_coefficients_forward(runner: Runner, weight: torch.Tensor, styles: torch.Tensor,
                                    eps: float) -> torch.Tensor:
    """``d [N, O] = rsqrt(styles^2 @ sum_k(weight^2).T + eps)``; weight ``[O, I, kh, kw]``, styles ``[N, I]``."""
    dtype = torch.promote_types(weight.dtype, styles.dtype)
    weight = weight.detach().to(dtype).contiguous()
    styles = styles.detach().to(dtype).contiguous()
    o, i = weight.shape[:2]
    k = int(math.prod(weight.shape[2:]))
    n = styles.shape[0]
    wsq = torch.empty([o, i], dtype=torch.float32, device=weight.device)
    d = torch.empty([n, o], dtype=dtype, device=weight.device)
    if o * i:
        runner.run(kernel_name("weight_sq", dtype), o * i, (_ptr(weight), _ptr(wsq), o * i, k))
    if n * o:
        runner.run(kernel_name("demod_coefs", dtype), n * o, (_ptr(styles), _ptr(wsq), _ptr(d), n, o, i, eps))
    return d


# --------------------------------------------------------------------------------------------
# The GPU runner


class PyCudaRunner:
    """Launch kernels from a loaded PyCUDA module on one device (see the module docstring).

    ``module`` is a ``pycuda.driver.Module`` loaded in ``context`` (the device's primary context).
    Validated on an H200 (pytest -m gpu, docs/cuda.md).
    """

    def __init__(self, device_index: int, module: Any, context: Any, drv: Any):
        self.device_index = device_index
        self._module = module
        self._context = context
        self._drv = drv
        self._functions: dict[str, Any] = {}
        self._side_stream: Any = None
        self._lock = threading.Lock()

    def _function(self, kernel: str) -> Any:
        fn = self._functions.get(kernel)
        if fn is None:
            base = kernel.rsplit("_", 1)[0]
            fn = self._module.get_function(kernel)
            fn.prepare(SIGNATURES[base])
            self._functions[kernel] = fn
        return fn

    def run(self, kernel: str, work_items: int, args: Sequence[Any]) -> None:
        grid = (max(1, min(-(-work_items // BLOCK_SIZE), MAX_BLOCKS)), 1)
        block = (BLOCK_SIZE, 1, 1)
        current = torch.cuda.current_stream(self.device_index)
        with self._lock:
            self._context.push()
            try:
                fn = self._function(kernel)
                if current.cuda_stream == 0:
                    # PyTorch works on the legacy default stream: launch on it too.
                    fn.prepared_call(grid, block, *args)
                    return
                if self._side_stream is None:
                    self._side_stream = self._drv.Stream()
                side = torch.cuda.ExternalStream(self._side_stream.handle, device=self.device_index)
                side.wait_stream(current)  # kernel after the work that produced its inputs
                fn.prepared_async_call(grid, block, self._side_stream, *args)
                current.wait_stream(side)  # later PyTorch work after the kernel
            finally:
                self._drv.Context.pop()
