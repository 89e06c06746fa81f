"""A StyleGAN2 trainer's state on disk: everything besides the networks flattened into tensors +
JSON (optimizers, RNG streams of every rank, numpy/python/torch RNGs, path-length mean, ADA), and
the checkpoint folder (G, G_ema, D, train_state) written atomically and read back exactly.

The functions take the ``stylegan.Trainer`` (``tr``) and read or set its attributes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domrand import checkpoint as ckpt
from domrand import distributed as dist_utils
from domrand.config import to_dict
from domrand.generator.train import runs
from domrand.utils import derive_seed

STATE_VERSION = 1  # of train_state.safetensors's layout


def trainer_state(tr: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything besides the networks, flattened into tensors + JSON (no pickle).

    With several ranks this is a collective (every rank must call it at the same step): it
    gathers each rank's stream states (``gen/<name>`` for rank 0, ``gen/rank<r>/<name>`` for
    the others) and sums the ADA statistics not yet used, so the result is complete on rank 0.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {
        "version": STATE_VERSION,
        "step": tr.step,
        "nimg": tr.nimg,
        "seed": tr.seed,
        "world_size": tr.world_size,
        "batch": tr.batch,
        "data_key": tr.data_key,
        "data": tr.data_source,
        "config": to_dict(tr.cfg),
    }
    for name, opt in (("G_opt", tr.G_opt), ("D_opt", tr.D_opt)):
        opt_tensors, meta[name] = ckpt.optimizer_state_to_tensors(opt, name)
        tensors.update(opt_tensors)
    for name, gen in tr.gens.items():
        for r, st in enumerate(dist_utils.gather_by_reduce(gen.get_state(), tr.reduce, tr.rank, tr.world_size)):
            tensors[f"gen/{name}" if r == 0 else f"gen/rank{r}/{name}"] = st.to(torch.uint8).clone()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    np_state = np.random.get_state()
    tensors["rng/numpy_keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    meta["numpy_rng"] = [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])]
    py_state = random.getstate()
    meta["python_rng"] = [py_state[0], list(py_state[1]), py_state[2]]
    tensors["pl_mean"] = tr.pl.pl_mean.detach()
    tensors["grid_z"] = tr.grid_z
    if tr.augment is not None:
        tensors["ada_p"] = tr.augment.p.detach()
        ada = tr.ada.state_dict()
        if tr._distributed():  # the statistics since the last adjustment, summed over ranks
            local = tr.ada._stats if tr.ada._stats is not None else torch.zeros(2, dtype=torch.float64)
            ada["stats"] = [float(v) for v in tr.reduce(local.to(torch.float64)).tolist()]
        meta["ada"] = ada
    return tensors, meta


def load_trainer_state(tr: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if meta.get("version") != STATE_VERSION:
        raise ckpt.CheckpointError(f"train_state version {meta.get('version')!r} is not {STATE_VERSION}")
    tr.step, tr.nimg = int(meta["step"]), int(meta["nimg"])
    tr.seed = int(meta.get("seed", tr.seed))  # the run's seed (fixes the SWD real subset)
    for name, opt in (("G_opt", tr.G_opt), ("D_opt", tr.D_opt)):
        ckpt.load_optimizer_state(opt, tensors, meta[name], name)
    saved_ws = int(meta.get("world_size", 1))
    if saved_ws == tr.world_size:
        for name, gen in tr.gens.items():
            gen.set_state(tensors[f"gen/{name}" if tr.rank == 0 else f"gen/rank{tr.rank}/{name}"])
        tr.resumed_streams = "restored"
    else:  # another number of ranks: fresh streams, a deterministic function of the run and the step
        for i, (name, gen) in enumerate(tr.gens.items()):
            gen.manual_seed(derive_seed(tr.seed, tr.rank, i, tr.step, tr.world_size, 1))
        tr.resumed_streams = "rederived"
    torch.set_rng_state(tensors["rng/torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    kind, pos, has_gauss, cached = meta["numpy_rng"]
    np.random.set_state((kind, tensors["rng/numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    tr.pl.pl_mean.copy_(tensors["pl_mean"].to(tr.device))
    tr.grid_z = tensors["grid_z"].clone()
    if tr.augment is not None:
        if "ada_p" in tensors:
            tr.augment.p.copy_(tensors["ada_p"].to(tr.device))
        if "ada" in meta:
            tr.ada.load_state_dict(meta["ada"])
            if tr.rank != 0:  # rank 0 carries the summed statistics; the others start from zero
                tr.ada._stats = None


def save_trainer_checkpoint(tr: Any, run_dir: str | Path, swd_mean: float | None, state: tuple[dict, dict] | None = None) -> Path:
    """Write ``checkpoints/kimg-<kimg>/`` (atomic dir) for the current state.

    With several ranks, pass ``state`` from ``trainer_state`` (a collective all ranks ran).
    """
    extra = {"kimg": tr.kimg, "step": tr.step, "swd": swd_mean}
    res, alpha = tr.schedule()
    if tr.t.progressive:
        extra.update(active_resolution=res, alpha=alpha)
    tensors, meta = trainer_state(tr) if state is None else state

    def write(tmp: Path) -> None:
        ckpt.save_network(tmp / "G.safetensors", tr.G, extra)
        ckpt.save_network(tmp / "G_ema.safetensors", tr.G_ema, extra)
        ckpt.save_network(tmp / "D.safetensors", tr.D, extra)
        ckpt.save_tensors(tmp / "train_state.safetensors", tensors, meta)

    return runs.write_checkpoint_dir(run_dir, tr.kimg, write)


def load_trainer_checkpoint(tr: Any, ckpt_dir: str | Path) -> dict[str, Any]:
    """Restore networks and training state from a checkpoint dir; returns its metadata."""
    d = Path(ckpt_dir)
    for name, net in (("G", tr.G), ("G_ema", tr.G_ema), ("D", tr.D)):
        loaded = ckpt.load_network(d / f"{name}.safetensors", type(net).__name__)
        try:
            net.load_state_dict(loaded.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ckpt.CheckpointError(f"{d / name}.safetensors does not fit this config: {exc}") from None
    tensors, meta = ckpt.load_tensors(d / "train_state.safetensors")
    if int(meta.get("batch", tr.batch)) != tr.batch:
        raise ValueError(
            f"{d}: checkpoint was trained with global batch {meta.get('batch')}; resume with the same global "
            f"batch (got {tr.batch}); the number of ranks may change"
        )
    load_trainer_state(tr, tensors, meta)
    return meta
