"""A corpus of corrupted and tampered checkpoints, bundles and training-run files, and a runner.

``make_originals(root)`` writes a tiny bundle (folder and single file) and a tiny training run;
``variants(root)`` lists every corrupted or tampered copy to try (byte flips in headers and bodies,
truncations, huge header lengths, config edits and bombs, bundle.json edits, pickle and torch.save
files carrying a payload that would create a marker file); ``run_variant`` applies one to a fresh
copy and loads it the way domrand does. ``tests/test_integrity_fuzz.py`` asserts on every one;
``python tests/fuzz_corpus.py`` prints the counts (docs/integrity.md).
"""

from __future__ import annotations

import io
import json
import pickle
import resource
import shutil
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from domrand import bundle as bundle_mod
from domrand import checkpoint
from domrand.checkpoint import CHECKSUM_KEY, CheckpointError, content_checksum

MARKER = "PAYLOAD_RAN"  # a payload that runs creates this file next to the variant
PEAK_LIMIT = 64 * 2**20  # Python-level peak allocation allowed while loading one variant
RUN_FILES = ("G.safetensors", "G_ema.safetensors", "D.safetensors", "train_state.safetensors")


class _Payload:
    """Unpickling this creates ``path`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- originals ----------------------------------------------------------------------------------


def make_originals(root: Path) -> None:
    """A tiny folder bundle, the same as one file, and a 2-step training run of the tiny preset."""
    from domrand.config import load_config, replace
    from domrand.generator.train.stylegan_config import GeneratorConfig
    from domrand.generator.nn.inverter import Inverter
    from domrand.generator.train.inverter import InverterConfig
    from domrand.generator.nn.networks import Generator
    from domrand.generator.train.stylegan import resolve_config, train

    torch.manual_seed(0)
    G = Generator(load_config("tiny", GeneratorConfig).network).eval()
    E = Inverter.for_generator(G, load_config("tiny", InverterConfig, kind="inverter").network, samples=8)
    bundle_mod.save_bundle(root / "bundle", G, E, options={"psi": 0.6})
    bundle_mod.save_bundle(root / "single.safetensors", G, E, options={"psi": 0.6})
    cfg = replace(resolve_config("tiny"), **{"training.snapshot_kimg": 0.016, "training.swd_images": 16})
    data = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    train(cfg, data, root / "run", kimg=0.016, device="cpu", progress=False, eval_at_start=False, tensorboard=False)


def run_checkpoint(root: Path) -> Path:
    return next((root / "run" / "checkpoints").iterdir())


# ---- mutations ----------------------------------------------------------------------------------


def _header_len(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")


def _flip_at(offset: Callable[[bytes], int], value: int = 0x5A) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        data = bytearray(path.read_bytes())
        i = offset(bytes(data))
        data[i] = data[i] ^ value or 0x01
        path.write_bytes(bytes(data))

    return mutate


def _truncate(keep: Callable[[bytes], int]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: keep(data)])

    return mutate


def _header_length(value: Callable[[bytes], int]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[:8] = (value(bytes(data)) % 2**64).to_bytes(8, "little")
        path.write_bytes(bytes(data))

    return mutate


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _edit_meta(edit: Callable[[dict[str, str]], None], resign: bool) -> Callable[[Path], None]:
    """Change the file's metadata; ``resign``: also write a fresh, valid checksum (a consistent
    file whose content is not what was packaged or whose config is a bomb)."""

    def mutate(path: Path) -> None:
        tensors, meta = _read(path)
        edit(meta)
        if resign:
            meta[CHECKSUM_KEY] = content_checksum(meta, tensors)
        save_file(tensors, str(path), metadata=meta)

    return mutate


def _edit_config(key: str, value) -> Callable[[dict[str, str]], None]:
    def edit(meta: dict[str, str]) -> None:
        config = json.loads(meta["config"])
        config["network"][key] = value
        meta["config"] = json.dumps(config)

    return edit


def _set_meta(key: str, text: str) -> Callable[[dict[str, str]], None]:
    def edit(meta: dict[str, str]) -> None:
        meta[key] = text

    return edit


def _edit_bundle_info(edit: Callable[[dict], None]) -> Callable[[dict[str, str]], None]:
    def inner(meta: dict[str, str]) -> None:
        info = json.loads(meta["json"])
        edit(info["domrand_bundle"])
        meta["json"] = json.dumps(info)

    return inner


def _change_tensor(path: Path) -> None:
    """Re-save with one weight changed and the old (now wrong) checksum."""
    tensors, meta = _read(path)
    key = sorted(k for k in tensors if tensors[k].is_floating_point())[0]
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, str(path), metadata=meta)


def _write(content: Callable[[Path], bytes]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        path.write_bytes(content(path))

    return mutate


def _pickle_payload(path: Path) -> bytes:
    return pickle.dumps({"state_dict": _Payload(path.parent / MARKER)})


def _pickle_payload_protocol0(path: Path) -> bytes:
    return pickle.dumps(_Payload(path.parent / MARKER), protocol=0)


def _torch_save_payload(path: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"weights": _Payload(path.parent / MARKER)}, buf)
    return buf.getvalue()


def _bundle_json(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        info = json.loads(path.read_text())
        path.write_text(json.dumps(edit(info)))

    return mutate


def _raw_text(text: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        path.write_text(text)

    return mutate


# ---- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str  # what was done
    target: str  # the file changed, relative to the corpus root
    load: str  # how it is loaded: bundle | single | network | tensors
    mutate: Callable[[Path], None]
    bomb: str | None = None  # a config bomb: the class it targets, which must never be built


def _byte_level(target: str, load: str) -> list[Variant]:
    """Flips in the length field, header and body; truncations; huge header lengths; empty file."""
    rng = np.random.default_rng(abs(hash(target)) % 2**32)
    out = [Variant(f"{target}: flip in the header-length field", target, load, _flip_at(lambda d: 0, 0x04))]
    for k, frac in enumerate(rng.uniform(0.05, 0.95, 3)):
        out.append(Variant(f"{target}: header byte flip #{k}", target, load, _flip_at(lambda d, f=frac: 8 + int(f * _header_len(d)))))
    for k, frac in enumerate(rng.uniform(0.02, 0.98, 3)):
        pos = lambda d, f=frac: 8 + _header_len(d) + int(f * (len(d) - 8 - _header_len(d) - 1))  # noqa: E731
        out.append(Variant(f"{target}: body byte flip #{k}", target, load, _flip_at(pos)))
    out += [
        Variant(f"{target}: truncated to 4 bytes", target, load, _truncate(lambda d: 4)),
        Variant(f"{target}: truncated mid-header", target, load, _truncate(lambda d: 8 + _header_len(d) // 2)),
        Variant(f"{target}: truncated mid-body", target, load, _truncate(lambda d: (len(d) + 8 + _header_len(d)) // 2)),
        Variant(f"{target}: last byte cut", target, load, _truncate(lambda d: len(d) - 1)),
        Variant(f"{target}: header length 2**63", target, load, _header_length(lambda d: 2**63)),
        Variant(f"{target}: header length past the end", target, load, _header_length(lambda d: len(d))),
        Variant(f"{target}: empty file", target, load, _truncate(lambda d: 0)),
    ]
    return out


def _config_level(target: str, load: str) -> list[Variant]:
    """Tampered weights and settings (checksum not updated), and re-signed config bombs."""
    gen_like = "inverter" not in target
    cls = "Inverter" if not gen_like else ("Discriminator" if target.endswith("/D.safetensors") else "Generator")
    out = [
        Variant(f"{target}: one weight changed", target, load, _change_tensor),
        Variant(f"{target}: extra edited", target, load, _edit_meta(_set_meta("extra", '{"kimg": 99}'), False)),
        Variant(f"{target}: checksum removed", target, load, _edit_meta(lambda m: m.pop(CHECKSUM_KEY), False)),
        Variant(f"{target}: config JSON depth bomb (re-signed)", target, load,
                _edit_meta(_set_meta("config", "[" * 200_000 + "]" * 200_000), True), bomb=cls),
        Variant(f"{target}: config is a list (re-signed)", target, load, _edit_meta(_set_meta("config", "[1, 2]"), True), bomb=cls),
        Variant(f"{target}: 10**5000 in config (re-signed)", target, load,
                _edit_meta(_set_meta("config", '{"network": {"w_dim": 1' + "0" * 5000 + "}}"), True), bomb=cls),
    ]
    if gen_like:
        out += [
            Variant(f"{target}: conv_clamp edited", target, load, _edit_meta(_edit_config("conv_clamp", 8.0), False)),
            Variant(f"{target}: mapping_lr_mult edited", target, load, _edit_meta(_edit_config("mapping_lr_mult", 1.0), False)),
            Variant(f"{target}: mapping_layers=200000 (re-signed)", target, load,
                    _edit_meta(_edit_config("mapping_layers", 200_000), True), bomb=cls),
            Variant(f"{target}: channel_base=2**40 (re-signed)", target, load,
                    _edit_meta(_edit_config("channel_base", 2**40), True), bomb=cls),
            Variant(f"{target}: channel_max=4096, base=65536 (re-signed)", target, load,
                    _edit_meta(lambda m: (_edit_config("channel_max", 4096)(m), _edit_config("channel_base", 65536)(m)), True), bomb=cls),
            Variant(f"{target}: resolution=2**20 (re-signed)", target, load, _edit_meta(_edit_config("resolution", 2**20), True), bomb=cls),
            Variant(f"{target}: fir_kernel of 10**5 taps (re-signed)", target, load,
                    _edit_meta(_edit_config("fir_kernel", [1] * 100_000), True), bomb=cls),
        ]
    else:
        out.append(Variant(f"{target}: inverter channel_base=2**40 (re-signed)", target, load,
                           _edit_meta(_edit_config("channel_base", 2**40), True), bomb=cls))
    return out


def _payloads(target: str, load: str) -> list[Variant]:
    return [
        Variant(f"{target}: pickle with a payload", target, load, _write(_pickle_payload)),
        Variant(f"{target}: protocol-0 pickle with a payload", target, load, _write(_pickle_payload_protocol0)),
        Variant(f"{target}: torch.save zip with a payload", target, load, _write(_torch_save_payload)),
    ]


def _bundle_json_variants() -> list[Variant]:
    t, b = "bundle/bundle.json", "bundle"

    def resign_options(info: dict) -> dict:  # valid options, wrong checksum: settings changed after packaging
        info["randomizer"] = {"psi": 0.9}
        return info

    return [
        Variant(f"{t}: a list", t, b, _bundle_json(lambda i: [i])),
        Variant(f"{t}: a string", t, b, _bundle_json(lambda i: "bundle")),
        Variant(f"{t}: missing 'inverter'", t, b, _bundle_json(lambda i: {k: v for k, v in i.items() if k != "inverter"})),
        Variant(f"{t}: generator_hash an int", t, b, _bundle_json(lambda i: i | {"generator_hash": 5})),
        Variant(f"{t}: inverter weights_hash edited", t, b, _bundle_json(lambda i: i | {"inverter": i["inverter"] | {"weights_hash": "0" * 16}})),
        Variant(f"{t}: randomizer options changed", t, b, _bundle_json(resign_options)),
        Variant(f"{t}: randomizer psi a string", t, b, _bundle_json(lambda i: i | {"randomizer": {"psi": "x"}})),
        Variant(f"{t}: format 2", t, b, _bundle_json(lambda i: i | {"format": 2})),
        Variant(f"{t}: NaN psi", t, b, _raw_text('{"format": 1, "randomizer": {"psi": NaN}}')),
        Variant(f"{t}: not JSON", t, b, _raw_text("{format: 1")),
        Variant(f"{t}: depth bomb", t, b, _raw_text("[" * 200_000 + "]" * 200_000)),
        Variant(f"{t}: 11 MB", t, b, _raw_text(" " * 11_000_000 + "{}")),
        Variant(f"{t}: empty", t, b, _raw_text("")),
    ]


def _bundle_file_swaps() -> list[Variant]:
    """Consistent files that are not the packaged ones: caught by bundle.json's records."""
    return [
        Variant("bundle/generator.safetensors: conv_clamp edited (re-signed)", "bundle/generator.safetensors", "bundle",
                _edit_meta(_edit_config("conv_clamp", 8.0), True)),
        Variant("bundle/inverter.safetensors: extra edited (re-signed)", "bundle/inverter.safetensors", "bundle",
                _edit_meta(_set_meta("extra", '{"generator_hash": "0000000000000000"}'), True)),
        Variant("single.safetensors: randomizer options edited (re-signed file)", "single.safetensors", "single",
                _edit_meta(_edit_bundle_info(lambda i: i.update(randomizer={"psi": 0.9})), True)),
        Variant("single.safetensors: generator config bomb (re-signed)", "single.safetensors", "single",
                _edit_meta(_edit_bundle_info(lambda i: i["generator"]["config"]["network"].update(mapping_layers=200_000)), True), bomb="Generator"),
    ]


