"""Fine-tuning a trained generator (``domrand train-generator --init SOURCE``; issue 16).

``load_init(path)`` finds the weights a fine-tuning run starts from. ``SOURCE`` may be

* a generator run directory: its newest intact checkpoint (``G``, ``G_ema``, ``D``), else its
  top-level ``G_ema.safetensors`` alone;
* a checkpoint directory (``checkpoints/kimg-*``): its ``G_ema``, ``G`` and ``D``;
* a bundle folder (``bundle.json`` + ``generator.safetensors``) or a single-file bundle: the
  bundle's generator (no discriminator: D starts from scratch);
* a ``.safetensors`` generator file: that generator, plus ``G.safetensors`` / ``D.safetensors``
  beside a ``G_ema*.safetensors`` file when present.

The start's ``G_ema`` is "the start generator": bundles and inverters use it, its
``weights_hash`` is recorded in the run's config (``training.init_hash``), a frozen copy is kept in
the run directory (``G_init.safetensors``) as the reference of the coarse-feature term, and the
layout-agreement metric compares the fine-tuned generator with it.

The run's network config must describe the same architecture as the start (``check_architecture``);
without a config the start's own run config (or, for a bundle or file, the default preset's
training section with the start's network) is used (``default_config``).

Measured so far only on a toy (``tiny`` 16x16, a 48-step source on coloured shapes, 64 fine-tuning
steps on the same scenes in inverted colours, seeds 3 and 4; layout agreement same-w of the
fine-tuned G_ema vs its start, mismatched pairs 0.11-0.19 throughout): a frozen mapping changed
nothing measurable at that length (0.443 vs 0.442; 0.460 vs 0.458; the network's equalized-lr
``mapping_lr_mult`` of 0.01 already keeps it slow), but keeps W identical by construction;
FreezeD 1 gave 0.44 -> 0.44 at a worse SWD to the new data (205 -> 373) on seed 3 and 0.46 -> 0.62
at the same SWD on seed 4; ``init_feature_weight`` 30 (blocks <= 8) raised same-w to 0.56 / 0.70
(SWD 317 / 234), 300 to 0.61 / 0.72 (SWD 364 / 336). The defaults (frozen mapping, FreezeD 1,
no feature term) wait for measurements at the real scale (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from domrand import checkpoint as ckpt
from domrand.config import from_dict, load_config, replace, to_dict
from domrand.generator.train.stylegan_config import GeneratorConfig, TrainingConfig
from domrand.generator.nn.networks import NetworkConfig
from domrand.generator.train import runs
from domrand.generator.nn.networks import Discriminator, Generator

# Network fields that change the parameters' shapes or their meaning (the mapping's equalized-lr
# scale divides its stored weights by mapping_lr_mult): these must match the start's exactly.
ARCH_FIELDS = ("resolution", "z_dim", "w_dim", "mapping_layers", "mapping_lr_mult", "channel_base", "channel_max",
               "fir_kernel", "mbstd_channels")
# training.* fields a fine-tuning run does not inherit from its start's run config.
FINETUNE_FIELDS = ("init", "init_hash", "init_from_ema", "mapping_lr_mult", "freeze_d", "init_feature_weight", "keep_resolution")
BUNDLE_INFO = "bundle.json"
BUNDLE_GENERATOR = "generator.safetensors"


@dataclass
class InitSource:
    """The weights a fine-tuning run starts from (networks on the CPU, in eval mode)."""

    path: Path  # the resolved path that was given
    kind: str  # run | checkpoint | bundle | file
    G_ema: Generator  # the start generator
    G: Generator | None = None  # its raw training generator, when the source has one
    D: Discriminator | None = None  # its discriminator, when the source has one
    files: dict[str, str] = field(default_factory=dict)  # network -> file it came from
    run_config: Path | None = None  # the start's run config.yaml, when it is a run
    hash: str = ""  # weights_hash(G_ema)

    def describe(self) -> str:
        """One line: what was loaded from where."""
        parts = [f"G_ema <- {self.files.get('G_ema')}"]
        parts.append(f"G <- {self.files['G']}" if self.G is not None else "G <- G_ema")
        parts.append(f"D <- {self.files['D']}" if self.D is not None else "D from scratch (none beside the generator)")
        return f"{self.kind} {self.path} (generator {self.hash}): " + "; ".join(parts)


def _load_generator_file(path: Path) -> tuple[Generator, str]:
    """A Generator from a network file or a single-file bundle; ``(G, kind)``."""
    tensors, meta = ckpt.load_tensors(path)  # verifies the checksum
    bundle = meta.get("domrand_bundle")
    if isinstance(bundle, dict):
        gen = bundle.get("generator")
        if not isinstance(gen, dict) or not isinstance(gen.get("config"), dict):
            raise ckpt.CheckpointError(f"{path}: bundle key 'generator.config' is missing or not a JSON object")
        sub = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
        G = ckpt.build_network(str(gen.get("class", "Generator")), gen["config"], sub, f"{path} (G.)")
        if not isinstance(G, Generator):
            raise ckpt.CheckpointError(f"{path}: the bundle's generator is a {type(G).__name__}, not a Generator")
        want = bundle.get("generator_hash")
        if want is not None and ckpt.weights_hash(G) != want:
            raise ckpt.CheckpointError(f"{path}: the generator's weights hash {ckpt.weights_hash(G)} is not the recorded {want}")
        return G.eval(), "bundle"
    info = ckpt.read_network_info(path)
    if info["class"] != "Generator":
        raise ValueError(f"--init: {path} holds a {str(info['class'])[:40]}; expected a Generator (a generator run, bundle or file)")
    return ckpt.load_network(path, "Generator"), "file"


def _from_checkpoint_dir(d: Path) -> dict[str, Path]:
    files = {"G_ema": d / runs.G_EMA}
    for name in ("G", "D"):
        if (d / f"{name}.safetensors").is_file():
            files[name] = d / f"{name}.safetensors"
    return files


def load_init(path: str | Path, log: Callable[[str], None] | None = None) -> InitSource:
    """Resolve and load a fine-tuning start (see the module docstring). Raises ``FileNotFoundError``
    / ``ValueError`` (``CheckpointError``) naming what was looked for."""
    p = Path(path).expanduser().resolve()
    run_config: Path | None = None
    if not p.exists():
        raise FileNotFoundError(f"--init: {path} does not exist (expected a generator run, checkpoint dir, bundle or .safetensors file)")
    if p.is_dir():
        if (p / BUNDLE_INFO).is_file():
            if not (p / BUNDLE_GENERATOR).is_file():
                raise FileNotFoundError(f"--init: bundle {p} has no {BUNDLE_GENERATOR}; pass its generator file directly")
            kind, files = "bundle", {"G_ema": p / BUNDLE_GENERATOR}
        elif (p / runs.CHECKPOINTS).is_dir() or (p / runs.CONFIG).is_file():
            kind = "run"
            latest = runs.resume_checkpoint(p, log=log)
            if latest is not None:
                files = _from_checkpoint_dir(latest)
            elif (p / runs.G_EMA).is_file():
                files = {"G_ema": p / runs.G_EMA}
            else:
                raise FileNotFoundError(f"--init: run {p} holds no {runs.G_EMA} and no intact checkpoint")
            run_config = p / runs.CONFIG if (p / runs.CONFIG).is_file() else None
        elif (p / runs.G_EMA).is_file():
            kind, files = "checkpoint", _from_checkpoint_dir(p)
            top = p.parent.parent
            run_config = top / runs.CONFIG if p.parent.name == runs.CHECKPOINTS and (top / runs.CONFIG).is_file() else None
        else:
            raise FileNotFoundError(
                f"--init: {p} is a folder but neither a generator run ({runs.CONFIG}, {runs.CHECKPOINTS}/), a checkpoint "
                f"dir ({runs.G_EMA}) nor a bundle ({BUNDLE_INFO})"
            )
    else:
        kind, files = "file", {"G_ema": p}
        if p.name.startswith("G_ema"):
            for name in ("G", "D"):
                if (p.parent / f"{name}.safetensors").is_file():
                    files[name] = p.parent / f"{name}.safetensors"
    G_ema, file_kind = _load_generator_file(files["G_ema"])
    if kind == "file":
        kind = file_kind
    src = InitSource(path=p, kind=kind, G_ema=G_ema, run_config=run_config, hash=ckpt.weights_hash(G_ema))
    src.files["G_ema"] = str(files["G_ema"])
    if "G" in files:
        src.G = ckpt.load_network(files["G"], "Generator")
        src.files["G"] = str(files["G"])
        if to_dict(src.G.config) != to_dict(G_ema.config):
            raise ValueError(f"--init: {files['G']} and {files['G_ema']} have different network configs")
    if "D" in files:
        src.D = ckpt.load_network(files["D"], "Discriminator")
        src.files["D"] = str(files["D"])
    return src


def default_config(src: InitSource, fallback_preset: str) -> tuple[GeneratorConfig, str]:
    """The config of a fine-tuning run given no ``--config``: ``(config, where it came from)``.

    The start's run config when it has one, else ``fallback_preset``; the network is the start's
    own, and the fine-tuning fields (``FINETUNE_FIELDS``) are the defaults (resolved for fine-tuning).
    """
    if src.run_config is not None:
        base, where = load_config(src.run_config, GeneratorConfig), f"the start's run config {src.run_config}"
    else:
        base, where = load_config(fallback_preset, GeneratorConfig), f"preset {fallback_preset} with the start's network"
        base = replace(base, **{"training.r1_gamma": None})  # the preset's batch/resolution heuristic
    defaults = TrainingConfig()
    changes = {f"training.{k}": getattr(defaults, k) for k in FINETUNE_FIELDS}
    cfg = replace(base, network=src.G_ema.config, **changes)
    return from_dict(GeneratorConfig, to_dict(cfg), "config"), where


def check_architecture(network: NetworkConfig, src: InitSource) -> list[str]:
    """Raise ``ValueError`` when ``network`` is not the start's architecture; returns notes on
    other differing fields (they take the config's value)."""
    mine, theirs = to_dict(network), to_dict(src.G_ema.config)
    diff = [k for k in mine if mine[k] != theirs.get(k)]
    arch = [k for k in diff if k in ARCH_FIELDS]
    if arch:
        shown = "; ".join(f"network.{k}: config {mine[k]!r} vs start {theirs.get(k)!r}" for k in arch)
        raise ValueError(
            f"--init: the config's network is not the architecture of {src.path} ({shown}); use the start's own "
            "network (omit --config to take it from the start)"
        )
    return [f"network.{k}: the config's {mine[k]!r} replaces the start's {theirs.get(k)!r}" for k in diff]


def load_discriminator(D: Discriminator, src_D: Discriminator, where: str) -> str | None:
    """Copy ``src_D``'s weights into ``D`` in place. fromRGB layers may differ (a progressive and a
    plain discriminator): those of ``D`` alone keep their fresh init. Returns a note, or None."""
    own, theirs = D.state_dict(), src_D.state_dict()
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    bad = [k for k in missing + unexpected if ".fromrgb." not in k]
    shapes = [k for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if bad or shapes:
        raise ValueError(
            f"--init: the discriminator {where} does not fit this config "
            f"(keys {(bad + shapes)[:4]}{'...' if len(bad + shapes) > 4 else ''})"
        )
    D.load_state_dict({k: theirs.get(k, v) for k, v in own.items()}, strict=True)
    if missing or unexpected:
        return f"discriminator {where}: fromRGB layers differ (progressive or not); {len(missing)} fresh, {len(unexpected)} dropped"
    return None


def frozen_reference(G: Generator) -> Generator:
    """A frozen copy of ``G`` (eval mode, no gradients): the reference of the coarse-feature term."""
    import copy

    ref = copy.deepcopy(G).eval()
    return ref.requires_grad_(False)


__all__ = ["ARCH_FIELDS", "InitSource", "check_architecture", "default_config", "frozen_reference", "load_discriminator", "load_init"]
