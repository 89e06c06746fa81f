"""Randomizer bundles: a generator, its inverter, their configs and the hash that pairs them.

Two layouts, both loaded by ``load_bundle`` (and ``StyleRandomizer.from_bundle``):

* a folder::

      bundle/
        generator.safetensors   # checkpoint.save_network(G)
        inverter.safetensors    # checkpoint.save_network(E)
        bundle.json             # format, generator_hash, inverter summary, randomizer defaults

* one ``.safetensors`` file holding both networks (keys prefixed ``G.`` and ``E.``) with the same
  information in its metadata (``checkpoint.save_tensors``).

Loading recomputes ``weights_hash(G)`` and refuses a bundle whose generator does not match the
stored hash or the inverter's own ``generator_hash``: an inverter only understands the generator it
was trained for. Every network is verified on every load: each file's own checksum (config and
tensors), the checksums and ``weights_hash`` values ``bundle.json`` records for both networks, and
``bundle.json``'s own ``checksum`` (over everything but ``about``, the free-form provenance). Its
structure and the randomizer options are validated; anything wrong is a ``CheckpointError`` naming
the file, the key and the accepted form. Bundles written before checksums existed still load (their
``weights_hash`` records are checked).

``domrand bundle --generator RUN_OR_FILE --inverter RUN_OR_FILE --out DIR`` makes one from training
runs (a generator run directory holds ``G_ema.safetensors``, an inverter run ``E.safetensors``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domrand import checkpoint
from domrand.checkpoint import CheckpointError, load_network, weights_hash
from domrand.generator.nn import networks as _networks
from domrand.generator.nn import student as _student  # noqa: F401  (register with checkpoint)
from domrand.generator.nn.inverter import cached_weights_hash, check_pairing
from domrand.generator.train.runs import resolve_run_file
from domrand.randomizer_options import MODELS, NOISE_OPTIONS
from domrand.utils import atomic_write_text, resolve_device

BUNDLE_FORMAT = 1
GENERATOR_FILE = "generator.safetensors"
INVERTER_FILE = "inverter.safetensors"
INFO_FILE = "bundle.json"
STUDENT_FILE = "student.safetensors"  # optional: the distilled student (``domrand distill``)
STUDENT_CLASS = "StudentNet"
INVERTER_CLASS = "Inverter"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "bundle"
# file names written by the training code in a run directory
MAX_INFO_BYTES = 10_000_000  # a bundle.json beyond this is refused unread
_HEX16 = "a 16-character hexadecimal string"


@dataclass
class Bundle:
    """A loaded bundle: networks on the device, the stored info and randomizer defaults."""

    G: torch.nn.Module
    E: torch.nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    student: torch.nn.Module | None = None  # the distilled student, when the bundle carries one


def default_bundle_path() -> Path:
    """The bundle packaged with domrand (``domrand/assets/bundle/``); a clear error when absent."""
    if (DEFAULT_BUNDLE / INFO_FILE).is_file():
        return DEFAULT_BUNDLE
    raise FileNotFoundError(
        f"no bundle is installed with domrand (looked in {DEFAULT_BUNDLE}); pass a bundle path, or make one "
        "with 'domrand bundle --generator GEN_RUN --inverter INV_RUN --out DIR' after 'domrand train-generator' "
        "and 'domrand train-inverter'"
    )


def _summary(E: torch.nn.Module) -> dict[str, Any]:
    return {
        "class": type(E).__name__,
        "keep_resolution": getattr(E, "keep_resolution", None),
        "config": E.export_config() if hasattr(E, "export_config") else None,
        "weights_hash": weights_hash(E),
    }


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _option_forms() -> dict[str, tuple[Any, str]]:
    """Randomizer option -> (test, accepted form in words)."""
    return {
        "keep_resolution": (lambda v: _is_int(v) and 4 <= v <= 1024 and not v & (v - 1), "a power of two in [4, 1024]"),
        "psi": (lambda v: _is_num(v) and -10 <= v <= 10, "a finite number in [-10, 10]"),
        "mix": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
        "noise": (lambda v: isinstance(v, str) and v in NOISE_OPTIONS, f"one of {', '.join(NOISE_OPTIONS)}"),
        "refine_steps": (lambda v: _is_int(v) and 0 <= v <= 10000, "an integer in [0, 10000]"),
        "seed": (lambda v: v is None or (_is_int(v) and 0 <= v < 2**64), "null or an integer in [0, 2**64)"),
        "max_batch": (lambda v: _is_int(v) and 1 <= v <= 65536, "an integer in [1, 65536]"),
        "dtype": (lambda v: isinstance(v, str) and v in ("auto", "float32", "float16", "bfloat16"),
                  "one of auto, float32, float16, bfloat16"),
        "drift_steps": (lambda v: _is_int(v) and 0 <= v <= 1_000_000, "an integer in [0, 1000000]"),
        "fit": (lambda v: isinstance(v, str) and v in ("pad", "crop", "stretch"), "one of pad, crop, stretch"),
        "model": (lambda v: isinstance(v, str) and v in MODELS, f"one of {', '.join(MODELS)}"),
    }


def validate_options(options: Any, where: str, error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """Check stored randomizer defaults: a JSON object of known keys with valid values.

    Raises ``error`` naming ``where``, the key and the accepted form."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise error(f"{where}: key 'randomizer' holds a {type(options).__name__}; accepted: a JSON object of randomizer options")
    forms = _option_forms()
    out = dict(options)
    if isinstance(out.get("dtype"), torch.dtype):
        out["dtype"] = str(out["dtype"]).replace("torch.", "")
    for key, value in out.items():
        if key not in forms:
            raise error(f"{where}: unknown randomizer option {str(key)[:40]!r}; accepted keys: {', '.join(forms)}")
        test, form = forms[key]
        if not test(value):
            raise error(f"{where}: randomizer option {key!r} = {repr(value)[:40]} is invalid; accepted: {form}")
    return out


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    return validate_options(options, "bundle options", ValueError)