def variants(root: Path) -> list[Variant]:
    """Every variant of the corpus under ``root`` (made by ``make_originals``)."""
    ckpt = run_checkpoint(root).relative_to(root).as_posix()
    out: list[Variant] = []
    targets = [("bundle/generator.safetensors", "bundle"), ("bundle/inverter.safetensors", "bundle"), ("single.safetensors", "single")]
    targets += [(f"{ckpt}/{name}", "tensors" if name.startswith("train_state") else "network") for name in RUN_FILES]
    targets.append(("run/G_ema.safetensors", "network"))
    for target, load in targets:
        out += _byte_level(target, load)
        if not target.endswith("train_state.safetensors") and target != "single.safetensors":
            out += _config_level(target, load)
        out += _payloads(target, load)
    return out + _bundle_json_variants() + _bundle_file_swaps()


# ---- running one ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    variant: Variant
    error: BaseException | None  # what loading raised (None: it loaded)
    payload_ran: bool
    peak_bytes: int  # Python-level peak allocation while loading (tracemalloc)
    built: list[str]  # network classes constructed while loading
    seconds: float

    @property
    def named_file(self) -> bool:
        return self.error is not None and Path(self.variant.target).name in str(self.error)


def _load(kind: str, path: Path, bundle_root: Path) -> None:
    if kind == "bundle":
        bundle_mod.load_bundle(bundle_root, device="cpu")
    elif kind == "single":
        bundle_mod.load_bundle(path, device="cpu")
    elif kind == "network":
        checkpoint.load_network(path)
    else:
        checkpoint.load_tensors(path)


