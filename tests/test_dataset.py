"""Behaviour of the training-image loader, its cache and the batch sampler."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from domrand.generator.train import dataset
from domrand.generator.train.dataset import ImageSampler, load_images

R = 16


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _solid(h: int, w: int, color) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color
    return img


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    # Mixed sizes and aspects, nested folders, PNG and JPEG.
    for i, (h, w) in enumerate([(20, 20), (30, 50), (50, 30), (8, 12), (64, 64), (17, 23)]):
        _write_rgb(root / f"a/img{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    _write_rgb(root / "b/deep/red.jpg", _solid(40, 80, (255, 0, 0)))
    gray = np.full((24, 24), 77, np.uint8)
    assert cv2.imwrite(str(root / "b/gray.png"), gray)
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[..., 0] = 200  # OpenCV order: B
    rgba[..., 3] = 255
    assert cv2.imwrite(str(root / "b/rgba.PNG"), rgba)
    (root / "b/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "b/empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_mixed_sizes_colour_and_corrupt_files(mixed_folder: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_images(mixed_folder, R, cache_dir=tmp_path / "cache", min_images=4, progress=False)
    assert images.dtype == np.uint8 and images.shape == (9, R, R, 3)
    skipped = [w for w in caught if "skipped" in str(w.message)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    assert "2 unreadable" in str(skipped[0].message)
    # Sorted relative paths: a/img0..5, b/deep/red.jpg, b/gray.png, b/rgba.PNG
    np.testing.assert_array_equal(images[6].reshape(-1, 3).mean(0).round(), [254, 0, 0], err_msg="JPEG is RGB")
    assert (images[7] == 77).all(), "grayscale -> RGB"
    np.testing.assert_array_equal(images[8][0, 0], [0, 0, 200])  # BGRA -> RGB, alpha dropped
    # Down-sizing: a constant image stays constant; a 64x64 image is area-averaged by 4x4 blocks.
    src = cv2.cvtColor(cv2.imread(str(mixed_folder / "a/img4.png")), cv2.COLOR_BGR2RGB).astype(np.float64)
    expected = src.reshape(R, 4, R, 4, 3).mean(axis=(1, 3))
    assert np.abs(images[4] - expected).max() <= 1.0


def test_centre_crop_keeps_the_middle(tmp_path: Path) -> None:
    img = _solid(20, 60, (0, 0, 255))
    img[:, 20:40] = (0, 255, 0)  # the centre square is green, the sides blue
    out = dataset.prepare_image(img, 10)
    assert out.shape == (10, 10, 3)
    assert (out == [0, 255, 0]).all()
    up = dataset.prepare_image(_solid(5, 5, (10, 20, 30)), 12)  # enlarging works too
    assert up.shape == (12, 12, 3) and (up == [10, 20, 30]).all()


def test_empty_or_too_small_folder_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"found 0 PNG/JPEG file\(s\) in .*nothing_here"):
        load_images(empty, R, cache_dir=tmp_path / "c", progress=False)
    for i in range(3):
        _write_rgb(empty / f"{i}.png", _solid(8, 8, (i, i, i)))
    with pytest.raises(ValueError, match=r"found 3 .*need at least 16.*PNG/JPEG"):
        load_images(empty, R, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        load_images(tmp_path / "missing", R, cache_dir=tmp_path / "c")


def test_cache_hit_does_not_decode_and_corrupt_cache_is_rebuilt(mixed_folder, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    calls = []
    real_decode = dataset._decode_file
    monkeypatch.setattr(dataset, "_decode_file", lambda p: calls.append(p) or real_decode(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = load_images(mixed_folder, R, cache_dir=cache, min_images=4, progress=False)
    assert len(calls) == 11
    files = list(cache.glob("*.npy"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    calls.clear()
    second = load_images(mixed_folder, R, cache_dir=cache, min_images=4, progress=False)
    assert calls == [] and np.array_equal(first, second)

    files[0].write_bytes(b"garbage")  # corrupt cache -> warning, rebuilt, same result
    with pytest.warns(RuntimeWarning) as record:
        third = load_images(mixed_folder, R, cache_dir=cache, min_images=4, progress=False)
    assert any("rebuilding" in str(w.message) for w in record)
    assert len(calls) == 11 and np.array_equal(first, third)
    assert np.array_equal(np.load(files[0]), first)

    calls.clear()  # a different resolution or a changed file list is a different key
    _write_rgb(mixed_folder / "a/new.png", _solid(9, 9, (1, 2, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fourth = load_images(mixed_folder, R, cache_dir=cache, min_images=4, progress=False)
    assert len(fourth) == 10 and len(calls) == 12


def test_env_var_sets_default_cache_dir(mixed_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOMRAND_CACHE_DIR", str(tmp_path / "envcache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_images(mixed_folder, 8, min_images=4, progress=False)
    assert len(list((tmp_path / "envcache").glob("*.npy"))) == 1


def test_array_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (20, 24, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", nhwc)
    np.savez(tmp_path / "x.npz", other=np.zeros(3), images=nhwc.transpose(0, 3, 1, 2))
    a = load_images(tmp_path / "x.npy", R, cache_dir=tmp_path / "c", progress=False)
    b = load_images(tmp_path / "x.npz", R, cache_dir=tmp_path / "c", progress=False)
    assert a.shape == (20, R, R, 3) and np.array_equal(a, b)
    assert np.array_equal(a[3], dataset.prepare_image(nhwc[3], R))
    same = rng.integers(0, 256, (16, R, R, 3), dtype=np.uint8)
    np.savez(tmp_path / "same.npz", same)  # unnamed: first array; already sized: returned as is
    assert np.array_equal(load_images(tmp_path / "same.npz", R, cache_dir=tmp_path / "c"), same)

    np.save(tmp_path / "f.npy", nhwc.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_images(tmp_path / "f.npy", R, cache_dir=tmp_path / "c")
    np.save(tmp_path / "s.npy", nhwc[..., :2])
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\] or \[N, 3, H, W\]"):
        load_images(tmp_path / "s.npy", R, cache_dir=tmp_path / "c")
    (tmp_path / "bad.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor"):
        load_images(tmp_path / "bad.txt", R, cache_dir=tmp_path / "c")


def _images(n: int = 10) -> np.ndarray:
    # Image i is filled with value i*20 in the left half and 255 in the right half.
    imgs = np.full((n, 4, 4, 3), 255, np.uint8)
    for i in range(n):
        imgs[i, :, :2] = i * 20
    return imgs


def test_sampler_range_determinism_and_flip() -> None:
    imgs = _images()
    sampler = ImageSampler(imgs, xflip=False)
    x = sampler.sample(32, torch.Generator().manual_seed(3), "cpu")
    assert x.shape == (32, 3, 4, 4) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and (x[:, :, :, 3] == 1).all()
    y = sampler.sample(32, torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(x, y)
    assert not torch.equal(x, sampler.sample(32, torch.Generator().manual_seed(4), "cpu"))
    n1 = sampler.sample(8, np.random.default_rng(5))
    assert torch.equal(n1, sampler.sample(8, np.random.default_rng(5)))

    flipper = ImageSampler(imgs, xflip=True)
    z = flipper.sample(200, torch.Generator().manual_seed(0))
    flipped = (z[:, :, :, 0] == 1).all(dim=(1, 2))
    assert 60 < int(flipped.sum()) < 140  # about half mirrored
    assert (z[flipped][:, :, :, 3] < 1).all() and (z[~flipped][:, :, :, 3] == 1).all()
    assert imgs[0, 0, 3, 0] == 255, "the dataset itself is never modified"


def test_sampler_shards_are_disjoint_and_cover_the_data() -> None:
    imgs = _images(10)
    seen = []
    for rank in range(3):
        s = ImageSampler(imgs, rank=rank, world_size=3)
        x = s.sample(300, torch.Generator().manual_seed(rank))
        values = set(((x[:, 0, 0, 0] + 1) * 127.5).round().int().div(20, rounding_mode="floor").tolist())
        assert values == set(range(rank, 10, 3))
        seen.append(values)
    assert set().union(*seen) == set(range(10))
    with pytest.raises(ValueError, match="rank"):
        ImageSampler(imgs, rank=3, world_size=3)
    with pytest.raises(ValueError, match="uint8"):
        ImageSampler(imgs.astype(np.float32))
