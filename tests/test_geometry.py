"""The geometry score: a small segmenter trained on one domain; mean IoU against frames' own masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domrand.geometry import SegNet, geometry_score, load_frames_with_masks, mean_iou, train_segmenter

R = 32


def _scenes(n: int, seed: int, palette=((200, 40, 40), (40, 60, 210))) -> tuple[np.ndarray, np.ndarray]:
    """Grey-noise background with a red (class 1) and a blue (class 2) rectangle at random places."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(90, 140, size=(n, R, R, 3)).astype(np.uint8)
    masks = np.zeros((n, R, R), np.uint8)
    for i in range(n):
        for cls, color in enumerate(palette, start=1):
            h, w = rng.integers(6, 13, size=2)
            y, x = rng.integers(0, R - h), rng.integers(0, R - w)
            imgs[i, y : y + h, x : x + w] = np.asarray(color) + rng.integers(-15, 15, size=3)
            masks[i, y : y + h, x : x + w] = cls
    return imgs, masks


@pytest.fixture(scope="module")
def segmenter():
    torch.set_num_threads(1)
    imgs, masks = _scenes(96, seed=0)
    return train_segmenter(imgs, masks, num_classes=3, steps=120, batch=16, width=8, seed=0)


def test_mean_iou_basics():
    t = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    assert mean_iou(t, t, 3)["miou"] == pytest.approx(1.0)
    p = np.zeros_like(t)
    r = mean_iou(p, t, 3)
    assert r["per_class"][1] == 0.0 and r["per_class"][2] == 0.0
    assert 0 < r["miou"] < 0.5
    # a class absent from both prediction and target is left out of the mean
    assert mean_iou(t, t, 5)["per_class"][4] is None and mean_iou(t, t, 5)["miou"] == 1.0


def test_score_high_in_domain_and_falls_with_shifted_masks(segmenter):
    imgs, masks = _scenes(48, seed=1)  # held out, same domain
    good = geometry_score(segmenter, imgs, masks)
    assert good["miou"] > 0.8, good
    shifted = np.roll(masks, shift=(5, 5), axis=(1, 2))
    bad = geometry_score(segmenter, imgs, shifted)
    assert bad["miou"] < good["miou"] - 0.3, (good, bad)
    # a different appearance of the same layouts (swapped colours) scores far lower: the floor
    other, other_masks = _scenes(48, seed=1, palette=((40, 200, 40), (230, 230, 40)))
    assert geometry_score(segmenter, other, other_masks)["miou"] < good["miou"] - 0.2


def test_segnet_checks_shapes():
    with pytest.raises(ValueError, match="divisible by 4"):
        SegNet(3)(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match="masks"):
        train_segmenter(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 4, 4), np.uint8), steps=1)


def test_load_frames_with_masks(tmp_path):
    import cv2

    imgs, masks = _scenes(3, seed=2)
    (tmp_path / "frames").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"{i:06d}.png"), cv2.cvtColor(imgs[i], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "masks" / f"{i:06d}.png"), masks[i])
    (tmp_path / "meta.json").write_text('{"class_ids": {"background": 0, "red": 1, "blue": 2}}')
    f, m, ids = load_frames_with_masks(tmp_path)
    assert np.array_equal(f, imgs) and np.array_equal(m, masks) and ids["blue"] == 2
    f16, m16, _ = load_frames_with_masks(tmp_path, resolution=16)
    assert f16.shape == (3, 16, 16, 3) and m16.shape == (3, 16, 16) and set(np.unique(m16)) <= {0, 1, 2}
    with pytest.raises(FileNotFoundError, match="frames/"):
        load_frames_with_masks(tmp_path / "frames")