def run_variant(originals: Path, work: Path, variant: Variant) -> Outcome:
    """Copy the originals to ``work``, apply the variant, load it, and report what happened."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(originals, work)
    path = work / variant.target
    variant.mutate(path)
    built: list[str] = []
    import domrand.generator  # noqa: F401  (the built-in networks register on import)

    factories = dict(checkpoint._NETWORKS)
    bounded = dict(checkpoint._BOUNDED)

    def recording(name: str, factory: Callable) -> Callable:
        def build(config):
            built.append(name)
            return factory(config)

        return build

    error: BaseException | None = None
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for name, factory in factories.items():
            checkpoint._NETWORKS[name] = recording(name, factory)
            if name in bounded:
                checkpoint._BOUNDED[name] = (checkpoint._NETWORKS[name], bounded[name][1])
        _load(variant.load, path, work / "bundle")
    except BaseException as exc:  # noqa: BLE001 - the corpus records whatever happens
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        checkpoint._NETWORKS.update(factories)
        checkpoint._BOUNDED.update(bounded)
    payload = (path.parent / MARKER).exists() or any(work.rglob(MARKER))
    return Outcome(variant, error, payload, peak, built, time.perf_counter() - t0)


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    """Counts of the corpus run (what docs/integrity.md reports)."""
    return {
        "variants": len(outcomes),
        "checkpoint_error": sum(isinstance(o.error, CheckpointError) for o in outcomes),
        "checkpoint_error_naming_file": sum(isinstance(o.error, CheckpointError) and o.named_file for o in outcomes),
        "loaded_silently": sum(o.error is None for o in outcomes),
        "other_errors": sum(o.error is not None and not isinstance(o.error, CheckpointError) for o in outcomes),
        "payloads_ran": sum(o.payload_ran for o in outcomes),
        "bombs_that_built_their_network": sum(o.variant.bomb is not None and o.variant.bomb in o.built for o in outcomes),
        "over_peak_limit": sum(o.peak_bytes > PEAK_LIMIT for o in outcomes),
    }


def main() -> int:
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_originals(root / "orig")
        t0 = time.perf_counter()
        outcomes = [run_variant(root / "orig", root / "work", v) for v in variants(root / "orig")]
        took = time.perf_counter() - t0
    for o in outcomes:
        if not (isinstance(o.error, CheckpointError) and o.named_file) or o.payload_ran:
            print(f"FAIL {o.variant.name}: {type(o.error).__name__}: {o.error}")
    counts = summarize(outcomes)
    peak = max(o.peak_bytes for o in outcomes)
    print(json.dumps(counts | {"max_peak_mib": round(peak / 2**20, 1), "seconds": round(took, 1),
                               "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
    return 0 if counts["checkpoint_error_naming_file"] == counts["variants"] and not counts["payloads_ran"] else 1


if __name__ == "__main__":
    sys.exit(main())
