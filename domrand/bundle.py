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
was trained for.

``domrand bundle --generator RUN_OR_FILE --inverter RUN_OR_FILE --out DIR`` makes one from training
runs (a generator run directory holds ``G_ema.safetensors``, an inverter run ``E.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domrand import checkpoint
from domrand.checkpoint import CheckpointError, load_network, weights_hash
from domrand.utils import atomic_write_text, resolve_device

BUNDLE_FORMAT = 1
GENERATOR_FILE = "generator.safetensors"
INVERTER_FILE = "inverter.safetensors"
INFO_FILE = "bundle.json"
INVERTER_CLASS = "Inverter"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "bundle"
# file names written by the training code in a run directory
RUN_FILES = {"generator": ("G_ema.safetensors", "G_ema"), "inverter": ("E.safetensors", "E")}


@dataclass
class Bundle:
    """A loaded bundle: networks on the device, the stored info and randomizer defaults."""

    G: torch.nn.Module
    E: torch.nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def default_bundle_path() -> Path:
    """The bundle packaged with domrand (``domrand/assets/bundle/``); a clear error when absent."""
    if (DEFAULT_BUNDLE / INFO_FILE).is_file():
        return DEFAULT_BUNDLE
    raise FileNotFoundError(
        f"no bundle is installed with domrand (looked in {DEFAULT_BUNDLE}); pass a bundle path, or make one "
        "with 'domrand bundle --generator GEN_RUN --inverter INV_RUN --out DIR' after 'domrand train-generator' "
        "and 'domrand train-inverter'"
    )


def _inverter_generator_hash(E: torch.nn.Module) -> str | None:
    value = getattr(E, "generator_hash", None)
    if value is None:
        value = (getattr(E, "extra", None) or {}).get("generator_hash")
    return None if value is None else str(value)


def _summary(E: torch.nn.Module) -> dict[str, Any]:
    return {
        "class": type(E).__name__,
        "keep_resolution": getattr(E, "keep_resolution", None),
        "config": E.export_config() if hasattr(E, "export_config") else None,
        "weights_hash": weights_hash(E),
    }


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    from domrand.randomizer import OPTION_NAMES

    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"bundle options: unknown key(s) {unknown}; valid: {', '.join(OPTION_NAMES)}")
    if isinstance(options.get("dtype"), torch.dtype):
        options["dtype"] = str(options["dtype"]).replace("torch.", "")
    return options


def _check_pair(G: torch.nn.Module, E: torch.nn.Module, where: str, stored: str | None = None) -> str:
    have = weights_hash(G)
    if stored is not None and stored != have:
        raise CheckpointError(
            f"{where}: the generator's weights hash is {have}, but the bundle records {stored} "
            "(the generator file was replaced or is corrupt)"
        )
    want = _inverter_generator_hash(E)
    if want is None:
        raise CheckpointError(f"{where}: the inverter records no generator_hash, so it cannot be paired with a generator")
    if want != have:
        raise CheckpointError(
            f"{where}: inverter/generator mismatch: the inverter was trained for generator {want}, "
            f"but the generator's weights hash is {have}"
        )
    return have


