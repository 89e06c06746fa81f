"""``augment``: sim frames through the augmentation baseline (``ImageAugmenter``; RAD / DrQ / DrAC kinds)."""

from __future__ import annotations

from typing import Any

import numpy as np

from domrand.transfer.conditions import register
from domrand.transfer.conditions.base import Condition, FrameContext
from domrand.transfer.frames import augment_options, augment_views
from domrand.utils import derive_seed
from domrand.wrappers import AugmentationObservation
from domrand.wrappers.augment import ImageAugmenter


@register
class ImageAugmentation(Condition):
    name = "augment"
    order = 2
    role = "baseline"
    color = "#ff7f0e"
    about = "sim frames through the augmentation baseline (augment.kinds; new parameters per frame)"

    def training_sets(self, ctx: FrameContext, sources: dict[str, np.ndarray], views: int, key: str, salt: int = 0):
        return {"": augment_views(ctx.cfg, sources["sim"][0], views, salt=salt)}

    def in_domain_test(self, ctx: FrameContext, sim_test: np.ndarray, key: str) -> np.ndarray:
        return augment_views(ctx.cfg, sim_test, 1, salt=1)[0]

    def control_transform(self, ctx: FrameContext, seed: int) -> Any:
        return ImageAugmenter(kinds=ctx.cfg.augment.kinds, seed=derive_seed(seed, 53), **augment_options(ctx.cfg))

    def wrap_control_env(self, env: Any, transform: Any) -> Any:
        return AugmentationObservation(env, augmenter=transform, resample="episode")