def _check_keep_resolution(options: dict[str, Any], G: torch.nn.Module, E: torch.nn.Module) -> None:
    keep = options.get("keep_resolution")
    if keep is None:
        return
    lo = int(getattr(E, "keep_resolution", None) or 4)
    hi = int(G.img_resolution)
    if not lo <= keep <= hi:
        raise ValueError(
            f"bundle options: keep_resolution {keep} does not fit this pair; accepted: a power of two in [{lo}, {hi}] "
            "(at least the inverter's keep_resolution, at most the generator's resolution)"
        )


def _json_safe(value: Any) -> Any:
    """A copy with NaN/Infinity floats replaced by None, so it can be written as standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def info_checksum(info: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of a bundle's info without its ``checksum`` and ``about`` keys."""
    body = {k: v for k, v in info.items() if k not in ("checksum", "about")}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _check_pair(G: torch.nn.Module, E: torch.nn.Module, where: str, stored: str | None = None) -> str:
    """``check_pairing`` as a ``CheckpointError`` naming ``where``, after checking ``G`` against the
    hash the bundle records (``stored``); returns the generator's weights hash."""
    have = cached_weights_hash(G)  # check_pairing below reuses it
    if stored is not None and stored != have:
        raise CheckpointError(
            f"{where}: the generator's weights hash is {have}, but the bundle records {stored} "
            "(the generator file was replaced or is corrupt)"
        )
    try:
        return check_pairing(G, E, require_hash=True)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def save_bundle(
    out: str | os.PathLike,
    G: torch.nn.Module,
    E: torch.nn.Module,
    options: dict[str, Any] | None = None,
    single_file: bool | None = None,
    about: dict[str, Any] | None = None,
    student: torch.nn.Module | None = None,
    student_about: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle to ``out`` (a folder, or one file when ``out`` ends in ``.safetensors``).

    options: randomizer defaults stored with the bundle (keys of ``randomizer.OPTION_NAMES``).
    about: free-form provenance stored as ``info["about"]`` (how it was trained, its measured scores,
    e.g. ``{"evaluation": <eval-inverter JSON>, "note": "..."}``).
    student: a ``StudentNet`` distilled from this G and E (folder bundles only), stored as
    ``student.safetensors`` with ``student_about`` (its training and scores) in ``info["student"]``.
    Refuses a pair whose hashes do not match.
    """
    out = Path(out)
    if single_file is None:
        single_file = out.suffix == ".safetensors"
    ghash = _check_pair(G, E, str(out))
    options = _check_options(options)
    _check_keep_resolution(options, G, E)
    info: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "generator_hash": ghash,
        "generator": {"class": type(G).__name__, "config": G.export_config(), "resolution": int(G.img_resolution)},
        "inverter": _summary(E),
        "randomizer": options,
    }
    if about:
        info["about"] = _json_safe(about)
    if student is not None and single_file:
        raise ValueError(f"{out}: a student is stored in folder bundles only; pass a folder as the bundle's --out")
    if single_file:
        tensors = {f"G.{k}": v for k, v in G.state_dict().items()}
        tensors.update({f"E.{k}": v for k, v in E.state_dict().items()})
        info["inverter_extra"] = _json_safe({**(getattr(E, "extra", None) or {}), "generator_hash": ghash})
        info["checksum"] = info_checksum(info)
        checkpoint.save_tensors(out, tensors, {"domrand_bundle": info})
        return out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_network(out / GENERATOR_FILE, G)
    e_extra = dict(getattr(E, "extra", None) or {})
    e_extra.setdefault("generator_hash", ghash)
    checkpoint.save_network(out / INVERTER_FILE, E, extra=e_extra)
    info["generator"]["checksum"] = checkpoint.file_checksum(out / GENERATOR_FILE)
    info["inverter"]["checksum"] = checkpoint.file_checksum(out / INVERTER_FILE)
    if student is not None:
        checkpoint.save_network(out / STUDENT_FILE, student, extra={"generator_hash": ghash})
        info["student"] = {"class": type(student).__name__, "config": student.export_config(),
                           "checksum": checkpoint.file_checksum(out / STUDENT_FILE), "generator_hash": ghash,
                           "about": _json_safe(student_about or {})}  # fmt: skip
    elif (out / STUDENT_FILE).exists():  # a student of an older teacher must not stay beside a new one
        (out / STUDENT_FILE).unlink()
    info["checksum"] = info_checksum(info)
    atomic_write_text(out / INFO_FILE, json.dumps(info, indent=2, allow_nan=False) + "\n")
    return out


def load_bundle(path: str | os.PathLike, device: str | torch.device = "auto") -> Bundle:
    """Load a bundle folder or single file; verifies every network and config, and the pairing."""
    path = Path(path)
    dev = resolve_device(device)
    if path.is_dir():
        G, E, info, where = _load_folder(path)
    elif path.is_file():
        G, E, info, where = _load_single_file(path)
    else:
        raise CheckpointError(f"{path}: bundle not found (expected a folder or a .safetensors file)")
    _verify_inverter_hash(E, info, where)
    _check_pair(G, E, where, stored=info["generator_hash"])
    student = _load_student(path, info, where) if path.is_dir() and "student" in info else None
    return Bundle(G=G.to(dev).eval(), E=E.to(dev).eval(), info=info, options=dict(info.get("randomizer") or {}), path=path,
                  student=None if student is None else student.to(dev).eval())  # fmt: skip


def add_student(folder: str | os.PathLike, student: torch.nn.Module, about: dict[str, Any] | None = None) -> Path:
    """Put a distilled student into an existing folder bundle in place (its networks stay byte-identical).

    The student must have been distilled from this bundle's generator (``student.extra`` or the
    caller vouches for it through ``about["teacher_generator_hash"]``; checked when given)."""
    folder = Path(folder)
    info = _check_info(_read_info_file(folder / INFO_FILE), str(folder / INFO_FILE))
    teacher = (about or {}).get("teacher_generator_hash")
    if teacher is not None and teacher != info["generator_hash"]:
        raise CheckpointError(f"{folder}: the student was distilled from generator {teacher}, not this bundle's {info['generator_hash']}")
    ghash = info["generator_hash"]
    checkpoint.save_network(folder / STUDENT_FILE, student, extra={"generator_hash": ghash})
    info["student"] = {"class": type(student).__name__, "config": student.export_config(),
                       "checksum": checkpoint.file_checksum(folder / STUDENT_FILE), "generator_hash": ghash,
                       "about": _json_safe(about or {})}  # fmt: skip
    info.pop("checksum", None)
    info["checksum"] = info_checksum(info)
    atomic_write_text(folder / INFO_FILE, json.dumps(info, indent=2, allow_nan=False) + "\n")
    return folder


def _load_student(path: Path, info: dict[str, Any], where: str) -> torch.nn.Module:
    """The bundle's distilled student, verified: its file's checksum and the teacher it was distilled from."""
    part = info["student"]
    if not isinstance(part, dict):
        raise CheckpointError(f"{where}: key 'student' holds a {type(part).__name__}; accepted: a JSON object")
    S = load_network(path / STUDENT_FILE, expected_class=STUDENT_CLASS)
    if part.get("checksum") != checkpoint.file_checksum(path / STUDENT_FILE):
        raise CheckpointError(f"{path / STUDENT_FILE}: its checksum differs from {INFO_FILE} key 'student.checksum'; "
                              "the file was replaced after packaging (re-run 'domrand distill --bundle-out')")  # fmt: skip
    if part.get("generator_hash") != info["generator_hash"]:
        raise CheckpointError(f"{where}: the student was distilled from generator {part.get('generator_hash')!r}, "
                              f"not this bundle's {info['generator_hash']}")  # fmt: skip
    return S


def _read_info_file(info_path: Path) -> Any:
    """Parse ``bundle.json``: size-bounded, UTF-8, valid JSON."""
    size = info_path.stat().st_size
    if size > MAX_INFO_BYTES:
        raise CheckpointError(f"{info_path}: {size} bytes; accepted: a bundle.json of at most {MAX_INFO_BYTES} bytes")
    try:
        return json.loads(info_path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, oversized integers, depth
        detail = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:120]
        raise CheckpointError(f"{info_path}: invalid JSON ({detail}); accepted: a JSON object written by 'domrand bundle'") from None


def _load_folder(path: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any], str]:
    info_path = path / INFO_FILE
    if not info_path.is_file():
        raise CheckpointError(
            f"{path}: not a domrand bundle (no {INFO_FILE}); make one with "
            "'domrand bundle --generator RUN --inverter RUN --out DIR'"
        )
    info = _check_info(_read_info_file(info_path), str(info_path))
    G = load_network(path / GENERATOR_FILE, expected_class="Generator")
    E = load_network(path / INVERTER_FILE, expected_class=INVERTER_CLASS)
    for key, file in (("generator", GENERATOR_FILE), ("inverter", INVERTER_FILE)):
        want = info[key].get("checksum")
        if want is not None and checkpoint.file_checksum(path / file) != want:
            raise CheckpointError(
                f"{path / file}: its checksum differs from {INFO_FILE} key '{key}.checksum'; the file was replaced after "
                "packaging (re-run 'domrand bundle')"
            )
    return G, E, info, str(info_path)


def _load_single_file(path: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any], str]:
    tensors, meta = checkpoint.load_tensors(path)
    info = meta.get("domrand_bundle")
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: a safetensors file but not a domrand bundle (no 'domrand_bundle' metadata)")
    info = _check_info(info, str(path))
    g_cls = info["generator"].get("class", "Generator")
    e_cls = info["inverter"].get("class")
    if g_cls != "Generator" or e_cls != INVERTER_CLASS:
        raise CheckpointError(
            f"{path}: holds a {str(g_cls)[:40]} and a {str(e_cls)[:40]} (keys 'generator.class', 'inverter.class'); "
            f"accepted: Generator and {INVERTER_CLASS}"
        )
    for key in ("generator", "inverter"):
        if not isinstance(info[key].get("config"), dict):
            raise CheckpointError(f"{path}: key '{key}.config' is missing or not a JSON object; accepted: the network's exported config")
    extra = info.get("inverter_extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: key 'inverter_extra' holds a {type(extra).__name__}; accepted: a JSON object")
    G = checkpoint.build_network(g_cls, info["generator"]["config"], _strip(tensors, "G."), f"{path} (G.)")
    E = checkpoint.build_network(e_cls, info["inverter"]["config"], _strip(tensors, "E."), f"{path} (E.)")
    E.extra = dict(extra)  # type: ignore[attr-defined]
    G.extra = {}  # type: ignore[attr-defined]
    return G, E, info, str(path)


def _verify_inverter_hash(E: torch.nn.Module, info: dict[str, Any], where: str) -> None:
    want = info["inverter"].get("weights_hash")
    if want is not None and weights_hash(E) != want:
        raise CheckpointError(
            f"{where}: the inverter's weights hash is {weights_hash(E)}, but key 'inverter.weights_hash' records {want} "
            "(the inverter file was replaced or is corrupt)"
        )


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_format(info: dict[str, Any], path: Path | str) -> None:
    fmt = info.get("format")
    if fmt != BUNDLE_FORMAT or isinstance(fmt, bool):
        raise CheckpointError(
            f"{path}: bundle format {repr(fmt)[:40]} is not supported (key 'format'; this domrand reads format {BUNDLE_FORMAT})"
        )
    for key in ("generator_hash", "generator", "inverter"):
        if key not in info:
            raise CheckpointError(f"{path}: bundle info lacks {key!r}; accepted: the keys written by 'domrand bundle'")


def _is_hex(value: Any, n: int) -> bool:
    return isinstance(value, str) and len(value) == n and all(c in "0123456789abcdef" for c in value)


def _check_info(info: Any, where: str) -> dict[str, Any]:
    """Validate the structure of a bundle's info; returns it with checked randomizer options."""
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: holds a JSON {type(info).__name__}; accepted: a JSON object written by 'domrand bundle'")
    _check_format(info, where)
    if not _is_hex(info["generator_hash"], 16):
        raise CheckpointError(f"{where}: key 'generator_hash' = {repr(info['generator_hash'])[:40]} is invalid; accepted: {_HEX16}")
    for key in ("generator", "inverter"):
        part = info[key]
        if not isinstance(part, dict):
            raise CheckpointError(f"{where}: key {key!r} holds a {type(part).__name__}; accepted: a JSON object")
        checksum = part.get("checksum")
        if checksum is not None and not (isinstance(checksum, str) and checksum.startswith("sha256:") and _is_hex(checksum[7:], 64)):
            raise CheckpointError(f"{where}: key '{key}.checksum' = {repr(checksum)[:40]} is invalid; accepted: 'sha256:' + 64 hex digits")
    wh = info["inverter"].get("weights_hash")
    if wh is not None and not _is_hex(wh, 16):
        raise CheckpointError(f"{where}: key 'inverter.weights_hash' = {repr(wh)[:40]} is invalid; accepted: {_HEX16}")
    _verify_info_checksum(info, where)
    info = dict(info)
    info["randomizer"] = validate_options(info.get("randomizer"), where)
    return info


