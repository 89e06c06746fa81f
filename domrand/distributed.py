"""Multi-process training on PyTorch's own distributed engine (``torch.distributed``).

domrand does not launch processes or do its own rendezvous: start the command under
``torchrun`` (``python -m torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each worker, and call :func:`init` in it.

    ctx = distributed.init("auto")      # a no-op context (rank 0 of 1) without torchrun
    try:
        ... ctx.reduce(t) ...           # all-reduce sum (identity when world_size == 1)
    finally:
        ctx.shutdown()

Backend: NCCL when the process trains on CUDA, gloo otherwise (CPU). Device: ``cuda:LOCAL_RANK``
for ``auto``/``cuda`` under torchrun. Every collective here takes CPU or device tensors and
returns a tensor on the input's device (NCCL needs CUDA tensors, so CPU inputs go through the
device and back).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from domrand.utils import resolve_device

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched() -> bool:
    """True when this process is one of several started by torchrun."""
    return env_world_size() > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def choose_backend(device: torch.device) -> str:
    """``nccl`` for CUDA devices (when built with NCCL), ``gloo`` otherwise."""
    if device.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def local_device(device: str | torch.device, local_rank: int) -> torch.device:
    """The device of one worker: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is there."""
    text = str(device)
    if text in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return resolve_device(device)


@dataclass
class Context:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes in the job
    local_rank: int = 0  # rank on this node (picks the GPU)
    device: torch.device = torch.device("cpu")  # this process's training device
    backend: str | None = None  # "nccl" | "gloo" | None (single process)
    owns_group: bool = False  # init() created the process group (shutdown destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        if self.backend == "nccl" and t.device.type != "cuda":
            return t.to(self.device)
        return t

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce **sum** over ranks; returns a new tensor (the input is not changed)."""
        if not self.distributed:
            return tensor.clone()
        buf = self._comm(tensor.detach().clone().contiguous())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(tensor.device)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce mean over ranks."""
        return self.reduce(tensor) / self.world_size

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor (same shape and dtype on all ranks), in rank order."""
        if not self.distributed:
            return [tensor.clone()]
        buf = self._comm(tensor.detach().contiguous())
        out = [torch.empty_like(buf) for _ in range(self.world_size)]
        dist.all_gather(out, buf)
        return [o.to(tensor.device) for o in out]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (picklable Python objects)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def agree(self, ok: bool) -> bool:
        """True on every rank when ``ok`` is true on every rank (a collective)."""
        return agree_with(self.reduce if self.distributed else None, self.world_size, ok)

    def shutdown(self) -> None:
        """Destroy the process group if :func:`init` created it (safe to call twice)."""
        if self.owns_group and is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


Reduce = Callable[[torch.Tensor], torch.Tensor]


