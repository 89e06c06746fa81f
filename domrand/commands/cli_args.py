"""Argument types for the commands: each refuses nonsense with one line in the user's terms.

Use as ``parser.add_argument("--n", type=positive_int)``; argparse turns the ``ArgumentTypeError``
into ``domrand <command>: error: argument --n: ...`` and exit code 2 (see ``cli._Parser``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from domrand.config import load_config, parse_overrides, preset_names, replace
from domrand.utils import parse_dtype, resolve_device


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A type for an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text}")
        return value

    parse.__name__ = f"int_in_{low}_{high}"
    return parse


image_size = int_range(8, 2048)  # env frame sizes: the envs' minimum 8, a sane maximum


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text)


def unit_float(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def power_of_two(text: str) -> int:
    """A power of two in [4, 1024]."""
    value = _integer(text)
    if not 4 <= value <= 1024 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two in [4, 1024] (4, 8, 16, ...), got {text}")
    return value


def existing_path(text: str) -> str:
    """A file or folder that exists."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def _items(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated list; refuses an empty list."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def positive_int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1 (``1,16,64``)."""
    values = []
    for item in _items(text):
        try:
            value = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an integer; accepted: integers >= 1, comma-separated (e.g. 1,16,64)"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be integers >= 1, comma-separated (e.g. 1,16,64), got {item}")
        values.append(value)
    return values


def choice_list(accepted: Sequence[str], what: str = "name") -> Callable[[str], list[str]]:
    """A type for comma-separated names, each one of ``accepted`` (``torch,cuda``)."""

    def parse(text: str) -> list[str]:
        items = _items(text)
        bad = [item for item in items if item not in accepted]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0]!r}; accepted: {', '.join(accepted)}")
        return items

    parse.__name__ = f"{what}_list"
    return parse


def _preset(kind: str, text: str) -> str:
    names = preset_names(kind)
    if text in names or (Path(text).suffix in (".yaml", ".yml") and Path(text).is_file()):
        return text
    raise argparse.ArgumentTypeError(f"unknown {kind} preset {text!r}; accepted: {', '.join(names)} or a .yaml file")


def preset(kind: str) -> Callable[[str], str]:
    """A type for one bundled preset name of ``kind`` (``generator``, ``inverter``) or a .yaml file."""

    def parse(text: str) -> str:
        return _preset(kind, text.strip())

    parse.__name__ = f"{kind}_preset"
    return parse


def preset_list(kind: str) -> Callable[[str], list[str]]:
    """A type for comma-separated preset names of ``kind`` (``small64,base64``)."""

    def parse(text: str) -> list[str]:
        return [_preset(kind, item) for item in _items(text)]

    parse.__name__ = f"{kind}_presets"
    return parse


DTYPES = ("float32", "bfloat16", "float16")


def dtype_name(text: str) -> str:
    """A compute dtype name, returned canonical: float32, bfloat16 or float16 (fp32, fp16, half, bf16 too)."""
    try:
        dtype = parse_dtype(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; accepted: {', '.join(DTYPES)}") from None
    return str(dtype).removeprefix("torch.")


def dtype_or_auto(text: str) -> str:
    """``auto`` (the randomizer's choice: bfloat16 on a CPU with native bfloat16, else float32) or a dtype name."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return dtype_name(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; accepted: auto, {', '.join(DTYPES)}") from None


def dtype_list(text: str) -> list[str]:
    """Comma-separated compute dtype names (``float32,bfloat16``)."""
    return [dtype_name(item) for item in _items(text)]


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused at once when no CUDA device is there."""
    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def env_id(text: str) -> str:
    """A registered ``domrand/...`` env id."""
    import gymnasium as gym

    known = sorted(k for k in gym.registry if k.startswith("domrand/"))
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown env {text!r}; accepted: {', '.join(known)}")
    return text


def output_file(text: str) -> str:
    """A file to write: not an existing folder, in a folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; accepted: a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text} does not exist; accepted: a file in an existing folder")
    return text


def json_object(text: str) -> dict:
    """A JSON object (e.g. ``'{"render_mode": "rgb_array"}'``)."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"key\": 1}}', got {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"key\": 1}}', got {text!r}")
    return value


def run_config(args: argparse.Namespace, cls: type, kind: str, example: str) -> Any:
    """A training command's config from ``--config``/``--set``/``--resume`` (None: a resume keeps the run's).

    ``--config`` is required for a new run (``example`` names a preset in the message); ``--set``
    needs ``--config``."""
    config = None
    if args.config is not None:
        config = load_config(args.config, cls, kind=kind)
    elif not args.resume:
        raise ValueError(f"--config is required for a new run (e.g. --config {example})")
    if args.set:
        if config is None:
            raise ValueError("--set needs --config (a resume keeps the run's stored config)")
        config = replace(config, **parse_overrides(args.set))
    return config