def save_bundle(
    out: str | os.PathLike,
    G: torch.nn.Module,
    E: torch.nn.Module,
    options: dict[str, Any] | None = None,
    single_file: bool | None = None,
    about: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle to ``out`` (a folder, or one file when ``out`` ends in ``.safetensors``).

    options: randomizer defaults stored with the bundle (keys of ``randomizer.OPTION_NAMES``).
    about: free-form provenance stored as ``info["about"]`` (how it was trained, its measured scores,
    e.g. ``{"evaluation": <eval-inverter JSON>, "note": "..."}``).
    Refuses a pair whose hashes do not match.
    """
    out = Path(out)
    if single_file is None:
        single_file = out.suffix == ".safetensors"
    ghash = _check_pair(G, E, str(out))
    info = {
        "format": BUNDLE_FORMAT,
        "generator_hash": ghash,
        "generator": {"class": type(G).__name__, "config": G.export_config(), "resolution": int(G.img_resolution)},
        "inverter": _summary(E),
        "randomizer": _check_options(options),
    }
    if about:
        info["about"] = json.loads(json.dumps(about))  # JSON-safe copy; fails early on odd values
    if single_file:
        tensors = {f"G.{k}": v for k, v in G.state_dict().items()}
        tensors.update({f"E.{k}": v for k, v in E.state_dict().items()})
        info["inverter_extra"] = {**(getattr(E, "extra", None) or {}), "generator_hash": ghash}
        checkpoint.save_tensors(out, tensors, {"domrand_bundle": info})
        return out
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_network(out / GENERATOR_FILE, G)
    e_extra = dict(getattr(E, "extra", None) or {})
    e_extra.setdefault("generator_hash", ghash)
    checkpoint.save_network(out / INVERTER_FILE, E, extra=e_extra)
    atomic_write_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return out


def load_bundle(path: str | os.PathLike, device: str | torch.device = "auto") -> Bundle:
    """Load a bundle folder or single file; checks the format and the generator/inverter pairing."""
    path = Path(path)
    dev = resolve_device(device)
    if path.is_dir():
        info_path = path / INFO_FILE
        if not info_path.is_file():
            raise CheckpointError(
                f"{path}: not a domrand bundle (no {INFO_FILE}); make one with "
                "'domrand bundle --generator RUN --inverter RUN --out DIR'"
            )
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{info_path}: invalid JSON: {exc}") from None
        _check_format(info, path)
        G = load_network(path / GENERATOR_FILE, expected_class="Generator")
        E = load_network(path / INVERTER_FILE, expected_class=INVERTER_CLASS)
    elif path.is_file():
        tensors, meta = checkpoint.load_tensors(path)
        info = meta.get("domrand_bundle")
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: a safetensors file but not a domrand bundle (no 'domrand_bundle' metadata)")
        _check_format(info, path)
        g_cls = info["generator"].get("class", "Generator")
        e_cls = info["inverter"].get("class")
        if g_cls != "Generator" or e_cls != INVERTER_CLASS:
            raise CheckpointError(f"{path}: holds a {g_cls} and a {e_cls}, expected a Generator and an {INVERTER_CLASS}")
        G = checkpoint.build_network(g_cls, info["generator"]["config"], _strip(tensors, "G."), f"{path} (G.)")
        E = checkpoint.build_network(e_cls, info["inverter"]["config"], _strip(tensors, "E."), f"{path} (E.)")
        E.extra = dict(info.get("inverter_extra") or {})  # type: ignore[attr-defined]
        G.extra = {}  # type: ignore[attr-defined]
    else:
        raise CheckpointError(f"{path}: bundle not found (expected a folder or a .safetensors file)")
    _check_pair(G, E, str(path), stored=info.get("generator_hash"))
    return Bundle(G=G.to(dev).eval(), E=E.to(dev).eval(), info=info, options=dict(info.get("randomizer") or {}), path=path)


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_format(info: dict[str, Any], path: Path) -> None:
    fmt = info.get("format")
    if fmt != BUNDLE_FORMAT:
        raise CheckpointError(f"{path}: bundle format {fmt!r} is not supported (this domrand reads format {BUNDLE_FORMAT})")
    for key in ("generator_hash", "generator", "inverter"):
        if key not in info:
            raise CheckpointError(f"{path}: bundle info lacks {key!r}")


def resolve_run_file(path: str | os.PathLike, kind: str) -> Path:
    """A checkpoint file for ``kind`` (``generator`` | ``inverter``) from a run directory or a file.

    In a directory: ``G_ema.safetensors`` / ``E.safetensors`` at the top, else the newest
    ``G_ema*.safetensors`` / ``E*.safetensors`` below it.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"--{kind}: {path} is neither a run directory nor a checkpoint file")
    name, stem = RUN_FILES[kind]
    if (path / name).is_file():
        return path / name
    found = sorted(path.rglob(f"{stem}*.safetensors"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"--{kind}: no {name} (or {stem}*.safetensors) under run directory {path}")
    return found[-1]


def make_bundle(
    generator: str | os.PathLike,
    inverter: str | os.PathLike,
    out: str | os.PathLike,
    options: dict[str, Any] | None = None,
    about: dict[str, Any] | None = None,
) -> Path:
    """Build a bundle from a generator run/file and an inverter run/file (CPU; checks the pairing)."""
    g_file, e_file = resolve_run_file(generator, "generator"), resolve_run_file(inverter, "inverter")
    G = load_network(g_file, expected_class="Generator")
    E = load_network(e_file, expected_class=INVERTER_CLASS)
    try:
        _check_pair(G, E, f"{e_file} + {g_file}")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. Pass the generator run this inverter was trained against.") from None
    return save_bundle(out, G, E, options=options, about=about)


# ---- CLI: domrand bundle ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="generator run directory (holds G_ema.safetensors) or file")
    parser.add_argument("--inverter", required=True, help="inverter run directory (holds E.safetensors) or file")
    parser.add_argument("--out", required=True, help="output folder, or a .safetensors path for a single-file bundle")
    parser.add_argument("--keep-resolution", type=int, default=None, help="default keep_resolution stored in the bundle")
    parser.add_argument("--psi", type=float, default=None, help="default truncation psi of sampled fine styles")
    parser.add_argument("--mix", type=float, default=None, help="default mix (0 = frame styles, 1 = sampled)")
    parser.add_argument("--noise", choices=("random", "step", "const", "none"), default=None, help="default fine noise")
    parser.add_argument("--eval", default=None, help="an 'eval-inverter --out' JSON file stored in bundle.json (about.evaluation)")
    parser.add_argument("--note", default=None, help="free text stored in bundle.json (about.note): data, training, card")
    parser.add_argument("--traceback", action="store_true", help="show a full traceback on errors")


def _about(eval_file: str | None, note: str | None) -> dict[str, Any]:
    about: dict[str, Any] = {}
    if eval_file:
        try:
            about["evaluation"] = json.loads(Path(eval_file).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"--eval: {eval_file} does not exist (write it with 'domrand eval-inverter --out FILE')") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"--eval: {eval_file} is not valid JSON ({exc})") from None
    if note:
        about["note"] = note
    return about


def main(args: argparse.Namespace) -> int:
    options = {
        k: v
        for k, v in (("keep_resolution", args.keep_resolution), ("psi", args.psi), ("mix", args.mix), ("noise", args.noise))
        if v is not None
    }
    out = make_bundle(args.generator, args.inverter, args.out, options, about=_about(args.eval, args.note))
    info = load_bundle(out, device="cpu").info
    print(f"wrote bundle {out} (generator {info['generator_hash']}, {info['generator']['resolution']}x"
          f"{info['generator']['resolution']}, inverter keep_resolution {info['inverter']['keep_resolution']})")
    return 0
