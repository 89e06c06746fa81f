"""The fixed scene camera, lighting parameters and the renderer choice (TinyRenderer or EGL)."""

from __future__ import annotations

import dataclasses
import glob
import os
import warnings

import numpy as np
import pybullet as p

RENDERERS = ("auto", "tiny", "egl")


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera looking from ``eye`` at ``target`` (world metres) with vertical ``fov`` degrees."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    fov: float = 50.0  # vertical field of view, degrees
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    near: float = 0.05
    far: float = 5.0

    def shifted(self, eye: np.ndarray | tuple = (0, 0, 0), target: np.ndarray | tuple = (0, 0, 0), fov: float = 0.0) -> "Camera":
        """This camera with its eye and target moved and its field of view changed."""
        return dataclasses.replace(
            self,
            eye=tuple(float(a + b) for a, b in zip(self.eye, eye)),
            target=tuple(float(a + b) for a, b in zip(self.target, target)),
            fov=float(self.fov + fov),
        )

    def matrices(self, aspect: float = 1.0) -> tuple[list[float], list[float]]:
        """(view, projection) matrices in pybullet's flat column-major form."""
        view = p.computeViewMatrix(self.eye, self.target, self.up)
        proj = p.computeProjectionMatrixFOV(self.fov, aspect, self.near, self.far)
        return view, proj


@dataclasses.dataclass(frozen=True)
class Light:
    """Lighting of TinyRenderer (EGL uses direction and colour only)."""

    direction: tuple[float, float, float] = (0.4, -0.3, 1.0)  # towards the light
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distance: float = 2.0
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05
    shadow: bool = False


def gpu_available() -> bool:
    """Cheap check for a GPU device node EGL could use (no torch import)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.environ.get("DOMRAND_EGL") == "1"


def setup_renderer(client: int, renderer: str) -> int:
    """Resolve ``renderer`` ("auto", "tiny", "egl") for a pybullet client and return the pybullet flag.

    "auto" uses EGL when a GPU is visible and the plugin loads, otherwise TinyRenderer. "egl" that
    fails to load falls back to TinyRenderer with a warning.
    """
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    if renderer == "tiny" or (renderer == "auto" and not gpu_available()):
        return p.ER_TINY_RENDERER
    try:
        import pkgutil

        loader = pkgutil.get_loader("eglRenderer")
        plugin = loader.get_filename() if loader is not None else None
        pid = p.loadPlugin(plugin, "_eglRendererPlugin", physicsClientId=client) if plugin else -1
        if pid < 0:
            pid = p.loadPlugin("eglRendererPlugin", physicsClientId=client)
    except Exception:  # pragma: no cover - depends on the machine
        pid = -1
    if pid < 0:
        if renderer == "egl":
            warnings.warn("pybullet EGL renderer plugin did not load; using TinyRenderer", stacklevel=3)
        return p.ER_TINY_RENDERER
    return p.ER_BULLET_HARDWARE_OPENGL  # pragma: no cover - needs a GPU


def render(
    client: int,
    renderer_flag: int,
    camera: Camera,
    light: Light,
    width: int,
    height: int,
    want_segmentation: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one frame: (uint8 HxWx3 RGB, int32 HxW body-id segmentation or None)."""
    view, proj = camera.matrices(width / height)
    flags = 0 if want_segmentation else p.ER_NO_SEGMENTATION_MASK
    _, _, rgba, _, seg = p.getCameraImage(
        width,
        height,
        view,
        proj,
        lightDirection=list(light.direction),
        lightColor=list(light.color),
        lightDistance=light.distance,
        shadow=int(light.shadow),
        lightAmbientCoeff=light.ambient,
        lightDiffuseCoeff=light.diffuse,
        lightSpecularCoeff=light.specular,
        renderer=renderer_flag,
        flags=flags,
        physicsClientId=client,
    )
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()
    mask = np.asarray(seg, dtype=np.int32).reshape(height, width) if want_segmentation else None
    return rgb, mask
