"""YAML presets -> typed, frozen dataclasses.

Every preset is plain data. ``load_config(path_or_name, cls)`` reads YAML into ``cls``; nested
dataclasses become nested mappings. Unknown or misspelled keys raise ``ConfigError`` listing the
valid keys, and values are checked against the field types.

Bundled presets live in ``configs/<kind>/<name>.yaml`` (installed as ``domrand.configs``), so
``load_config("small64", GeneratorConfig)`` and ``load_config("configs/generator/small64.yaml",
GeneratorConfig)`` give the same result.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A preset or config file is malformed; the message names the key and the accepted form."""


# --------------------------------------------------------------------------------------------
# Generator preset: network shape + training hyper-parameters.


@dataclass(frozen=True)
class NetworkConfig:
    resolution: int = 64  # output resolution, a power of two from 16 to 512
    z_dim: int = 256  # input latent size
    w_dim: int = 256  # intermediate latent (style) size
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995  # decay of the tracked w average while training
    channel_base: int = 8192  # channels at resolution r = min(channel_base // r, channel_max)
    channel_max: int = 512  # upper bound on channels
    conv_clamp: float | None = 256.0  # clamp conv outputs to +-this (None = off)
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)  # 1-D FIR kernel for anti-aliased resampling
    num_fp16_res: int = 0  # GPU only: run the N highest resolutions in reduced precision
    mbstd_group: int = 4  # discriminator minibatch-stddev group size
    mbstd_channels: int = 1  # discriminator minibatch-stddev feature channels


@dataclass(frozen=True)
class TrainingConfig:
    batch: int = 32  # global batch size
    kimg: float = 1000.0  # length of training in thousands of real images shown
    g_lr: float = 0.0025  # generator Adam learning rate
    d_lr: float = 0.0025  # discriminator Adam learning rate
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas
    r1_gamma: float | None = None  # R1 weight; None = automatic from resolution and batch
    r1_interval: int = 16  # lazy R1: every N discriminator steps
    pl_weight: float = 2.0  # path-length regularization weight (0 = off)
    pl_interval: int = 4  # lazy path length: every N generator steps
    pl_batch_shrink: int = 2  # path-length batch = batch // shrink
    pl_decay: float = 0.01  # decay of the path-length running mean
    style_mixing_prob: float = 0.9  # mixing-regularization probability
    ema_kimg: float = 10.0  # EMA half-life in kimg
    ema_rampup: float | None = 0.05  # EMA ramp-up ratio (None = off)
    xflip: bool = False  # dataset x-flips: only for mirror-symmetric scenes (a fixed robot camera is not)
    ada: bool = True  # adaptive discriminator augmentation
    ada_target: float = 0.6  # target of the sign-of-D(real) heuristic
    ada_interval: int = 4  # adjust p every N minibatches
    ada_kimg: float = 100.0  # kimg for p to go from 0 to 1 at full speed
    snapshot_kimg: float = 50.0  # checkpoint + sample grid every N kimg
    metrics_kimg: float = 50.0  # SWD every N kimg
    keep_snapshots: int = 3  # keep the last K checkpoints (plus the best by SWD)
    swd_images: int = 1024  # images per side when computing SWD during training
    progressive: bool = False  # progressive-growing curriculum
    start_resolution: int = 8  # progressive: first resolution
    fade_kimg: float = 100.0  # progressive: kimg to fade in each new resolution
    stabilize_kimg: float = 100.0  # progressive: kimg at each resolution after fading
    min_images: int = 16  # fewer images than this in --data is an error
    log_steps: int = 50  # write averaged losses, p and img/s to metrics.jsonl every N steps
    amp: bool = True  # CUDA only, when network.num_fp16_res == 0: bf16 autocast of the G/D main passes
    channels_last: bool = False  # CUDA only: channels_last memory format for D inputs and weights
    # Fine-tuning (train-generator --init; issue 16): keep the fine-tuned G's layout aligned with its start's.
    init: str | None = None  # the generator run, checkpoint, bundle or file the weights started from (None: fresh)
    init_hash: str | None = None  # weights_hash of that start's G_ema, checked when the run starts and resumes
    init_from_ema: bool = True  # G starts from the start's G_ema (the generator bundles and inverters use); false: its raw G
    mapping_lr_mult: float | None = None  # Adam lr factor of the mapping network on top of network.mapping_lr_mult; 0 = frozen; None: 0 with init, else 1
    freeze_d: int | None = None  # FreezeD: the first N discriminator blocks (highest resolution, nearest the image) stay frozen; None: 1 with init, else 0
    init_feature_weight: float = 0.0  # weight of the MSE between G's coarse features and the start's (same ws and noise); needs init
    keep_resolution: int = 16  # "coarse" for init_feature_weight: synthesis blocks up to this resolution


@dataclass(frozen=True)
class GeneratorConfig:
    name: str = "custom"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


# --------------------------------------------------------------------------------------------
# Generic loading.


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        hint = " (a value with ': ' reads as a mapping: quote it, e.g. --set \"key='a: b'\")" if isinstance(value, dict) else ""
        raise ConfigError(f"{where}: expected a string, got {value!r}{hint}")
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML/JSON-friendly values (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(obj)


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that accepts dotted keys (``replace(cfg, **{"training.batch": 8})``)."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(obj, head), **sub)
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(flat) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; valid keys: {', '.join(sorted(names))}")
    return dataclasses.replace(obj, **flat)


_KIND_BY_CLASS = {"GeneratorConfig": "generator"}


def preset_names(kind: str) -> list[str]:
    """Names of the bundled presets of one kind (``generator``, ``inverter``, ...)."""
    folder = resources.files("domrand.configs") / kind
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path_or_name: str | Path, kind: str | None) -> tuple[dict[str, Any], str]:
    text_path = str(path_or_name)
    path = Path(text_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            # configs/generator/x.yaml given from outside the repo: fall back to the bundled copy.
            bundled = resources.files("domrand.configs") / (kind or "") / path.name
            if kind and path.parent.name == kind and bundled.is_file():
                return yaml.safe_load(bundled.read_text()) or {}, str(path)
            raise ConfigError(f"config file {text_path!r} does not exist")
        source = path.read_text()
    else:
        if kind is None:
            raise ConfigError(f"{text_path!r} is not a YAML file path")
        bundled = resources.files("domrand.configs") / kind / f"{text_path}.yaml"
        if not bundled.is_file():
            raise ConfigError(
                f"no bundled {kind} preset named {text_path!r}; available: {', '.join(preset_names(kind))}"
            )
        source = bundled.read_text()
    try:
        data = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{text_path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{text_path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, text_path


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--set`` items ``["training.freeze_d=2", ...]`` -> ``{"training.freeze_d": 2}`` (values parsed as YAML).

    Raises ``ConfigError`` naming the item and the accepted form (KEY=VALUE, a YAML value).
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. training.kimg=5), got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({' '.join(str(exc).split())[:80]})") from None
    return out


def load_config(path_or_name: str | Path, cls: type[T], kind: str | None = None) -> T:
    """Load a preset by bundled name or YAML path into dataclass ``cls``."""
    kind = kind or _KIND_BY_CLASS.get(cls.__name__)
    data, where = _read_yaml(path_or_name, kind)
    return from_dict(cls, data, where)


def dump_yaml(obj: Any) -> str:
    """Dataclass -> YAML text (the resolved config stored in run directories)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
