"""Gymnasium wrappers: StyleGAN randomization of pixel observations, and augmentation baselines.

Usage::

    env = gymnasium.make("domrand/Reach-v0", obs_mode="pixels")
    env = StyleRandomizationObservation(env, "path/to/bundle")   # or a StyleRandomizer
    obs, info = env.reset(seed=0)

All wrappers keep the wrapped env's observation space; see ``style.py`` and ``vector.py``. For
Stable-Baselines3 vector envs: ``from domrand.wrappers.sb3 import VecStyleRandomization`` (the
``rl`` extra).
"""

from domrand.wrappers.augment import KINDS, AugmentationObservation, ImageAugmenter, VectorAugmentation
from domrand.wrappers.style import PixelTransformObservation, StyleRandomizationObservation
from domrand.wrappers.vector import VectorPixelTransform, VectorStyleRandomization

__all__ = [
    "KINDS",
    "AugmentationObservation",
    "ImageAugmenter",
    "PixelTransformObservation",
    "StyleRandomizationObservation",
    "VectorAugmentation",
    "VectorPixelTransform",
    "VectorStyleRandomization",
]
