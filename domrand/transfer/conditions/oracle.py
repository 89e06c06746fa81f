"""``oracle``: target-domain frames directly, one model per target preset (the ceiling)."""

from __future__ import annotations

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext


@register
class TargetOracle(Condition):
    name = "oracle"
    order = 5
    role = "ceiling"
    color = "#9467bd"
    about = "target-domain frames directly, one model per target preset (the ceiling)"
    visual_domain = "target"

    def sources(self, presets: tuple[str, ...]) -> list[str]:
        return [f"target:{p}" for p in presets]

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        return {p: sources[f"target:{p}"] for p in ctx.cfg.target_presets}