def _verify_info_checksum(info: dict[str, Any], where: str) -> None:
    stored = info.get("checksum")
    if stored is None:
        return  # written before bundle checksums existed
    try:
        have = info_checksum(info)
    except (ValueError, TypeError):
        have = None
    if stored != have:
        raise CheckpointError(
            f"{where}: checksum mismatch: key 'checksum' does not match the bundle's settings (edited or corrupted "
            "after packaging); re-run 'domrand bundle' to change its options"
        )


def make_bundle(
    generator: str | os.PathLike,
    inverter: str | os.PathLike,
    out: str | os.PathLike,
    options: dict[str, Any] | None = None,
    about: dict[str, Any] | None = None,
) -> Path:
    """Build a bundle from a generator run/file and an inverter run/file (CPU; checks the pairing)."""
    g_file, e_file = resolve_run_file(generator, "generator"), resolve_run_file(inverter, "inverter")
    try:  # each file is verified against its own checksum and bounds
        G = load_network(g_file, expected_class="Generator")
        E = load_network(e_file, expected_class=INVERTER_CLASS)
    except CheckpointError as exc:
        raise CheckpointError(f"refusing to package: {exc}") from None
    try:
        _check_pair(G, E, f"{e_file} + {g_file}")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. Pass the generator run this inverter was trained against.") from None
    return save_bundle(out, G, E, options=options, about=about)
