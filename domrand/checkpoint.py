"""Checkpoints: safetensors weights + JSON config in the file's metadata. No pickle anywhere.

A network file holds every parameter and buffer of one network; its metadata holds
``domrand_format`` (the format version), ``class`` (the network class), ``config`` (JSON the
class rebuilds itself from) and ``extra`` (free JSON, e.g. kimg or a pairing hash).
``save_network`` writes atomically; ``load_network`` rebuilds the network from the config and loads
weights with strict key and shape checks. Anything wrong raises ``CheckpointError`` naming the file.

``save_tensors`` / ``load_tensors`` store a plain ``{name: tensor}`` dict with JSON metadata the
same way (training state: optimizers, RNG states, counters).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from domrand.utils import atomic_write_bytes

FORMAT_VERSION = "1"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save zip archive


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format version, or does not fit."""


_NETWORKS: dict[str, Callable[[dict[str, Any]], torch.nn.Module]] = {}


def register_network(cls: type) -> type:
    """Let ``load_network`` rebuild ``cls`` (it must define ``export_config`` and
    ``from_exported_config``). Usable as a class decorator."""
    _NETWORKS[cls.__name__] = cls.from_exported_config
    return cls


def _register_builtin() -> None:
    if "Generator" in _NETWORKS:
        return
    from domrand.generator.networks import Discriminator, Generator

    register_network(Generator)
    register_network(Discriminator)
    try:  # the inverter registers itself when its module exists
        import domrand.generator.inverter  # noqa: F401
    except ModuleNotFoundError:
        pass


def _state_for_saving(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (expanded buffers, tied weights)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``tensors`` + JSON ``metadata`` to a safetensors file atomically."""
    meta = {"domrand_format": FORMAT_VERSION, "json": json.dumps(metadata)}
    atomic_write_bytes(path, safetensors_save(_state_for_saving(tensors), metadata=meta))


def optimizer_state_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as ``{"<prefix>/<param idx>/<key>": tensor}`` plus JSON metadata
    (param groups and which keys each parameter has), for ``save_tensors``; no pickle."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    keys: dict[str, list[str]] = {}
    for idx, st in sd["state"].items():
        keys[str(idx)] = sorted(st)
        for key, value in st.items():
            tensors[f"{prefix}/{idx}/{key}"] = torch.as_tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "state_keys": keys}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str) -> None:
    """Restore what ``optimizer_state_to_tensors`` wrote (Adam ``betas`` back to tuples)."""
    state = {int(idx): {k: tensors[f"{prefix}/{idx}/{k}"] for k in keys} for idx, keys in meta["state_keys"].items()}
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with a little-endian u64 header length N, then N bytes of JSON."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 8 + n <= size and head[8:9] == b"{"


def _open_checked(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    pickled = any(head.startswith(m) for m in _PICKLE_MAGIC) and not _looks_like_safetensors(path)
    if pickled or path.suffix in (".pt", ".pth", ".pkl", ".pickle", ".ckpt"):
        raise CheckpointError(
            f"{path}: looks like a pickle / torch.save file; domrand loads only .safetensors checkpoints "
            "(pickle can run arbitrary code and is refused)"
        )
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
    version = meta.get("domrand_format")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this domrand reads version {FORMAT_VERSION})"
        )
    return meta, tensors


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by ``save_tensors``: ``(tensors, metadata)``."""
    path = Path(path)
    meta, tensors = _open_checked(path)
    try:
        return tensors, json.loads(meta.get("json", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON: {exc}") from None


def save_network(path: str | os.PathLike, net: torch.nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write ``net``'s parameters and buffers with its config to ``path`` (atomic)."""
    if not hasattr(net, "export_config"):
        raise TypeError(f"{type(net).__name__} has no export_config(); it cannot be checkpointed")
    meta = {
        "domrand_format": FORMAT_VERSION,
        "class": type(net).__name__,
        "config": json.dumps(net.export_config()),
        "extra": json.dumps(extra or {}),
    }
    atomic_write_bytes(path, safetensors_save(_state_for_saving(net.state_dict()), metadata=meta))


def read_network_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"class", "config", "extra"}`` of a network file, without building the network."""
    path = Path(path)
    meta, _ = _open_checked(path)
    try:
        return {"class": meta["class"], "config": json.loads(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a domrand network checkpoint (metadata {exc!s} missing or invalid)") from None


def build_network(
    cls_name: str, config: dict[str, Any], tensors: dict[str, torch.Tensor], where: str | os.PathLike
) -> torch.nn.Module:
    """Rebuild registered network ``cls_name`` from its exported ``config`` and load ``tensors``
    with strict key and shape checks. ``where`` names the source in error messages."""
    _register_builtin()
    if cls_name not in _NETWORKS:
        raise CheckpointError(f"{where}: unknown network class {cls_name!r}; known: {', '.join(sorted(_NETWORKS))}")
    try:
        net = _NETWORKS[cls_name](config)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild {cls_name} from its stored config: {exc}") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not match a {cls_name} built from the stored config "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"unexpected: {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    bad = [f"{k}: file {list(tensors[k].shape)} vs network {list(v.shape)}" for k, v in own.items() if tensors[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{where}: shape mismatch: " + "; ".join(bad[:5]))
    net.load_state_dict(tensors, strict=True)
    return net


def load_network(
    path: str | os.PathLike, expected_class: str | type | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Rebuild a network from its file; strict key and shape checks. Returns it in eval mode."""
    path = Path(path)
    meta, tensors = _open_checked(path)
    cls_name = meta.get("class")
    if isinstance(expected_class, type):
        expected_class = expected_class.__name__
    if expected_class is not None and cls_name != expected_class:
        raise CheckpointError(f"{path}: holds a {cls_name}, expected a {expected_class}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild {cls_name}: stored config missing or invalid ({exc})") from None
    net = build_network(str(cls_name), config, tensors, path)
    net.extra = json.loads(meta.get("extra", "{}"))  # type: ignore[attr-defined]
    return net.to(device).eval()


def weights_hash(net: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 chars) over a network's parameters and buffers, in key order."""
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
