"""Files the scenes need: pybullet_data paths, textures and UV-mapped meshes.

pybullet loads textures and meshes only from files, so everything generated here (photo textures
cut from the images scikit-image ships, procedural textures for classic domain randomization,
copies of ``random_urdfs`` meshes with texture coordinates) is written once into a cache folder
and reused. Nothing is downloaded. The folder is ``$DOMRAND_CACHE`` or
``<tmp>/domrand-cache-<user>``; files are written atomically so parallel processes can share it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from typing import Callable

import numpy as np

# Photos bundled with scikit-image (no network): name -> loader attribute in skimage.data.
PHOTOS = (
    "brick",
    "grass",
    "gravel",
    "coffee",
    "chelsea",
    "rocket",
    "astronaut",
    "hubble_deep_field",
    "moon",
    "page",
    "camera",
    "coins",
)

PROCEDURAL_KINDS = ("checker", "noise", "gradient", "stripes")


def data_path(*parts: str) -> str:
    """Absolute path of a file in ``pybullet_data``."""
    import pybullet_data

    return os.path.join(pybullet_data.getDataPath(), *parts)


def cache_dir() -> str:
    """The folder generated assets are written to (created on first use)."""
    root = os.environ.get("DOMRAND_CACHE")
    if not root:
        user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
        root = os.path.join(tempfile.gettempdir(), f"domrand-cache-{user}")
    path = os.path.join(root, "envs-v1")
    os.makedirs(path, exist_ok=True)
    return path


def _atomic_write(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_png(image: np.ndarray, name: str | None = None) -> str:
    """Write a uint8 HxWx3 image as PNG into the cache (name = content hash) and return its path."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if name is None:
        name = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir(), f"tex-{name}.png")
    if not os.path.exists(path):
        ok, buf = cv2.imencode(".png", image[..., ::-1])
        if not ok:  # pragma: no cover - cv2 failure
            raise RuntimeError(f"could not encode texture {name}")
        _atomic_write(path, buf.tobytes())
    return path


@functools.lru_cache(maxsize=None)
def resized_texture(path: str, max_side: int) -> str:
    """A cached copy of an image file scaled down to at most ``max_side`` pixels (TinyRenderer
    samples small textures faster; at env resolutions they look the same)."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read texture {path}")
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{max_side}".encode()).hexdigest()[:16]
    return write_png(img[..., ::-1], f"small-{key}")


@functools.lru_cache(maxsize=1)
def white_texture() -> str:
    """A plain white texture: "no texture" (EGL cannot remove a texture once set)."""
    return write_png(np.full((4, 4, 3), 255, np.uint8), "white")


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as uint8 HxWx3 (grey photos are repeated on 3 channels)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo texture {name!r}; choose from {', '.join(PHOTOS)}")
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-8))).astype(np.uint8)
    return np.ascontiguousarray(img)


def photo_texture(
    name: str,
    rng: np.random.Generator,
    size: int = 128,
    crop: float = 0.6,
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
    contrast: float = 1.0,
    brightness: float | None = None,
) -> np.ndarray:
    """A random square crop of a bundled photo, resized to ``size``, tinted and contrast-scaled.

    ``crop`` is the crop side as a fraction of the photo's shorter side; ``brightness`` (0..1), if
    given, sets the crop's mean intensity before tinting (so small objects stay visible).
    """
    import cv2

    img = photo(name)
    h, w = img.shape[:2]
    side = max(8, int(min(h, w) * crop))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    patch = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    f = patch.astype(np.float32) / 255.0
    mean = float(f.mean()) if brightness is None else float(brightness)
    f = (f - f.mean()) * contrast + mean
    f = f * np.asarray(tint, np.float32)[None, None, :]
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def procedural_texture(
    kind: str,
    rng: np.random.Generator,
    size: int = 64,
    color: Callable[[np.random.Generator], np.ndarray] | None = None,  # draws one RGB in [0, 1] (None: uniform)
) -> np.ndarray:
    """A classic domain-randomization texture: checker, noise, gradient or stripes (uint8 HxWx3).

    Its colours come from ``color(rng)`` (e.g. only red shades, or only non-red colours).
    """
    draw = color or (lambda r: r.random(3))
    c1, c2 = np.asarray(draw(rng), np.float64), np.asarray(draw(rng), np.float64)
    if kind == "checker":
        n = int(rng.integers(2, 9))
        yy, xx = np.mgrid[0:size, 0:size] * n // size
        sel = ((yy + xx) % 2).astype(np.float32)[..., None]
        out = c1 * sel + c2 * (1 - sel)
    elif kind == "noise":
        cells = int(rng.integers(4, size // 2 + 1))
        import cv2

        if color is None:
            small = rng.random((cells, cells, 3)).astype(np.float32)
        else:  # blends of the two drawn colours (blends within one hue wedge stay in it; see domains)
            t = rng.random((cells, cells, 1)).astype(np.float32)
            small = (c1 * t + c2 * (1 - t)).astype(np.float32)
        out = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR)
    elif kind == "gradient":
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = (np.cos(ang) * xx + np.sin(ang) * yy)
        t = ((t - t.min()) / max(float(np.ptp(t)), 1e-8))[..., None]
        out = c1 * t + c2 * (1 - t)
    elif kind == "stripes":
        n = int(rng.integers(2, 10))
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = ((np.cos(ang) * xx + np.sin(ang) * yy) * n * 2).astype(int) % 2
        out = c1 * t[..., None] + c2 * (1 - t[..., None])
    else:
        raise ValueError(f"unknown procedural texture kind {kind!r}; choose from {PROCEDURAL_KINDS}")
    return np.clip(np.asarray(out) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _read_obj(path: str) -> tuple[np.ndarray, np.ndarray]:
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(v) for v in line.split()[1:4]])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    return np.asarray(verts, np.float64), np.asarray(faces, np.int64).reshape(-1, 3)


def _cluster(v: np.ndarray, f: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering simplification: merge vertices within grid cells of side ``cell``."""
    keys = np.floor((v - v.min(0)) / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, inverse, v)
    merged /= counts[:, None]
    nf = inverse[f]
    keep = (nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])
    nf = np.unique(nf[keep], axis=0)
    return merged, nf


