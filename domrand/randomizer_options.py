"""The style randomizer's options (``RandomizerOptions``, the form of ``configs/randomizer/`` presets)
and their names, shared by the randomizer and the bundle format (which stores randomizer defaults
and validates them on load)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

NOISE_OPTIONS = ("random", "step", "const", "none")
"""How fine (above ``keep_resolution``) noise is drawn: ``random`` = per-environment maps drawn at
``resample`` and held; ``step`` = fresh maps on every ``randomize`` call; ``const`` = G's constant
maps; ``none`` = no noise. Coarse noise is always G's constant maps."""


@dataclass(frozen=True)
class RandomizerOptions:
    """A randomizer preset (``configs/randomizer/*.yaml``): ``StyleRandomizer`` options; ``None``
    keeps the bundle's stored default (else the randomizer's own; see ``StyleRandomizer``)."""

    keep_resolution: int | None = None  # ws and noise up to this resolution come from the frame (layout)
    psi: float | None = None  # truncation of sampled fine styles toward the mean style (1 = none)
    mix: float | None = None  # 0 = the frame's own fine styles, 1 = sampled ones
    noise: str | None = None  # fine noise: random | step | const | none
    refine_steps: int | None = None  # optimization steps refining the inversion
    seed: int | None = None  # seed of styles drawn without an explicit one
    max_batch: int | None = None  # micro-batch bounding the memory of one forward
    dtype: str | None = None  # auto | float32 | bfloat16 | float16
    drift_steps: int | None = None  # a resample glides to the new style over this many calls
    fit: str | None = None  # non-square frames: pad | crop | stretch
    model: str | None = None  # teacher (inverter + generator) | student (the distilled network)

    def as_options(self) -> dict[str, Any]:
        """The options this preset sets (``None`` entries left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# Keyword options a bundle may store as randomizer defaults (and ``from_bundle`` accepts).
OPTION_NAMES = tuple(f.name for f in fields(RandomizerOptions))

MODELS = ("teacher", "student")
"""What renders the frames: ``teacher`` = the inverter and generator; ``student`` = the bundle's
distilled ``StudentNet`` (one fast pass; it renders the teacher with constant fine noise and mix 1)."""
