"""Checkpoints: safetensors weights + JSON config in the file's metadata. No pickle anywhere.

A network file holds every parameter and buffer of one network; its metadata holds
``domrand_format`` (the format version), ``class`` (the network class), ``config`` (JSON the
class rebuilds itself from) and ``extra`` (free JSON, e.g. kimg or a pairing hash).
``save_network`` writes atomically; ``load_network`` rebuilds the network from the config and loads
weights with strict key and shape checks. Anything wrong raises ``CheckpointError`` naming the file.

Integrity (format version 2): every file carries ``checksum``, a SHA-256 over all its metadata
(class, architecture config, extra) and every tensor's name, dtype, shape and bytes; it is verified
on every load, before any JSON is parsed or any network built. Version-1 files (no checksum) still
load; a checksum found in one is verified too. Before a network is built its stored config is
checked against bounds (``checkpoint_bounds``) and against the number of parameters in the file,
so a tampered config cannot ask for a huge allocation.

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

from domrand import checkpoint_bounds
from domrand.utils import atomic_write_bytes

FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")  # "1": written before checksums; verified when it carries one
CHECKSUM_KEY = "checksum"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save zip archive


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format version, or does not fit."""


_NETWORKS: dict[str, Callable[[dict[str, Any]], torch.nn.Module]] = {}
# factory -> bounds check of its config (built-in networks only; returns a parameter lower bound)
_BOUNDED: dict[str, tuple[Callable[..., Any], Callable[[Any], int]]] = {}


def register_network(cls: type) -> type:
    """Let ``load_network`` rebuild ``cls`` (it must define ``export_config`` and
    ``from_exported_config``). Usable as a class decorator."""
    _NETWORKS[cls.__name__] = cls.from_exported_config
    check = checkpoint_bounds.CHECKS.get(cls.__name__)
    if check is not None and cls.__module__.startswith("domrand.generator."):
        _BOUNDED[cls.__name__] = (cls.from_exported_config, check)
    return cls


