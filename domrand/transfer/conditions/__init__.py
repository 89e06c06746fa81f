"""The benchmark's conditions, registered by name. Adding a condition is one file in this folder
defining a ``Condition`` subclass decorated with ``@register`` (found on import)."""

from __future__ import annotations

import importlib
import pkgutil

from domrand.transfer.conditions.base import Condition, FrameContext

_REGISTRY: dict[str, Condition] = {}


def register(cls: type[Condition]) -> type[Condition]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"two conditions are named {cls.name!r}")
    _REGISTRY[cls.name] = cls()
    return cls


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def condition_names() -> tuple[str, ...]:
    """Every registered condition, in table order."""
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n)))


def get_condition(name: str) -> Condition:
    """The registered condition ``name`` (KeyError names the valid ones)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown condition {name!r}; choose from {list(condition_names())}") from None


def with_role(role: str) -> tuple[str, ...]:
    """Names of the registered conditions with ``role`` (reference, baseline, candidate, ceiling)."""
    return tuple(n for n in condition_names() if _REGISTRY[n].role == role)


_load_all()

__all__ = ["Condition", "FrameContext", "condition_names", "get_condition", "register", "with_role"]
