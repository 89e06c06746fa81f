"""``none``: plain sim frames (the no-randomization reference)."""

from __future__ import annotations

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext


@register
class NoRandomization(Condition):
    name = "none"
    order = 0
    role = "reference"
    color = "#7f7f7f"
    about = "plain sim frames"

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        return {"": sources["sim"]}

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray:
        return sim_test
