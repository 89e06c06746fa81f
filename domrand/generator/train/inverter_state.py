"""An inverter trainer's state on disk: Adam, counters, every rank's RNG stream and the data setup
as tensors + JSON, and the checkpoint folder (E, train_state) written atomically and read back.

The functions take the ``inverter.InverterTrainer`` (``tr``) and read or set its attributes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import torch

from domrand import checkpoint
from domrand import distributed as dist_utils
from domrand.generator.train import runs
from domrand.utils import derive_seed

E_FILE = runs.E_FILE
STATE_FILE = "train_state.safetensors"
INVERTER_CHECKPOINT_FILES = runs.INVERTER_CHECKPOINT_FILES
INIT_LOCK = threading.Lock()  # ranks that are threads of one process (tests) share torch's global RNG


def inverter_state(tr: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adam state, counters and every rank's RNG state (``rng_state`` for rank 0,
    ``rng_state/rank<r>`` for the others). With several ranks a collective: every rank calls
    it at the same step and the result is complete on rank 0."""
    tensors, meta = checkpoint.optimizer_state_to_tensors(tr.opt, "adam")
    states = dist_utils.gather_by_reduce(tr.rng.get_state(), tr.reduce, tr.rank, tr.world_size)
    for r, st in enumerate(states):
        tensors["rng_state" if r == 0 else f"rng_state/rank{r}"] = st.to(torch.uint8).clone()
    meta.update({"step": tr.step, "images_seen": tr.images_seen, "seed": tr.seed, "world_size": tr.world_size})
    if getattr(tr, "data_setup", None) is not None:
        meta["data_setup"] = tr.data_setup  # resolved paths + content keys, checked on resume
    return tensors, meta


def load_inverter_state(tr: Any, ckpt_dir: str | os.PathLike) -> None:
    """Restore E, Adam, counters and this rank's RNG stream from a checkpoint dir."""
    ckpt_dir = Path(ckpt_dir)
    with INIT_LOCK:  # building the network draws from torch's global RNG
        E = checkpoint.load_network(ckpt_dir / E_FILE, "Inverter", tr.device)
    E.check_pairing(tr.G)
    tr.E.load_state_dict(E.state_dict())
    tr.E.train()
    tensors, meta = checkpoint.load_tensors(ckpt_dir / STATE_FILE)
    checkpoint.load_optimizer_state(tr.opt, tensors, meta, "adam")
    tr.step = int(meta["step"])
    tr.images_seen = int(meta["images_seen"])
    saved_ws = int(meta.get("world_size", 1))
    if saved_ws == tr.world_size:
        tr.rng.set_state(tensors["rng_state" if tr.rank == 0 else f"rng_state/rank{tr.rank}"])
        tr.resumed_rng = "restored"
    else:  # the old ranks' streams do not map onto the new ranks: a function of the run and the step
        seed = int(meta.get("seed", tr.seed))
        tr.rng.manual_seed(derive_seed(seed, tr.rank, tr.step, tr.world_size, 1))
        tr.resumed_rng = "rederived"
    tr.saved_world_size = saved_ws


def save_inverter_checkpoint(
    tr: Any, extra: dict[str, Any] | None = None, state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
) -> Path:
    """Write a checkpoint (rank 0). With several ranks pass ``state`` from ``inverter_state``,
    which every rank must call at the same step."""
    assert tr.run_dir is not None
    info = {"kimg": tr.kimg, "step": tr.step, "generator_source": tr.generator_source}
    info.update(extra or {})
    tensors, meta = inverter_state(tr) if state is None else state

    def write(tmp: Path) -> None:
        checkpoint.save_network(tmp / E_FILE, tr.E, info)
        checkpoint.save_tensors(tmp / STATE_FILE, tensors, meta)

    d = runs.write_checkpoint_dir(tr.run_dir, tr.kimg, write, required=INVERTER_CHECKPOINT_FILES)
    checkpoint.save_network(tr.run_dir / E_FILE, tr.E, info)
    runs.prune_to_newest(tr.run_dir, tr.tc.keep_snapshots, INVERTER_CHECKPOINT_FILES)
    return d