def _state_for_saving(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (expanded buffers, tied weights)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _tensor_bytes(t: torch.Tensor) -> Any:
    """The raw bytes of a tensor (any dtype, 0-d included) as a numpy uint8 view."""
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


def content_checksum(meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` over every metadata entry but the checksum itself and every tensor's
    name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(meta):
        if key != CHECKSUM_KEY:
            h.update(f"meta\0{key}\0{meta[key]}\0".encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"tensor\0{key}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    return "sha256:" + h.hexdigest()


def _write(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write ``tensors`` with ``meta`` plus its checksum, atomically."""
    state = _state_for_saving(tensors)
    meta = dict(meta, domrand_format=FORMAT_VERSION)
    meta[CHECKSUM_KEY] = content_checksum(meta, state)
    atomic_write_bytes(path, safetensors_save(state, metadata=meta))


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``tensors`` + JSON ``metadata`` to a safetensors file atomically (with a checksum)."""
    _write(path, tensors, {"json": json.dumps(metadata)})


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


def _check_header(path: Path) -> None:
    """Refuse a header length beyond the file or the format's limit before anything is read."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): only {size} bytes")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): its header length {n} exceeds "
            f"the file ({size} bytes) or the {MAX_HEADER_BYTES}-byte limit"
        )
    if head[8:9] != b"{":
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): the header is not JSON")


def _verify_checksum(path: Path, meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    version = meta.get("domrand_format")
    stored = meta.get(CHECKSUM_KEY)
    if stored is None:
        if version == "1":
            return  # written before checksums existed
        raise CheckpointError(f"{path}: metadata key {CHECKSUM_KEY!r} is missing; format {version} files carry a 'sha256:<hex>' checksum")
    if stored != content_checksum(meta, tensors):
        raise CheckpointError(
            f"{path}: checksum mismatch: the file's weights or metadata were altered or corrupted after it was "
            "written (metadata key 'checksum' must equal the SHA-256 of its content); re-create or re-download it"
        )


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
    _check_header(path)
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {msg}") from None
    version = meta.get("domrand_format")
    if version not in READABLE_VERSIONS:
        shown = version if version is None or len(str(version)) <= 20 else str(version)[:20] + "..."
        raise CheckpointError(
            f"{path}: checkpoint format version {shown!r} is not supported (metadata key 'domrand_format'; this "
            f"domrand reads versions {', '.join(READABLE_VERSIONS)})"
        )
    _verify_checksum(path, meta, tensors)
    return meta, tensors


def _json_meta(path: Path | str, meta: dict[str, str], key: str, default: str | None = None) -> Any:
    """Parse metadata entry ``key`` as JSON; a clear ``CheckpointError`` when missing or invalid."""
    text = meta.get(key, default)
    if text is None:
        raise CheckpointError(f"{path}: metadata key {key!r} is missing; accepted: a JSON object")
    try:
        return json.loads(text)
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError, oversized integers, depth
        detail = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:120]
        raise CheckpointError(f"{path}: metadata key {key!r} is not valid JSON ({detail}); accepted: a JSON object") from None


def _json_object(path: Path | str, meta: dict[str, str], key: str, default: str | None = None) -> dict[str, Any]:
    value = _json_meta(path, meta, key, default)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: metadata key {key!r} holds a JSON {type(value).__name__}; accepted: a JSON object")
    return value


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by ``save_tensors``: ``(tensors, metadata)``."""
    path = Path(path)
    meta, tensors = _open_checked(path)
    return tensors, _json_object(path, meta, "json", "{}")


def save_network(path: str | os.PathLike, net: torch.nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write ``net``'s parameters and buffers with its config to ``path`` (atomic)."""
    if not hasattr(net, "export_config"):
        raise TypeError(f"{type(net).__name__} has no export_config(); it cannot be checkpointed")
    meta = {
        "class": type(net).__name__,
        "config": json.dumps(net.export_config()),
        "extra": json.dumps(extra or {}),
    }
    _write(path, net.state_dict(), meta)


def read_network_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"class", "config", "extra"}`` of a network file, without building the network."""
    path = Path(path)
    meta, _ = _open_checked(path)
    return {"class": _class_name(path, meta), "config": _json_object(path, meta, "config"), "extra": _json_object(path, meta, "extra", "{}")}


def _class_name(path: Path, meta: dict[str, str]) -> str:
    name = meta.get("class")
    if name is None:
        raise CheckpointError(f"{path}: not a domrand network checkpoint (metadata key 'class' is missing; accepted: a network class name)")
    return name


def _check_bounds(cls_name: str, config: dict[str, Any], tensors: dict[str, torch.Tensor], where: Any) -> None:
    """Bounds of a built-in network's config, and its implied size against the file, before building."""
    factory, check = _BOUNDED.get(cls_name, (None, None))
    if check is None or _NETWORKS.get(cls_name) != factory:
        return
    try:
        at_least = check(config)
    except checkpoint_bounds.ConfigBoundsError as exc:
        raise CheckpointError(f"{where}: {cls_name} {exc}") from None
    have = sum(int(t.numel()) for t in tensors.values())
    if at_least > have:
        raise CheckpointError(
            f"{where}: the stored {cls_name} config implies at least {at_least} parameters but the file holds {have}; "
            "config and weights do not belong together (refused before building the network)"
        )


def build_network(
    cls_name: str, config: dict[str, Any], tensors: dict[str, torch.Tensor], where: str | os.PathLike
) -> torch.nn.Module:
    """Rebuild registered network ``cls_name`` from its exported ``config`` and load ``tensors``
    with strict key and shape checks. ``where`` names the source in error messages."""
    if not isinstance(cls_name, str) or cls_name not in _NETWORKS:
        shown = repr(cls_name)[:60]
        raise CheckpointError(
            f"{where}: unknown network class {shown}; accepted: {', '.join(sorted(_NETWORKS))} "
            "(networks register themselves when their module is imported; domrand.generator imports the built-in ones)"
        )
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: the stored {cls_name} config is a JSON {type(config).__name__}; accepted: a JSON object")
    _check_bounds(cls_name, config, tensors, where)
    try:
        net = _NETWORKS[cls_name](config)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError, ZeroDivisionError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{where}: cannot rebuild {cls_name} from its stored config: {msg}") from None
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
    bad = [f"{k}: file {tensors[k].dtype} vs network {v.dtype}" for k, v in own.items() if tensors[k].dtype != v.dtype]
    if bad:
        raise CheckpointError(f"{where}: dtype mismatch: " + "; ".join(bad[:5]))
    net.load_state_dict(tensors, strict=True)
    return net


def load_network(
    path: str | os.PathLike, expected_class: str | type | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Rebuild a network from its file; strict key and shape checks. Returns it in eval mode."""
    path = Path(path)
    meta, tensors = _open_checked(path)
    cls_name = _class_name(path, meta)
    if isinstance(expected_class, type):
        expected_class = expected_class.__name__
    if expected_class is not None and cls_name != expected_class:
        raise CheckpointError(f"{path}: holds a {cls_name[:60]}, expected a {expected_class}")
    config = _json_object(path, meta, "config")
    extra = _json_object(path, meta, "extra", "{}")
    net = build_network(cls_name, config, tensors, path)
    net.extra = extra  # type: ignore[attr-defined]
    return net.to(device).eval()


def file_checksum(path: str | os.PathLike) -> str | None:
    """The verified ``checksum`` a network/tensor file carries (None for a version-1 file without one)."""
    meta, _ = _open_checked(Path(path))
    return meta.get(CHECKSUM_KEY)


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex, 16 chars) over named tensors in key order (names and bytes)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(_tensor_bytes(tensors[key]))
    return h.hexdigest()[:16]


def weights_hash(net: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 chars) over a network's parameters and buffers, in key order."""
    return tensors_hash(net.state_dict())
