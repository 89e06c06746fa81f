"""Training images: load a folder or array once into a uint8 cache, then sample batches.

``load_images`` turns a folder of PNG/JPEG files (searched recursively, any size and aspect) or a
``.npz``/``.npy`` array of uint8 images into one ``uint8 [N, R, R, 3]`` array: centre-crop to
square, resize to ``R`` (``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_CUBIC`` when enlarging).
The result is cached as a ``.npy`` file keyed by the file list (relative paths, sizes, mtimes), the
resolution and a format version, so later runs do not decode again.

``load_masks`` reads the class-id masks of such a frame set (``domrand export-frames --masks``
writes ``DIR/masks/NNNNNN.png`` beside ``DIR/frames/``) through the same crop/resize/cache path
(nearest-neighbour resize, so class ids stay ids), checked to pair one-to-one with the frames.

``ImageSampler`` draws float batches ``[B, 3, R, R]`` in ``[-1, 1]`` from that array,
deterministically from a passed generator, optionally x-flipped, optionally from one rank's shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from domrand.utils import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSampler",
    "default_cache_dir",
    "load_images",
    "load_masks",
    "masks_beside",
    "prepare_image",
    "prepare_mask",
    "read_class_ids",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
ARRAY_EXTENSIONS = (".npz", ".npy")
CACHE_FORMAT_VERSION = 1
_ACCEPTED = (
    "a folder searched recursively for PNG/JPEG images (.png, .jpg, .jpeg; hidden files skipped), "
    "or a .npz/.npy file holding uint8 images [N, H, W, 3] or [N, 3, H, W] "
    "(npz: the array named 'images', else the first array)"
)


def default_cache_dir() -> Path:
    """``$DOMRAND_CACHE_DIR`` if set, else ``~/.cache/domrand/datasets``."""
    env = os.environ.get("DOMRAND_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "domrand" / "datasets"


# ------------------------------------------------------------------------------------------------
# Per-image preparation


def prepare_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop an RGB ``uint8 [H, W, 3]`` image to square and resize it to ``resolution``.

    Shrinking uses ``cv2.INTER_AREA``; enlarging uses ``cv2.INTER_CUBIC`` (clipped to uint8).
    Returns a contiguous ``uint8 [resolution, resolution, 3]`` array.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    if side == resolution:
        return np.ascontiguousarray(square)
    interp = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(square), (resolution, resolution), interpolation=interp)
    if out.ndim == 2:  # cv2 drops a singleton channel axis
        out = out[:, :, None]
    return out


def _to_rgb_uint8(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's decoded ``[H, W]``, ``[H, W, 1|3|4]`` (BGR/BGRA, uint8 or uint16) -> RGB uint8."""
    if decoded.dtype == np.uint16:
        decoded = (decoded.astype(np.uint32) * 255 + 32767) // 65535
        decoded = decoded.astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ValueError(f"unsupported decoded dtype {decoded.dtype}")
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    channels = decoded.shape[2]
    if channels == 1:
        return cv2.cvtColor(decoded[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if channels == 4:  # alpha is dropped, not composited
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"unsupported channel count {channels}")


def _decode_file(path: Path) -> np.ndarray | None:
    """Decode one image file to RGB ``uint8 [H, W, 3]``; ``None`` when unreadable or corrupt."""
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths, unlike imread
        if raw.size == 0:
            return None
        decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        if decoded is None or decoded.size == 0:
            return None
        return _to_rgb_uint8(decoded)
    except (OSError, ValueError, cv2.error):
        return None


# ------------------------------------------------------------------------------------------------
# Sources


def _list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative path; hidden entries skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _cache_key(kind: str, entries: Sequence[tuple[str, int, int]], resolution: int) -> str:
    payload = json.dumps(
        {"version": CACHE_FORMAT_VERSION, "kind": kind, "resolution": int(resolution), "files": list(entries)},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _stat_entry(path: Path, base: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (path.relative_to(base).as_posix(), int(st.st_size), int(st.st_mtime_ns))


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _check_array_magic(path: Path) -> None:
    """Refuse a file that is not a NumPy array (or .npz archive) before NumPy parses it."""
    with open(path, "rb") as f:
        head = f.read(6)
    want, what = (_NPY_MAGIC, "a .npy array") if path.suffix.lower() == ".npy" else (_ZIP_MAGIC, "a .npz archive")
    if not head.startswith(want):
        raise ValueError(f"{path}: not {what} (its first bytes are not a NumPy header; pickles and other data are refused); accepted: {_ACCEPTED}")


def _array_error(path: Path, exc: BaseException) -> ValueError:
    """One line naming the file, without NumPy's advice to enable pickle."""
    msg = " ".join(str(exc).split())
    if "pickle" in msg.lower() or "object" in msg.lower():
        msg = "it holds Python objects (pickled data), which domrand refuses to load"
    return ValueError(f"{path}: could not read the array file ({msg[:160]}); accepted: {_ACCEPTED}")


def _load_array_file(path: Path) -> np.ndarray:
    """Read a ``.npy``/``.npz`` file and return uint8 images as ``[N, H, W, 3]`` (maybe a view)."""
    try:
        _check_array_magic(path)
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if not names:
                    raise ValueError(f"{path}: the .npz file holds no arrays; accepted: {_ACCEPTED}")
                arr = npz["images"] if "images" in names else npz[names[0]]
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise _array_error(path, exc) from None
    except Exception as exc:  # zipfile/pickle/format/OS errors
        raise _array_error(path, exc) from None
    if arr.dtype != np.uint8:
        raise ValueError(
            f"{path}: images must be uint8 (0..255), got dtype {arr.dtype}; accepted: {_ACCEPTED}"
        )
    if arr.ndim == 4 and arr.shape[-1] == 3:
        return arr
    if arr.ndim == 4 and arr.shape[1] == 3:
        return arr.transpose(0, 2, 3, 1)
    raise ValueError(f"{path}: images must have shape [N, H, W, 3] or [N, 3, H, W], got {list(arr.shape)}")


def _too_few(
    found: int, where: Path, min_images: int, skipped: int = 0, what: str = "usable image(s)"
) -> ValueError:
    extra = f" ({skipped} more were unreadable and skipped)" if skipped else ""
    return ValueError(f"found {found} {what} in {where}{extra}, need at least {min_images}; accepted: {_ACCEPTED}")


# ------------------------------------------------------------------------------------------------
# Cache


def _read_cache(path: Path, resolution: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (resolution, resolution, 3):
            raise ValueError(f"unexpected dtype/shape {arr.dtype} {list(arr.shape)}")
        return arr
    except Exception as exc:
        warnings.warn(f"dataset cache {path} is unreadable ({exc}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None


def _write_cache(path: Path, images: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object, so np.save does not append ".npy"
                np.save(f, images, allow_pickle=False)
    except OSError as exc:
        msg = f"could not write dataset cache {path} ({exc}); continuing without it"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------------
# Public loader


def load_images(
    source: str | os.PathLike,
    resolution: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    min_images: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """Load training images as ``uint8 [N, resolution, resolution, 3]`` (RGB).

    ``source``: a folder searched recursively for ``.png``/``.jpg``/``.jpeg`` files (hidden files
    and folders skipped; grayscale, RGBA and 16-bit files become 8-bit RGB), or a ``.npy``/``.npz``
    file of uint8 images ``[N, H, W, 3]`` or ``[N, 3, H, W]`` (npz: array ``images``, else the
    first). Each image is centre-cropped to square and resized. Unreadable files are skipped and
    reported in one warning. The result is cached under ``cache_dir`` (default
    :func:`default_cache_dir`) as ``.npy``; a cache hit decodes nothing, a corrupt cache is rebuilt,
    an unwritable cache directory only warns. Arrays already at the right size are returned as is.

    Raises ``ValueError`` when ``source`` does not exist or is of an unknown kind, when an array has
    the wrong dtype/shape, or when fewer than ``min_images`` usable images are found.
    """
    resolution = int(resolution)
    if resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution}")
    source = Path(source).expanduser()
    if not source.exists():
        raise ValueError(f"dataset source {source} does not exist; accepted: {_ACCEPTED}")
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    if source.is_dir():
        files = _list_image_files(source)
        if len(files) < min_images:
            raise _too_few(len(files), source, min_images, what="PNG/JPEG file(s)")
        key = _cache_key("folder", [_stat_entry(f, source) for f in files], resolution)
        cache_path = cache_root / f"{source.name or 'data'}-{resolution}px-{key[:20]}.npy"
        cached = _read_cache(cache_path, resolution)
        if cached is not None:
            log.debug("dataset cache hit: %s (%d images)", cache_path, len(cached))
            if len(cached) < min_images:
                raise _too_few(len(cached), source, min_images)
            return cached
        images, bad = _decode_folder(files, resolution, progress=progress)
        if bad:
            example = bad[0].relative_to(source).as_posix()
            warnings.warn(
                f"skipped {len(bad)} unreadable or corrupt image file(s) of {len(files)} in {source} "
                f"(e.g. {example})",
                RuntimeWarning,
                stacklevel=2,
            )
        if len(images) < min_images:
            raise _too_few(len(images), source, min_images, skipped=len(bad))
        _write_cache(cache_path, images)
        return images

    if source.suffix.lower() not in ARRAY_EXTENSIONS:
        raise ValueError(
            f"dataset source {source} is neither a folder nor a .npz/.npy file; accepted: {_ACCEPTED}"
        )
    arr = _load_array_file(source)
    if len(arr) < min_images:
        raise _too_few(len(arr), source, min_images)
    if arr.shape[1:] == (resolution, resolution, 3):  # already sized: no resize, no cache
        return np.array(arr, copy=True) if isinstance(arr, np.memmap) else np.ascontiguousarray(arr)
    key = _cache_key("array", [_stat_entry(source, source.parent)], resolution)
    cache_path = cache_root / f"{source.stem}-{resolution}px-{key[:20]}.npy"
    cached = _read_cache(cache_path, resolution)
    if cached is not None:
        return cached
    out = np.empty((len(arr), resolution, resolution, 3), dtype=np.uint8)
    for i in _progress(range(len(arr)), progress, f"resizing {source.name}"):
        out[i] = prepare_image(np.asarray(arr[i]), resolution)
    _write_cache(cache_path, out)
    return out


def _progress(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False)


def _decode_folder(files: list[Path], resolution: int, *, progress: bool) -> tuple[np.ndarray, list[Path]]:
    """Decode and prepare ``files`` in order (threads; OpenCV releases the GIL)."""
    out = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)

    def work(i: int) -> None:
        img = _decode_file(files[i])
        if img is not None:
            out[i] = prepare_image(img, resolution)
            ok[i] = True

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in _progress(pool.map(work, range(len(files))), progress, "decoding images", total=len(files)):
            pass
    bad = [f for f, good in zip(files, ok) if not good]
    return (out if ok.all() else out[ok]), bad


# ------------------------------------------------------------------------------------------------
# Sampling


# ------------------------------------------------------------------------------------------------
# Masks (class ids per pixel), paired with a frame set


MASK_ACCEPTED = (
    "a folder of uint8 class-id PNGs with the same relative file names as the frames "
    "(domrand export-frames --masks: DIR/masks/ beside DIR/frames/), or a .npy/.npz file holding "
    "uint8 masks [N, H, W] in the frames' order (npz: the array named 'masks', else the first array)"
)


def prepare_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop a class-id mask ``uint8 [H, W]`` to square and resize it to ``resolution``
    (nearest neighbour: ids stay ids), the same crop as :func:`prepare_image`."""
    h, w = mask.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(mask[top : top + side, left : left + side])
    if side == resolution:
        return square
    return cv2.resize(square, (resolution, resolution), interpolation=cv2.INTER_NEAREST)


def masks_beside(frames_source: str | os.PathLike) -> Path:
    """``--sim-masks auto``: the ``masks/`` folder beside a ``frames/`` folder (export-frames layout)."""
    src = Path(frames_source).expanduser()
    cand = src.parent / "masks" if src.name == "frames" else src / "masks"
    if not cand.is_dir():
        raise ValueError(
            f"--sim-masks auto: no masks folder {cand} beside the frames {src} (expected DIR/frames/ + DIR/masks/ "
            "from domrand export-frames --masks); pass the masks explicitly"
        )
    return cand


def read_class_ids(mask_source: str | os.PathLike) -> dict[str, int] | None:
    """``class_ids`` of the ``meta.json`` in or beside a mask source (export-frames writes
    ``DIR/meta.json`` beside ``DIR/masks/``), else ``None``."""
    src = Path(mask_source).expanduser()
    base = src if src.is_dir() else src.parent
    for meta in (base / "meta.json", base.parent / "meta.json"):
        if meta.is_file():
            try:
                ids = json.loads(meta.read_text()).get("class_ids")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(ids, dict) and all(isinstance(v, int) for v in ids.values()):
                return {str(k): int(v) for k, v in ids.items()}
    return None


def _mask_error(source: Path, frames_source: Path, why: str) -> ValueError:
    return ValueError(f"masks {source} do not pair with frames {frames_source}: {why}; accepted: {MASK_ACCEPTED}")


def _decode_mask(path: Path) -> np.ndarray | None:
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
        m = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    except (OSError, cv2.error):
        return None
    if m is None or m.dtype != np.uint8:
        return None
    return m if m.ndim == 2 else m[:, :, 0]


def _frame_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of a PNG from its header (no decode), else ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(b"\x89PNG") or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def _frames_array_shape(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of the images in a ``.npy`` frame file (memory-mapped header only), else ``None``."""
    if path.suffix.lower() != ".npy":
        return None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return None
    if arr.ndim != 4:
        return None
    return (int(arr.shape[1]), int(arr.shape[2])) if arr.shape[-1] == 3 else (int(arr.shape[2]), int(arr.shape[3]))


def load_masks(
    source: str | os.PathLike,
    frames_source: str | os.PathLike,
    resolution: int,
    *,
    n_frames: int,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Class-id masks ``uint8 [n_frames, resolution, resolution]`` aligned with
    ``load_images(frames_source, resolution)`` (mask ``i`` belongs to frame ``i``).

    ``source``: a folder of mask PNGs (recursive, hidden entries skipped) whose sorted relative
    names equal the frames folder's (so ``DIR/masks/`` pairs with ``DIR/frames/``), or a ``.npy``/
    ``.npz`` of uint8 ``[N, H, W]`` in the frames' order. Each mask gets the frames' centre crop and
    a nearest-neighbour resize; folder results are cached like frames. Raises a one-line
    ``ValueError`` naming both sources and the accepted form when names, counts or sizes differ,
    or when a mask is unreadable.
    """
    resolution = int(resolution)
    source, frames_source = Path(source).expanduser(), Path(frames_source).expanduser()
    if not source.exists():
        raise _mask_error(source, frames_source, "the mask source does not exist")
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    frame_files: list[Path] | None = None
    frame_shape = None if frames_source.is_dir() else _frames_array_shape(frames_source)
    if source.is_dir():
        files = _list_image_files(source)
        if frames_source.is_dir():
            frame_files = _list_image_files(frames_source)
            if len(frame_files) != n_frames:
                raise _mask_error(source, frames_source, f"{len(frame_files) - n_frames} frame file(s) were unreadable and skipped")
            names = [f.relative_to(source).with_suffix("").as_posix() for f in files]
            fnames = [f.relative_to(frames_source).with_suffix("").as_posix() for f in frame_files]
            if names != fnames:
                extra = sorted(set(fnames) - set(names))
                what = f"no mask for frame {extra[0]!r}" if extra else "the file names differ"
                raise _mask_error(source, frames_source, f"{len(files)} mask(s) for {len(frame_files)} frame(s), {what}")
        elif len(files) != n_frames:
            raise _mask_error(source, frames_source, f"{len(files)} mask(s) for {n_frames} frame(s)")
        entries = [_stat_entry(f, source) for f in files]
        entries += [_stat_entry(f, frames_source) for f in frame_files or []]  # a changed frame re-checks sizes
        key = _cache_key("masks", entries, resolution)
        cache_path = cache_root / f"{source.name or 'masks'}-masks-{resolution}px-{key[:20]}.npy"
        if cache_path.is_file():
            try:
                arr = np.load(cache_path, allow_pickle=False)
                if arr.dtype == np.uint8 and arr.shape == (n_frames, resolution, resolution):
                    return arr
            except Exception:  # a corrupt cache is rebuilt
                pass
        out = np.empty((len(files), resolution, resolution), dtype=np.uint8)
        first = None
        for i in _progress(range(len(files)), progress, "decoding masks"):
            m = _decode_mask(files[i])
            if m is None:
                raise _mask_error(source, frames_source, f"cannot read {files[i].relative_to(source).as_posix()} as a uint8 PNG")
            first = m.shape if first is None else first
            if m.shape != first:
                raise _mask_error(source, frames_source, f"mask sizes differ ({list(first)} vs {list(m.shape)} at {files[i].name})")
            fsize = _frame_size(frame_files[i]) if frame_files is not None else frame_shape
            if fsize is not None and tuple(fsize) != tuple(m.shape):
                raise _mask_error(
                    source, frames_source,
                    f"mask {files[i].relative_to(source).as_posix()} is {m.shape[0]}x{m.shape[1]}, its frame {fsize[0]}x{fsize[1]}",
                )  # fmt: skip
            out[i] = prepare_mask(m, resolution)
        try:
            with atomic_path(cache_path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, out, allow_pickle=False)
        except OSError:
            pass
        return out
    if source.suffix.lower() not in ARRAY_EXTENSIONS:
        raise _mask_error(source, frames_source, "the mask source is neither a folder nor a .npy/.npz file")
    try:
        _check_array_magic(source)
        if source.suffix.lower() == ".npy":
            arr = np.load(source, allow_pickle=False)
        else:
            with np.load(source, allow_pickle=False) as npz:
                if not npz.files:
                    raise ValueError("the .npz file holds no arrays")
                arr = npz["masks"] if "masks" in npz.files else npz[npz.files[0]]
    except Exception as exc:
        raise _mask_error(source, frames_source, f"could not read the array ({' '.join(str(exc).split())[:120]})") from None
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise _mask_error(source, frames_source, f"expected uint8 [N, H, W], got {arr.dtype} {list(arr.shape)}")
    if len(arr) != n_frames:
        raise _mask_error(source, frames_source, f"{len(arr)} mask(s) for {n_frames} frame(s)")
    if frame_shape is not None and tuple(arr.shape[1:]) != frame_shape:
        raise _mask_error(source, frames_source, f"masks are {arr.shape[1]}x{arr.shape[2]}, frames {frame_shape[0]}x{frame_shape[1]}")
    return np.stack([prepare_mask(m, resolution) for m in arr]) if arr.shape[1:] != (resolution, resolution) else np.ascontiguousarray(arr)


class ImageSampler:
    """Draw random float batches from a ``uint8 [N, R, R, 3]`` image array.

    Sampling is with replacement (an endless stream) and deterministic given the generator's
    state. With ``world_size > 1`` rank ``rank`` only draws from indices ``rank::world_size``.
    """

    def __init__(
        self,
        images: np.ndarray,
        *,
        xflip: bool = False,  # mirror each drawn image with probability 0.5
        rank: int = 0,  # this process's rank for data sharding
        world_size: int = 1,  # number of processes sharing the dataset
        masks: np.ndarray | None = None,  # uint8 [N, R, R] class ids paired with images (sample_with_masks)
    ) -> None:
        ok = isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
        if not ok or images.shape[-1] != 3:
            got = f"{type(images).__name__} {getattr(images, 'dtype', '?')} {list(getattr(images, 'shape', []))}"
            raise ValueError(f"images: expected a uint8 numpy array [N, R, R, 3], got {got}")
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"images: expected square images [N, R, R, 3], got {list(images.shape)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.xflip = bool(xflip)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.indices = np.arange(self.rank, len(images), self.world_size)
        if len(self.indices) == 0:
            raise ValueError(f"rank {rank} of {world_size} gets no images from a dataset of {len(images)}")
        shard = images if self.world_size == 1 else images[self.indices]
        if not shard.flags.writeable:
            shard = shard.copy()
        self._images = torch.from_numpy(np.ascontiguousarray(shard))  # shares memory when possible
        self._masks = None
        if masks is not None:
            if not isinstance(masks, np.ndarray) or masks.dtype != np.uint8 or masks.shape != images.shape[:3]:
                got = f"{type(masks).__name__} {getattr(masks, 'dtype', '?')} {list(getattr(masks, 'shape', []))}"
                raise ValueError(f"masks: expected a uint8 numpy array {list(images.shape[:3])} (one per image), got {got}")
            mshard = masks if self.world_size == 1 else masks[self.indices]
            self._masks = torch.from_numpy(np.array(mshard, copy=True))

    def __len__(self) -> int:
        """Number of images in this rank's shard."""
        return len(self.indices)

    @property
    def resolution(self) -> int:
        return int(self._images.shape[1])

    def sample(
        self,
        batch: int,
        generator: torch.Generator | np.random.Generator,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """Return ``float32 [batch, 3, R, R]`` in ``[-1, 1]`` on ``device``.

        Indices (and flips) are drawn from ``generator`` only, so equal generator states give equal
        batches. Returns a tensor that does not share memory with the dataset.
        """
        return self._draw(batch, generator, device, with_masks=False)[0]

    @property
    def has_masks(self) -> bool:
        return self._masks is not None

    def sample_with_masks(
        self,
        batch: int,
        generator: torch.Generator | np.random.Generator,
        device: str | torch.device = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 [batch, 3, R, R] in [-1, 1], masks uint8 [batch, R, R])``: the same
        indices and flips for both, and the same draws from ``generator`` as :meth:`sample`."""
        if self._masks is None:
            raise ValueError("sample_with_masks: this sampler was built without masks")
        x, m = self._draw(batch, generator, device, with_masks=True)
        assert m is not None
        return x, m

    def _draw(
        self, batch: int, generator: torch.Generator | np.random.Generator, device: str | torch.device, with_masks: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = len(self.indices)
        if isinstance(generator, np.random.Generator):
            idx = torch.from_numpy(generator.integers(0, n, size=batch, dtype=np.int64))
            flip = torch.from_numpy(generator.random(batch) < 0.5) if self.xflip else None
        elif isinstance(generator, torch.Generator):
            idx = torch.randint(n, (batch,), generator=generator, device=generator.device).cpu()
            flip = None
            if self.xflip:
                flip = (torch.rand(batch, generator=generator, device=generator.device) < 0.5).cpu()
        else:
            raise TypeError(
                f"generator: expected torch.Generator or numpy.random.Generator, got {type(generator).__name__}"
            )
        x = self._images[idx]  # uint8 [B, R, R, 3], a copy
        m = self._masks[idx] if (with_masks and self._masks is not None) else None  # uint8 [B, R, R]
        if flip is not None and bool(flip.any()):
            x[flip] = x[flip].flip(2)
            if m is not None:
                m[flip] = m[flip].flip(2)
        x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).to(torch.float32)
        return (x / 127.5 - 1.0).contiguous(), (None if m is None else m.to(device))
