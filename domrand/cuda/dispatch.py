"""Which implementation of an op runs: the CUDA kernels or the PyTorch reference.

``maybe_cuda(op_name, *tensors)`` is what ``domrand.generator.nn.ops`` calls at the top of each op. It
returns the CUDA implementation (same signature as the reference op) when it should run for these
tensors, else ``None`` and the caller runs its reference code:

* CPU (and other non-CUDA) tensors always take the reference path. The whole check costs well under
  a microsecond: one dictionary lookup for the raw ``DOMRAND_OPS`` value, a comparison with the
  cached one, and ``tensor.is_cuda``.
* ``DOMRAND_OPS`` (read on every call, parsed only when its raw value changes):
  ``auto`` (default) uses the kernels for CUDA tensors when they are available, ``torch`` always
  uses the reference, ``cuda`` requires the kernels and raises ``CudaUnavailableError`` with the
  reason when they are unavailable (even for CPU tensors, so a misconfigured machine is noticed).
  With ``cuda``, cases no kernel covers (float64/bfloat16 tensors, a filter that requires grad,
  CPU tensors) still run the reference.
* The kernels are built once per device, on first use. A failed build is reported once (a
  ``KernelBuildWarning`` with the compiler log, also logged) and never retried in this process;
  the reference runs instead.
* Before an op's kernel serves its first call on a device, it runs once against the reference on
  a small input, forward and backward (``selfcheck.check_op``). A kernel that disagrees is
  reported once (a ``KernelMismatchWarning`` with the figures, also logged) and the reference
  runs for that op on that device from then on; under ``DOMRAND_OPS=cuda`` the op raises
  ``CudaUnavailableError`` with the figures instead.
* Inside ``reference_only()`` (used by the autograd wrappers to compute double-backward through the
  reference) every op takes the reference path.

Importing this module imports neither PyCUDA nor the kernels; ``available()`` does, lazily.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from domrand.cuda import autograd, cache, launch, selfcheck
from domrand.generator.nn import ops

ENV_VAR = "DOMRAND_OPS"
MODES = ("auto", "torch", "cuda")
OPS = ("bias_act", "upfirdn2d", "noise_bias_act", "modulation_coefficients")
KERNEL_DTYPES = (torch.float32, torch.float16)
# Device types besides CUDA that take the kernel path. Only the CPU emulation tests set this (to run
# the emulated kernels on CPU tensors through the real dispatch path); leave it empty otherwise.
EXTRA_KERNEL_DEVICE_TYPES: tuple[str, ...] = ()

log = logging.getLogger("domrand.cuda")


class CudaUnavailableError(RuntimeError):
    """``DOMRAND_OPS=cuda`` was asked for but the CUDA kernels cannot be used (reason included)."""


class KernelBuildWarning(RuntimeWarning):
    """The CUDA kernels failed to build; the PyTorch reference ops are used instead."""


class KernelMismatchWarning(RuntimeWarning):
    """A CUDA kernel disagreed with its reference at first use; the reference is used instead."""


# --------------------------------------------------------------------------------------------
# DOMRAND_OPS


def parse_mode(raw: str | None) -> str:
    """``DOMRAND_OPS`` value -> ``"auto" | "torch" | "cuda"`` (unset or empty means ``auto``)."""
    value = (raw or "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV_VAR}={raw!r} is not valid; accepted values: {', '.join(MODES)}")
    return value


_mode_raw: object = None  # raw env value the cached mode was parsed from
_mode: str = "auto"


try:
    _ENV_KEY = os.environ.encodekey(ENV_VAR)  # type: ignore[attr-defined]
except Exception:  # pragma: no cover - not CPython's os.environ
    _ENV_KEY = None


def _raw_env() -> object:
    """The raw ``DOMRAND_OPS`` value, cheaply. ``os.environ.get`` costs about a microsecond when the
    variable is unset (it raises and catches KeyError), so read ``os.environ``'s backing dict."""
    data = getattr(os.environ, "_data", None)
    if data is not None and _ENV_KEY is not None:
        return data.get(_ENV_KEY)
    return os.environ.get(ENV_VAR)


