"""CUDA kernels for the generator's heavy ops, with dispatch to the PyTorch reference.

* ``available()`` / ``unavailable_reason()``: can the kernels run here (CUDA device, PyCUDA, nvcc,
  and a successful build for the current device)?
* ``backend_for(tensor)``: ``"cuda"`` or ``"torch"``, what ``domrand.generator.nn.ops`` would use for
  this tensor under the current ``DOMRAND_OPS``.
* ``dispatch``: ``DOMRAND_OPS=auto|torch|cuda`` and ``maybe_cuda`` (what the ops call);
  ``cache``: on-disk compile cache; ``launch``: PyCUDA launchers; ``autograd``: autograd wrappers;
  ``kernels.cu``: the CUDA C sources.

Importing this package never imports PyCUDA; ``available()`` does, on first call. See docs/cuda.md.
Each kernel is checked against its reference at first use on a device (``selfcheck``); one that
disagrees is reported once and the reference runs instead.
"""

from __future__ import annotations

import torch

from domrand.cuda import dispatch
from domrand.cuda.dispatch import CudaUnavailableError, KernelBuildWarning, KernelMismatchWarning

__all__ = [
    "available",
    "unavailable_reason",
    "backend_for",
    "CudaUnavailableError",
    "KernelBuildWarning",
    "KernelMismatchWarning",
]


def unavailable_reason() -> str | None:
    """Why the CUDA kernels cannot be used on the current device, or ``None`` when they can.

    On a machine with a GPU this builds (or loads from the cache) the kernels on first call.
    """
    return dispatch.get_backend().reason()


def available() -> bool:
    """Whether the CUDA kernels can be used on the current device (see ``unavailable_reason``)."""
    return unavailable_reason() is None


def backend_for(tensor: torch.Tensor) -> str:
    """``"cuda"`` if an op on ``tensor`` would run the CUDA kernels, else ``"torch"``.

    Follows ``DOMRAND_OPS`` (raises like the ops do: ``ValueError`` for an invalid value,
    ``CudaUnavailableError`` for ``cuda`` when the kernels are unavailable).
    """
    return "cuda" if dispatch.maybe_cuda("bias_act", tensor) is not None else "torch"