def uv_mesh(obj_path: str, cell: float | None = None) -> str:
    """A copy of a Wavefront OBJ with box-projected texture coordinates (for meshes that lack them),
    optionally simplified by merging vertices closer than ``cell`` (mesh units) to render faster.

    Each face gets the UVs of the two axes its normal is most perpendicular to, so a texture shows
    on every side. Returns the path of the cached copy.
    """
    key = hashlib.sha1(f"{os.path.abspath(obj_path)}|{cell}".encode()).hexdigest()[:16]
    out = os.path.join(cache_dir(), f"mesh-{key}.obj")
    if os.path.exists(out):
        return out
    v, faces = _read_obj(obj_path)
    if cell:
        v, faces = _cluster(v, faces, cell)
    span = max(float(np.ptp(v, 0).max()), 1e-9)
    unit = (v - v.min(0)) / span
    lines = [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    uv_lines: list[str] = []
    face_lines: list[str] = []
    for idx in faces:
        pts = v[idx]
        normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])
        axis = int(np.argmax(np.abs(normal)))
        uax = [a for a in range(3) if a != axis]
        toks = []
        for i in idx:
            uv_lines.append(f"vt {unit[i, uax[0]]:.6f} {unit[i, uax[1]]:.6f}")
            toks.append(f"{i + 1}/{len(uv_lines)}")
        face_lines.append("f " + " ".join(toks))
    text = "\n".join(["# box-projected UVs added by domrand", *lines, *uv_lines, *face_lines]) + "\n"
    _atomic_write(out, text.encode())
    return out


def kuka_urdf(cell: float = 0.02) -> str:
    """A copy of pybullet_data's KUKA iiwa URDF whose visual meshes are simplified and UV-mapped
    (collision meshes unchanged). TinyRenderer time is dominated by the arm's triangles."""
    src = data_path("kuka_iiwa", "model.urdf")
    out = os.path.join(cache_dir(), f"kuka_iiwa-{str(cell).replace('.', 'p')}.urdf")
    if os.path.exists(out):
        return out
    import re

    with open(src) as fh:
        text = fh.read()
    mesh_dir = data_path("kuka_iiwa", "meshes")

    def swap(match: "re.Match[str]") -> str:
        name = match.group(1)
        path = os.path.join(mesh_dir, name)
        new = uv_mesh(path, cell) if name.endswith(".obj") else path
        return f'filename="{new}"'

    text = re.sub(r'filename="meshes/([^"]+)"', swap, text)
    _atomic_write(out, text.encode())
    return out
