"""``classic``: the envs' classic visual randomization (Tobin et al. 2017; ``visual_domain="randomized"``):
everything random but the task's cue (the cube stays red and nothing else is)."""

from __future__ import annotations

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext
from domrand.transfer.frames import render_frames


@register
class ClassicRandomization(Condition):
    name = "classic"
    order = 1
    role = "baseline"
    color = "#1f77b4"
    about = "the envs' classic visual randomization (textures, colours, light, camera jitter, clutter; the cube stays red)"
    visual_domain = "randomized"

    def sources(self, presets: tuple[str, ...]) -> list[str]:
        return ["randomized"]

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        return {"": sources["randomized"]}

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray:
        n = sim_test.shape[0]
        return render_frames(ctx.cfg, "test", n, ["randomized"], ctx.cache, ctx.progress, views=1)["randomized"][0]
