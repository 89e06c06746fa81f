"""``stylegan``: sim frames through ``StyleRandomizer`` with a bundle trained on target-domain imagery
that is disjoint from the test frames (domrand's candidate)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext
from domrand.transfer.frames import stylegan_views
from domrand.wrappers import StyleRandomizationObservation


@register
class StyleGANRandomization(Condition):
    name = "stylegan"
    order = 3
    role = "candidate"
    color = "#2ca02c"
    about = "sim frames through StyleRandomizer (a new fine style per frame) with the configured bundle"
    model: ClassVar[str] = "teacher"  # what renders: the bundle's inverter + generator, or its student
    needs: ClassVar[str] = "a bundle"

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        bundle = self._bundle(ctx)
        return {"": stylegan_views(ctx.cfg, sources["sim"][0], views, bundle, ctx.cache, key, ctx.progress, salt=salt,
                                   model=self.model)}  # fmt: skip

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray | None:
        if ctx.bundle is None:
            return None
        return stylegan_views(ctx.cfg, sim_test, 1, ctx.bundle, ctx.cache, key, ctx.progress, salt=1, model=self.model)[0]

    def control_transform(self, ctx: FrameContext, seed: int) -> Any:
        self._bundle(ctx)
        return ctx.randomizer(self.model)  # one randomizer per model, shared by every env of the run

    def wrap_control_env(self, env: Any, transform: Any) -> Any:
        return StyleRandomizationObservation(env, transform, resample="episode")

    def _bundle(self, ctx: FrameContext):
        if ctx.bundle is None:
            raise ValueError(f"condition {self.name!r} needs {self.needs} (config 'bundle:' or --bundle)")
        return ctx.bundle
