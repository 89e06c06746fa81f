"""The transfer benchmark's baselines: classic randomization keeps the task's cue (the red cube),
and the augmentation kinds (RAD/DrQ/DrAC) do what they say, seeded, and leave the cube findable."""

from __future__ import annotations

import colorsys

import gymnasium as gym
import numpy as np
import pytest

import domrand  # noqa: F401  (registers the envs)
from domrand.envs import domains
from domrand.wrappers.augment import KINDS, ImageAugmenter

OBJECT, DISTRACTOR, TABLE = 3, 5, 1


def _red_share(pixels: np.ndarray) -> float:
    """Share of uint8 RGB pixels ``[N, 3]`` in the red family (hue within 20 deg of red, saturated, not black)."""
    f = pixels.reshape(-1, 3).astype(np.float64) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*px) for px in f])
    if not len(hsv):
        return 0.0
    dist = np.minimum(hsv[:, 0] * 360.0, 360.0 - hsv[:, 0] * 360.0)
    return float(((dist <= 20.0) & (hsv[:, 1] >= 0.35) & (hsv[:, 2] >= 0.12)).mean())


def _png(path: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def localize_env():
    env = gym.make("domrand/Localize-v0", visual_domain="randomized", image_size=64, renderer="tiny", return_masks=True)
    yield env.unwrapped
    env.close()


@pytest.fixture(scope="module")
def sim_frames(localize_env):
    """16 sim frames of Localize-v0 with their class masks."""
    frames, masks = [], []
    for s in range(16):
        localize_env.reset(seed=s)
        rgb, mask = localize_env.render_as("sim", return_mask=True)
        frames.append(rgb)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


# ---- classic randomization ----------------------------------------------------------------------


def test_classic_looks_keep_the_cube_red_and_nothing_else(localize_env) -> None:
    pool, red_pool = set(domains.texture_pool()), set(domains.red_texture_pool())
    for seed in range(200):
        look = domains.randomized_look(localize_env.scene, np.random.default_rng([seed, 5]))
        for name, tex, rgba in look.parts:
            if name == "object":
                if tex is None:
                    assert domains.is_red(rgba), (seed, rgba)
                else:
                    assert tex in red_pool and rgba[0] == rgba[1] == rgba[2], (seed, tex, rgba)
            elif tex is None:
                assert not domains.is_red(rgba), (seed, name, rgba)
            else:  # a non-red texture, only dimmed with a grey
                assert tex in pool and rgba[0] == rgba[1] == rgba[2], (seed, name, tex, rgba)
        for _, _, _, rgba in look.clutter:
            assert not domains.is_red(rgba), (seed, rgba)
        assert all(0.8 <= c <= 1.0 for c in look.light.color)


def test_classic_texture_pools_are_red_and_non_red() -> None:
    for path in domains.texture_pool():
        assert _red_share(_png(path)[::4, ::4]) == 0.0, path
    for path in domains.red_texture_pool():
        assert _red_share(_png(path)[::4, ::4]) > 0.95, path


def test_classic_frames_cube_red_dominant_distractors_not(localize_env) -> None:
    """Rendered: over a sample of seeds the cube's pixels are red-dominant and (almost) no other pixel is red."""
    looks = set()
    for seed in range(10):
        obs, info = localize_env.reset(seed=100 + seed)
        mask = info["mask"]
        cube = obs[mask == OBJECT].astype(np.float64)
        assert len(cube) >= 8, seed
        r, g, b = cube.mean(0)
        assert r > 1.8 * max(g, b), (seed, cube.mean(0))
        assert _red_share(obs[mask == OBJECT]) > 0.8, seed
        assert _red_share(obs[mask == DISTRACTOR]) < 0.05, seed
        assert _red_share(obs[(mask != OBJECT)]) < 0.01, seed
        looks.add(tuple(obs.reshape(-1, 3).mean(0).round()))
    assert len(looks) == 10  # and the looks do vary


# ---- augmentation kinds -------------------------------------------------------------------------


def _aug(kinds, n: int = 8, seed: int = 5, **kw) -> ImageAugmenter:
    aug = ImageAugmenter(kinds=kinds, **kw)
    aug.resample(list(range(n)), seed=seed)
    return aug


def _dot_frames(n: int, size: int = 32) -> np.ndarray:
    frames = np.full((n, size, size, 3), 40, np.uint8)
    frames[:, size // 2, size // 2] = (250, 20, 10)
    return frames


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_seeded(kind) -> None:
    n = 12
    frames = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    forced = {"conv_prob": 1.0}  # grayscale keeps its probability: which frames turn grey is the draw
    out = _aug((kind,), n, **forced).randomize(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(out, _aug((kind,), n, **forced).randomize(frames))  # same seed, same frames
    assert not np.array_equal(out, _aug((kind,), n, seed=6, **forced).randomize(frames))  # another seed
    assert not np.array_equal(out, frames)


@pytest.mark.parametrize("kind, border", [("random_shift", "replicate"), ("random_translate", "black")])
def test_shift_and_translate_move_the_content(kind, border) -> None:
    n, size = 16, 32
    aug = _aug((kind,), n, shift_pad=3)
    out = aug.randomize(_dot_frames(n, size))
    moved = 0
    for k in range(n):
        ys, xs = np.nonzero(out[k, :, :, 0] > 200)
        dy, dx = (int(round(v * 3)) for v in aug._params[k]["shift"])
        assert (ys.tolist(), xs.tolist()) == ([size // 2 - dy], [size // 2 - dx])  # the dot moved by the offset
        moved += (dy, dx) != (0, 0)
        if border == "black" and dy > 0:
            assert (out[k, -dy:] == 0).all()  # the uncovered rows are black
        if border == "replicate":
            assert (out[k, :, :, 1] == 40).sum() == size * size - 1  # the background is replicated, never black
    assert moved >= n // 2


def test_random_crop_zooms_in() -> None:
    n, size = 6, 40
    ramp = np.tile(np.linspace(0, 200, size).astype(np.uint8)[None, :, None], (size, 1, 3))
    out = _aug(("random_crop",), n, crop_scale=0.5).randomize(np.repeat(ramp[None], n, axis=0)).astype(np.float64)
    for k in range(n):
        slope = np.polyfit(np.arange(size), out[k, size // 2, :, 0], 1)[0]
        assert slope == pytest.approx(0.5 * 200 / (size - 1), rel=0.1)  # half the width fills the frame (2x zoom)
    assert len({int(out[k, 0, 0, 0]) for k in range(n)}) > 1  # at different offsets


def test_cutout_zeroes_one_patch() -> None:
    n, size = 12, 40
    frames = np.full((n, size, size, 3), 180, np.uint8)
    out = _aug(("cutout",), n, cutout_size=(0.1, 0.3)).randomize(frames)
    for k in range(n):
        zero = (out[k] == 0).all(-1)
        ys, xs = np.nonzero(zero)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert zero.sum() == h * w  # one filled rectangle
        assert 4 <= h <= 12 and 4 <= w <= 12
        assert (out[k][~zero] == 180).all()  # the rest untouched


def test_grayscale_has_equal_channels_with_its_probability() -> None:
    frames = np.random.default_rng(1).integers(0, 256, (200, 8, 8, 3), dtype=np.uint8)
    always = _aug(("grayscale",), 200, gray_prob=1.0).randomize(frames)
    assert (always[..., 0] == always[..., 1]).all() and (always[..., 1] == always[..., 2]).all()
    assert np.array_equal(_aug(("grayscale",), 200, gray_prob=0.0).randomize(frames), frames)
    some = _aug(("grayscale",), 200).randomize(frames)  # default 0.3
    grey = np.array([(f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in some])
    assert 0.2 < grey.mean() < 0.4


def test_random_conv_leaves_the_cube_distinguishable(sim_frames) -> None:
    """The cube's mean colour stays away from the table's and the distractors' in every frame (the
    unblended, always-on convolution of network randomization loses it in about a third)."""
    frames, masks = sim_frames
    n = len(frames)

    def gaps(out: np.ndarray) -> np.ndarray:
        res = []
        for f, m in zip(out.astype(np.float64), masks):
            cube = f[m == OBJECT].mean(0)
            res.append(min(np.linalg.norm(cube - f[m == TABLE].mean(0)), np.linalg.norm(cube - f[m == DISTRACTOR].mean(0))))
        return np.array(res)

    soft = gaps(_aug(("random_conv",), n, seed=3, conv_prob=1.0).randomize(frames))
    full = gaps(_aug(("random_conv",), n, seed=3, conv_prob=1.0, conv_mix=(1.0, 1.0)).randomize(frames))
    assert (soft > 30).all() and soft.mean() > 0.5 * gaps(frames).mean()
    assert full.mean() < soft.mean()
    applied = [p["conv_mix"] > 0 for p in _aug(("random_conv",), 400).__dict__["_params"].values()]
    assert 0.4 < np.mean(applied) < 0.6  # applied to about half the frames by default


def test_bad_options_raise() -> None:
    for kw in ({"conv_prob": 1.5}, {"conv_mix": (0.6, 0.2)}, {"crop_scale": 0.0}, {"cutout_size": (0.2, 1.2)},
               {"gray_prob": -0.1}, {"shift_pad": -1}):
        with pytest.raises(ValueError):
            ImageAugmenter(**kw)


def test_benchmark_augment_options_reach_the_augmenter() -> None:
    from domrand.config import ConfigError
    from domrand.transfer import load_benchmark_config
    from domrand.transfer.frames import augment_views

    with pytest.raises(ConfigError, match="conv_prob"):
        load_benchmark_config("smoke", **{"augment.conv_prob": 1.5})
    with pytest.raises(ConfigError, match="cutout_size"):
        load_benchmark_config("smoke", **{"augment.kinds": ["cutout"], "augment.cutout_size": [0.5, 0.2]})
    frames = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    grey = load_benchmark_config("smoke", **{"augment.kinds": ["grayscale"], "augment.gray_prob": 1.0})
    out = augment_views(grey, frames, 2)
    assert out.shape == (2, *frames.shape) and (out[..., 0] == out[..., 2]).all()
    off = load_benchmark_config("smoke", **{"augment.kinds": ["grayscale"], "augment.gray_prob": 0.0})
    assert np.array_equal(augment_views(off, frames, 1)[0], frames)


def test_in_domain_augment_frames_use_unseen_parameters() -> None:
    from domrand.transfer import load_benchmark_config
    from domrand.transfer.frames import augment_views

    cfg = load_benchmark_config("smoke")
    frames = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    train = augment_views(cfg, frames, 1)
    assert np.array_equal(train, augment_views(cfg, frames, 1))  # seeded
    assert not np.array_equal(train, augment_views(cfg, frames, 1, salt=1))  # the test stream differs