def init(device: str | torch.device = "auto", *, timeout_s: float = 1800.0) -> Context:
    """Join the job described by torchrun's environment variables, or return a single-process context.

    ``device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; under torchrun ``auto``/``cuda`` mean
    ``cuda:LOCAL_RANK``. The backend follows the device (NCCL on CUDA, gloo on CPU). Raises
    ``RuntimeError`` with the missing variable's name when the environment is incomplete.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return Context(device=resolve_device(device))
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; launch with torchrun "
            "(python -m torch.distributed.run --nproc_per_node=K -m domrand ...)"
        )
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = local_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = choose_backend(dev)
    owns = False
    if not is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
        owns = True
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend, owns_group=owns)


def from_group(device: str | torch.device = "cpu") -> Context:
    """A context over an already initialized default process group (e.g. tests that spawn ranks)."""
    if not is_initialized():
        return Context(device=resolve_device(device))
    dev = resolve_device(device)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=dev.index or 0, device=dev,
                   backend=dist.get_backend(), owns_group=False)


# --------------------------------------------------------------------------------------------
# Helpers for trainers that receive only ``reduce`` (an all-reduce sum) plus their rank and
# world size; ranks that are threads of one process (tests) pass an in-memory ``reduce``.


def average_gradients(
    parameters: Any, reduce: Reduce | None, world_size: int, *, rank: int = 0, what: str = "model"
) -> None:
    """Average the ``.grad`` of ``parameters`` over ranks in place: one all-reduce of a flat buffer.

    Parameters without a gradient keep ``grad=None`` (so an optimizer skips them as in one
    process); an appended count catches ranks that disagree on which parameters got one. A no-op
    for one rank or without ``reduce``.
    """
    if world_size <= 1 or reduce is None:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    device = grads[0].device if grads else torch.device("cpu")
    flat = torch.cat([g.detach().reshape(-1).float() for g in grads] + [torch.ones(1, device=device)])
    flat = reduce(flat)
    if int(round(float(flat[-1]))) != world_size:
        raise RuntimeError(f"rank {rank}: ranks disagree on which {what} parameters have gradients")
    flat = flat[:-1] / world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g).to(g.dtype))
        offset += n


def gather_by_reduce(t: torch.Tensor, reduce: Reduce | None, rank: int, world_size: int) -> torch.Tensor:
    """Every rank's ``t`` (same shape everywhere) stacked in rank order, ``[world_size, *t.shape]``.

    Built from one all-reduce sum of a zero buffer holding ``t`` in this rank's row (integers are
    carried as int64, so byte tensors such as ``torch.Generator`` states come back exactly).
    """
    if world_size <= 1 or reduce is None:
        return t.unsqueeze(0).clone()
    dtype = torch.float64 if t.is_floating_point() else torch.int64
    buf = torch.zeros((world_size, *t.shape), dtype=dtype)
    buf[rank] = t.detach().cpu().to(dtype)
    return reduce(buf).to(t.dtype)


def mean_over_ranks(value: torch.Tensor, reduce: Reduce | None, world_size: int) -> float:
    """The mean over ranks of a scalar tensor, as a float (itself for one rank or without ``reduce``)."""
    value = value.detach().float()
    if reduce is not None and world_size > 1:
        value = reduce(value) / world_size
    return float(value)


def average_buffers(module: torch.nn.Module, suffix: str, reduce: Reduce | None, world_size: int) -> None:
    """Average in place, over ranks, every buffer of ``module`` whose name ends with ``suffix``."""
    if world_size <= 1 or reduce is None:
        return
    for name, buf in module.named_buffers():
        if name.endswith(suffix):
            buf.copy_(reduce(buf) / world_size)


def mean_floats(values: dict[str, float], reduce: Reduce | None, world_size: int) -> dict[str, float]:
    """The mean over ranks of a dict of scalars (same keys on every rank): one all-reduce."""
    if world_size <= 1 or reduce is None or not values:
        return dict(values)
    keys = sorted(values)
    total = reduce(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
    return {k: float(v) / world_size for k, v in zip(keys, total.tolist())}


def agree_with(reduce: Reduce | None, world_size: int, ok: bool) -> bool:
    """True on every rank when ``ok`` is true on every rank (a collective through ``reduce``)."""
    if world_size <= 1 or reduce is None:
        return bool(ok)
    return float(reduce(torch.tensor([0.0 if ok else 1.0]))) == 0.0


def raise_together(
    fn: Callable[[], Any],
    reduce: Reduce | None,
    world_size: int,
    failed_elsewhere: str,
    catch: tuple[type[BaseException], ...] = (Exception,),
) -> Any:
    """Run ``fn`` on this rank; if it raised (one of ``catch``) on any rank, raise on every rank.

    A collective: the failing rank re-raises its own error, the others raise ``RuntimeError``
    with ``failed_elsewhere``, so no rank is left waiting in the next collective.
    """
    result, error = None, None
    try:
        result = fn()
    except catch as exc:  # re-raised below, after telling the other ranks
        error = exc
    if not agree_with(reduce, world_size, error is None):
        if error is not None:
            raise error
        raise RuntimeError(failed_elsewhere)
    return result
