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
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A preset or config file is malformed; the message names the key and the accepted form."""


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