def current_mode() -> str:
    """The ``DOMRAND_OPS`` mode, re-parsed only when the variable's raw value changes."""
    global _mode_raw, _mode
    raw = _raw_env()
    if raw != _mode_raw:
        value = os.environ.get(ENV_VAR)
        mode = parse_mode(value)  # raises on an invalid value; nothing cached then
        _mode_raw, _mode = raw, mode
    return _mode


# --------------------------------------------------------------------------------------------
# reference_only()

reference_only = ops.reference_only  # within this block (on this thread) every op uses the PyTorch reference


# --------------------------------------------------------------------------------------------
# Requirements and the per-device build


def check_requirements() -> str | None:
    """Why the kernels cannot be used on this machine at all (``None``: worth trying a build).

    Imports PyCUDA (lazily, here only). Lists every missing piece, separated by ``"; "``.
    """
    reasons = []
    if not torch.cuda.is_available():
        built = torch.version.cuda
        reasons.append(
            "PyTorch sees no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__} was built {'with CUDA ' + built if built else 'without CUDA (CPU-only)'})"
        )
    try:
        importlib.import_module("pycuda.driver")
    except Exception as exc:  # ImportError, or a PyCUDA that cannot load libcuda
        if isinstance(exc, ModuleNotFoundError) and exc.name in ("pycuda", "pycuda.driver"):
            reasons.append("PyCUDA is not installed (pip install \"domrand[cuda]\"; it needs the CUDA toolkit)")
        else:
            reasons.append(f"PyCUDA failed to import: {type(exc).__name__}: {exc}")

    if cache.find_nvcc() is None:
        reasons.append("nvcc (CUDA toolkit) was not found on PATH, CUDA_HOME or CUDA_PATH")
    return "; ".join(reasons) if reasons else None


def kernel_source() -> str:
    """The text of the packaged ``kernels.cu``."""
    return (Path(__file__).with_name("kernels.cu")).read_text(encoding="utf-8")


def build_runner(device_index: int) -> Any:
    """Compile (or load from the cache) the kernels for one device; return a ``PyCudaRunner``.

    Raises ``cache.CompileError`` (with the compiler log) or another exception on failure.
    Validated on an H200 (docs/cuda.md).
    """
    import pycuda.driver as drv

    torch.cuda.init()
    with torch.cuda.device(device_index):
        torch.empty(1, device=f"cuda:{device_index}")  # make sure PyTorch's primary context exists
    drv.init()
    context = drv.Device(device_index).retain_primary_context()
    major, minor = torch.cuda.get_device_capability(device_index)
    spec = cache.BuildSpec(
        source=kernel_source(),
        arch=f"sm_{major}{minor}",
        cuda_version=cache.nvcc_version(),
        options=cache.DEFAULT_OPTIONS,
    )
    context.push()
    try:
        module = cache.KernelCache(cache.nvcc_compile, drv.module_from_buffer).get(spec)
    finally:
        drv.Context.pop()
    return launch.PyCudaRunner(device_index, module, context, drv)


