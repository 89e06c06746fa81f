"""``stylegan-student``: sim frames through the bundle's distilled student (``domrand distill``)
instead of its inverter + generator: the same styles, one small network (see ``stylegan``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext
from domrand.transfer.frames import stylegan_views
from domrand.wrappers import StyleRandomizationObservation


@register
class StyleGANStudent(Condition):
    name = "stylegan-student"
    order = 4
    role = "variant"
    color = "#98df8a"
    about = "sim frames through the bundle's distilled student (StyleRandomizer model='student'), a new style per frame"

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        return {"": stylegan_views(ctx.cfg, sources["sim"][0], views, self._bundle(ctx), ctx.cache, key, ctx.progress,
                                   salt=salt, model="student")}  # fmt: skip

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray | None:
        if ctx.bundle is None:
            return None
        return stylegan_views(ctx.cfg, sim_test, 1, ctx.bundle, ctx.cache, key, ctx.progress, salt=1, model="student")[0]

    def control_transform(self, ctx: FrameContext, seed: int) -> Any:
        self._bundle(ctx)
        return ctx.randomizer("student")

    def wrap_control_env(self, env: Any, transform: Any) -> Any:
        return StyleRandomizationObservation(env, transform, resample="episode")

    @staticmethod
    def _bundle(ctx: FrameContext):
        if ctx.bundle is None:
            raise ValueError("condition 'stylegan-student' needs a bundle with a distilled student (config 'bundle:' or --bundle)")
        return ctx.bundle