class Backend:
    """Availability and per-device kernel builds, with the failure remembered and reported once."""

    def __init__(
        self,
        requirements: Callable[[], str | None] = check_requirements,  # () -> reason or None
        build: Callable[[int], Any] = build_runner,  # device index -> runner; raises on failure
        verify: Callable[[str, torch.device, Any], str | None] | None = None,  # (op, device, runner) -> mismatch
    ):
        self._requirements = requirements
        self._build = build
        self._verify = verify  # None: _run_selfcheck
        self._requirements_checked = False
        self._requirements_reason: str | None = None
        self._runners: dict[int, Any] = {}
        self._failures: dict[int, str] = {}
        self._lock = threading.RLock()
        self._verdicts: dict[tuple[str, str], str | None] = {}  # (device, op) -> mismatch or None
        self._checking: set[tuple[str, str]] = set()

    def requirements_reason(self) -> str | None:
        if not self._requirements_checked:
            with self._lock:
                if not self._requirements_checked:
                    self._requirements_reason = self._requirements()
                    self._requirements_checked = True
        return self._requirements_reason

    def runner(self, device_index: int) -> Any:
        """The runner for ``cuda:device_index``; builds once. Raises ``CudaUnavailableError``."""
        runner = self._runners.get(device_index)
        if runner is not None:
            return runner
        reason = self.requirements_reason()
        if reason is not None:
            raise CudaUnavailableError(reason)
        with self._lock:
            if device_index in self._failures:
                raise CudaUnavailableError(self._failures[device_index])
            if device_index not in self._runners:
                try:
                    self._runners[device_index] = self._build(device_index)
                except Exception as exc:
                    self._failures[device_index] = self._report_failure(device_index, exc)
                    raise CudaUnavailableError(self._failures[device_index]) from exc
            return self._runners[device_index]

    def reason(self, device_index: int | None = None) -> str | None:
        """Why the kernels cannot run on ``device_index`` (default: the current device), or ``None``."""
        reason = self.requirements_reason()
        if reason is not None:
            return reason
        if device_index is None:
            device_index = torch.cuda.current_device()
        try:
            self.runner(device_index)
        except CudaUnavailableError as exc:
            return str(exc)
        return None

    def verdicts(self) -> dict[tuple[str, str], str | None]:
        """Self-check outcomes so far: ``(device, op) -> None`` (passed) or the mismatch figures."""
        return dict(self._verdicts)

    def mismatch(self, op_name: str, device: torch.device, runner: Any) -> str | None:
        """``None`` if ``op_name``'s kernel agrees with its reference on ``device``, else the figures.

        Checks once per (device, op) with ``selfcheck.check_op``; a mismatch is reported once. While
        a check is running (on this thread) the op counts as unverified, so the check's own calls
        take the reference.
        """
        key = (str(device), op_name)
        if key in self._verdicts:
            return self._verdicts[key]
        with self._lock:
            if key in self._verdicts:
                return self._verdicts[key]
            if key in self._checking:
                return "self-check in progress"
            self._checking.add(key)
            try:
                verify = self._verify if self._verify is not None else _run_selfcheck
                self._verdicts[key] = verify(op_name, device, runner)
            finally:
                self._checking.discard(key)
            return self._verdicts[key]

    @staticmethod
    def _report_failure(device_index: int, exc: Exception) -> str:
        detail = f"{type(exc).__name__}: {exc}"
        reason = f"the CUDA kernel build failed for cuda:{device_index} ({detail})"
        compiler_log = getattr(exc, "log", "") or ""
        command = getattr(exc, "command", "") or ""
        message = f"domrand: {reason}; using the PyTorch reference ops instead (not retried in this process)."
        if command:
            message += f"\ncommand: {command}"
        if compiler_log:
            message += f"\ncompiler log:\n{compiler_log}"
        log.warning("%s", message)
        warnings.warn(message, KernelBuildWarning, stacklevel=4)
        return reason


def _run_selfcheck(op_name: str, device: torch.device, runner: Any) -> str | None:
    """Check one op's kernel against its reference; report and return the figures on a mismatch."""
    kernel = autograd.IMPLEMENTATIONS[op_name]
    reference = getattr(ops, op_name)
    result = selfcheck.check_op(
        op_name,
        lambda *args, **kwargs: kernel(*args, runner=runner, **kwargs),
        reference,
        device,
        reference_scope=reference_only,
    )
    if result.ok:
        log.info("domrand: CUDA kernel %s passed its self-check on %s (%s)", op_name, device, result.describe())
        return None
    figures = result.describe()
    message = (f"domrand: the CUDA kernel for {op_name} disagrees with the PyTorch reference on {device} "
               f"({figures}); using the reference for {op_name} on {device} from now on.")
    log.warning("%s", message)
    warnings.warn(message, KernelMismatchWarning, stacklevel=4)
    return f"the {op_name} kernel failed its self-check on {device}: {figures}"


_backend = Backend()


def get_backend() -> Backend:
    return _backend


def set_backend(backend: Backend | None = None) -> Backend:
    """Replace the process-wide backend (tests; ``None`` makes a fresh default one). Returns the old one."""
    global _backend
    old = _backend
    _backend = backend if backend is not None else Backend()
    return old


def runner_for(device: torch.device) -> Any:
    """The kernel runner for a CUDA device (builds on first use). Raises ``CudaUnavailableError``."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _backend.runner(index)


# --------------------------------------------------------------------------------------------
# maybe_cuda


def _covered(op_name: str, tensors: tuple) -> bool:
    """Whether a kernel covers these tensors (device, dtype, op-specific limits)."""
    x = tensors[0]
    if op_name == "modulation_coefficients":
        dtype = torch.promote_types(tensors[0].dtype, tensors[1].dtype)
    else:
        dtype = x.dtype
    if dtype not in KERNEL_DTYPES:
        return False
    for t in tensors[1:]:
        if t is not None and t.device != x.device:
            return False
    if op_name == "upfirdn2d":
        f = tensors[1] if len(tensors) > 1 else None
        return f is None or (not f.requires_grad and f.ndim in (1, 2))
    if op_name == "noise_bias_act":
        noise = tensors[1] if len(tensors) > 1 else None
        if x.ndim != 4:
            return False
        if noise is not None and (noise.ndim != 4 or noise.shape[1] != 1 or noise.shape[0] not in (1, x.shape[0])
                                  or tuple(noise.shape[2:]) != tuple(x.shape[2:])):
            return False
        strength = tensors[2] if len(tensors) > 2 else None
        return strength is None or not isinstance(strength, torch.Tensor) or strength.numel() == 1
    return True


def maybe_cuda(op_name: str, *tensors: Any) -> Callable | None:
    """The CUDA implementation of ``op_name`` for these tensors, or ``None`` for the reference.

    ``tensors``: the op's tensor arguments, main input first (``None`` allowed after it):
    ``bias_act: (x, b)``, ``upfirdn2d: (x, f)``, ``noise_bias_act: (x, noise, strength, b)``,
    ``modulation_coefficients: (weight, styles)``. The returned callable takes the same arguments
    as the reference op. Raises ``ValueError`` for an invalid ``DOMRAND_OPS`` and
    ``CudaUnavailableError`` when ``DOMRAND_OPS=cuda`` and the kernels are unavailable.
    """
    mode = current_mode()
    x = tensors[0]
    if not x.is_cuda and not (EXTRA_KERNEL_DEVICE_TYPES and x.device.type in EXTRA_KERNEL_DEVICE_TYPES):
        if mode == "cuda":
            reason = _backend.requirements_reason()
            if reason is not None:
                raise CudaUnavailableError(f"{ENV_VAR}=cuda but the CUDA kernels are unavailable: {reason}")
        return None
    if mode == "torch" or ops.reference_only_active():
        return None
    if op_name not in OPS:
        raise ValueError(f"maybe_cuda: unknown op {op_name!r}; known: {', '.join(OPS)}")
    if not _covered(op_name, tensors):
        return None
    try:
        runner = runner_for(x.device)
    except CudaUnavailableError as exc:
        if mode == "cuda":
            raise CudaUnavailableError(f"{ENV_VAR}=cuda but the CUDA kernels are unavailable: {exc}") from None
        return None
    mismatch = _backend.mismatch(op_name, x.device, runner)
    if mismatch is not None:
        if mode == "cuda" and mismatch != "self-check in progress":
            raise CudaUnavailableError(f"{ENV_VAR}=cuda but {mismatch}")
        return None
    return autograd.IMPLEMENTATIONS[op_name]


# Plug in: the ops ask maybe_cuda first; the kernels' autograd wrappers find their runner here
# (looked up at call time, so tests may replace runner_for).
autograd.set_runner_lookup(lambda device: runner_for(device))
ops.register_accelerator(maybe_cuda)
