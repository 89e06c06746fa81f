"""``target-lab``: a varied target domain, one camera in one lab over a day.

The fixed presets ``target-a/b/c`` are single looks (their frame-mean colour moves by about
2.4/255 across episodes). A real robot camera does not: the light changes over a day, the camera's
auto exposure and auto white balance correct it only in part, the noise follows the gain. The
``target-lab`` family draws a new look for every episode from the distribution below
(:class:`LabFamily` holds its ranges; :func:`draw_lab_look` draws one :class:`LabLook`).

Per episode (``U`` uniform, ``logU`` log-uniform, all from the episode's *look seed*):

=====================  ==================================================================================
light                  key light from azimuth ``U(0, 360)`` deg, elevation ``U(25, 80)`` deg; colour
                       temperature ``logU(2700, 6500)`` K (warm lamp to daylight, Planck's law at 610 /
                       550 / 465 nm, softened to sRGB-like casts); brightness ``logU(0.5, 1.8)`` x
                       nominal; ambient ``U(0.15, 0.55)``, diffuse ``U(0.3, 0.8)``, specular
                       ``U(0, 0.3)``; shadows with probability 0.75
auto exposure          per frame: the gain that brings the mean luminance to 0.5 x 255, applied in
                       part (strength ``U(0.4, 0.85)`` in log space) with a metering bias
                       ``U(-0.6, 0.6)`` EV; at least up to a mean luminance of 0.18 x 255 (the gain,
                       and with it the noise, rises in dim scenes); gain limited to 0.25..6
auto white balance     per frame: grey-world gains applied in part (strength ``U(0.3, 0.8)``), times a
                       per-episode error of ``U(-8, 8)`` % per channel
sensor                 noise ``U(1.5, 6)`` /255 x sqrt(gain); JPEG quality ``U(40, 92)``; optical blur
                       ``U(0.35, 0.7)`` px (at 64x64); vignetting ``U(0.25, 0.5)``
camera                 mount offset ``U(-1, 1)`` cm (eye), ``U(-0.5, 0.5)`` cm (aim), fov ``U(-1, 1)``
                       deg per episode; shake: per frame Gaussian, std ``U(0, 2.5)`` mm (eye and aim)
table cloth, floor     one of 4 table cloths (beige canvas, grey felt, green mat, blue-grey cotton) and
                       one of 3 floors (brick, concrete, dark wood)
clutter                with probability 0.6, 1-3 visual-only items (a book, a mug, a sheet of paper)
                       on the table outside the workspace, colours outside the red hue family
=====================  ==================================================================================

The task cube keeps a fixed red texture in every look (only the light, exposure and white balance
move its colour, which stay mild enough that its pixels remain red-dominant); no clutter is red.

Train/test split by construction: the look seed of an episode is ``2 * (episode_seed mod 2**31) +
s`` with ``s = 0`` for ``target-lab`` (the training half) and ``s = 1`` for ``target-lab-test``, so
no test look is ever a training look. The transfer benchmark renders its test states with the test
half (``split_preset``); exported frames and bundles made from ``target-lab`` see only the training
half. Tables, floors and the cube's texture are shared by both halves (one lab), the light,
exposure, white balance, camera, sensor and clutter draws are not.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from domrand.envs import assets
from domrand.envs.camera import Camera, Light
from domrand.envs.domains import NOMINAL_CAMERA, RGBA, Look, target_robot_rgba
from domrand.envs.postprocess import camera_effects
from domrand.envs.scene import Scene

LAB_SPLITS = ("train", "test")
TABLE_CLOTHS = (  # (photo, tint, contrast): the table cloth variants
    ("grass", (0.95, 0.78, 0.58), 0.45),  # beige canvas
    ("gravel", (0.62, 0.62, 0.64), 0.35),  # grey felt
    ("grass", (0.35, 0.55, 0.38), 0.4),  # green cutting mat
    ("brick", (0.55, 0.62, 0.78), 0.3),  # blue-grey cotton
)
FLOORS = (  # (photo, tint, contrast)
    ("brick", (0.75, 0.5, 0.4), 1.0),  # brick
    ("gravel", (0.55, 0.55, 0.52), 1.0),  # concrete
    ("grass", (0.42, 0.3, 0.22), 0.9),  # dark wood
)
AE_FLOOR = 0.18  # auto exposure never leaves a frame's mean luminance below this (x 255)
CUBE_TINT = (1.0, 0.34, 0.24)  # the task cube's texture tint (red, as in target-a)
ROBOT_COLOR = (0.86, 0.86, 0.84)
ROBOT_ACCENT = (0.95, 0.55, 0.1)
CLUTTER_KINDS = ("book", "mug", "paper")
# Where clutter may stand (world x, y ranges): the table's near and side strips, outside the
# workspace of the arm and the object region.
# An item reaches at most 0.11 m from its centre, so none overlaps the object region (x <= 0.08,
# |y| <= 0.22, plus the cube's half side) nor hides a cube in it from the camera.
CLUTTER_REGIONS = (((0.24, 0.5), (-0.4, 0.42)), ((-0.3, 0.2), (0.37, 0.45)), ((-0.3, 0.2), (-0.45, -0.37)))


@dataclasses.dataclass(frozen=True)
class LabFamily:
    """The ``target-lab`` distribution (ranges as in the module docstring) and its split."""

    split: str = "train"  # "train" (even look seeds) or "test" (odd look seeds)
    kelvin: tuple[float, float] = (2700.0, 6500.0)  # colour temperature of the key light, log-uniform
    brightness: tuple[float, float] = (0.5, 1.8)  # scene illumination x nominal, log-uniform
    ambient: tuple[float, float] = (0.15, 0.55)
    diffuse: tuple[float, float] = (0.3, 0.8)
    specular: tuple[float, float] = (0.0, 0.3)
    elevation_deg: tuple[float, float] = (25.0, 80.0)
    shadow_prob: float = 0.75
    ae_target: float = 0.5  # mean luminance auto exposure aims at (fraction of 255)
    ae_strength: tuple[float, float] = (0.4, 0.85)  # fraction (log space) of the exposure error corrected
    ae_bias_ev: float = 0.6  # metering bias, U(-x, x) EV
    awb_strength: tuple[float, float] = (0.3, 0.8)  # fraction (log space) of the grey-world cast corrected
    wb_error: float = 0.08  # per-channel gain error, U(-x, x)
    noise_std: tuple[float, float] = (1.5, 6.0)  # /255 at unit gain
    jpeg_quality: tuple[int, int] = (40, 92)
    blur_sigma: tuple[float, float] = (0.35, 0.7)  # px at 64x64
    vignette: tuple[float, float] = (0.25, 0.5)
    eye_offset_m: float = 0.01
    aim_offset_m: float = 0.005
    fov_offset_deg: float = 1.0
    shake_mm: tuple[float, float] = (0.0, 2.5)  # per-frame std of the camera shake
    clutter_prob: float = 0.6  # probability an episode has clutter (then 1..3 items)

    def __post_init__(self) -> None:
        if self.split not in LAB_SPLITS:
            raise ValueError(f"LabFamily.split must be one of {LAB_SPLITS}, got {self.split!r}")


LAB_PRESETS: dict[str, LabFamily] = {
    "target-lab": LabFamily(split="train"),
    "target-lab-test": LabFamily(split="test"),
}


@dataclasses.dataclass(frozen=True)
class ClutterItem:
    """One clutter item of a look: which scene clutter body, where (world x, y, yaw) and its colour."""

    kind: str
    x: float
    y: float
    yaw: float
    rgba: RGBA


@dataclasses.dataclass(frozen=True)
class LabLook:
    """One episode's draw from :class:`LabFamily` (everything that makes its look)."""

    look_seed: int
    kelvin: float
    illuminant: tuple[float, float, float]  # rgb cast of the key light (from ``kelvin``)
    brightness: float
    light: Light
    ae_strength: float
    ae_bias_ev: float
    ae_target: float
    awb_strength: float
    wb_error: tuple[float, float, float]
    noise_std: float
    jpeg_quality: int
    blur_sigma: float
    vignette: float
    camera: Camera
    shake_mm: float
    table: int  # index into TABLE_CLOTHS
    floor: int  # index into FLOORS
    clutter: tuple[ClutterItem, ...]


def look_seed(episode_seed: int, split: str) -> int:
    """The look seed of an episode: even for the ``train`` half, odd for ``test`` (disjoint)."""
    if split not in LAB_SPLITS:
        raise ValueError(f"split must be one of {LAB_SPLITS}, got {split!r}")
    return 2 * (int(episode_seed) % 2**31) + (1 if split == "test" else 0)


def split_preset(preset: str, split: str) -> str:
    """The preset to render ``split`` ("train"/"test") frames of a target domain with.

    ``target-lab`` -> ``target-lab-test`` for the test split; any other preset is returned as is
    (fixed presets have one look, so train and test frames differ only in their states).
    """
    if split == "test" and preset == "target-lab":
        return "target-lab-test"
    return preset


def kelvin_to_rgb(kelvin: float) -> tuple[float, float, float]:
    """The rgb cast (max channel 1) of a black body at ``kelvin``, relative to 6500 K.

    Planck's law sampled at 610 / 550 / 465 nm, divided by its value at 6500 K, raised to 0.75 (so
    2700 K gives about (1, 0.66, 0.31), near the usual sRGB tables' (1, 0.65, 0.34)).
    """
    lam = np.array([610e-9, 550e-9, 465e-9])
    c2 = 6.626e-34 * 2.998e8 / 1.381e-23  # h c / k (m K)

    def planck(t: float) -> np.ndarray:
        return 1.0 / (lam**5 * (np.exp(c2 / (lam * t)) - 1.0))

    rel = (planck(float(kelvin)) / planck(6500.0)) ** 0.75
    rel = rel / rel.max()
    return (float(rel[0]), float(rel[1]), float(rel[2]))


def _non_red_rgb(rng: np.random.Generator) -> tuple[float, float, float]:
    """A clutter colour whose hue is outside the red family (hue in 50..310 deg) or a grey."""
    import colorsys

    if rng.random() < 0.3:
        g = float(rng.uniform(0.2, 0.9))
        return (g, g, g)
    hue = float(rng.uniform(50.0, 310.0)) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.35, 0.9)))
    return (float(r), float(g), float(b))


@functools.lru_cache(maxsize=256)
def draw_lab_look(family: LabFamily, seed: int) -> LabLook:
    """The look with look seed ``seed`` (see :func:`look_seed`); pure function of its arguments."""
    rng = np.random.default_rng([int(seed), 3301])

    def u(lo_hi: tuple[float, float]) -> float:
        return float(rng.uniform(lo_hi[0], lo_hi[1]))

    def logu(lo_hi: tuple[float, float]) -> float:
        return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))

    kelvin = logu(family.kelvin)
    brightness = logu(family.brightness)
    az = np.deg2rad(rng.uniform(0.0, 360.0))
    el = np.deg2rad(u(family.elevation_deg))
    direction = (float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el)))
    light = Light(
        direction=direction,
        color=(1.0, 1.0, 1.0),  # the colour cast is applied to the whole frame (see lab_camera)
        ambient=u(family.ambient),
        diffuse=u(family.diffuse),
        specular=u(family.specular),
        shadow=bool(rng.random() < family.shadow_prob),
    )
    ae_strength = u(family.ae_strength)
    ae_bias = float(rng.uniform(-family.ae_bias_ev, family.ae_bias_ev))
    awb_strength = u(family.awb_strength)
    wb_error = tuple(float(v) for v in 1.0 + rng.uniform(-family.wb_error, family.wb_error, 3))
    noise_std = u(family.noise_std)
    jpeg = int(rng.integers(family.jpeg_quality[0], family.jpeg_quality[1] + 1))
    blur = u(family.blur_sigma)
    vignette = u(family.vignette)
    camera = NOMINAL_CAMERA.shifted(
        rng.uniform(-family.eye_offset_m, family.eye_offset_m, 3),
        rng.uniform(-family.aim_offset_m, family.aim_offset_m, 3),
        float(rng.uniform(-family.fov_offset_deg, family.fov_offset_deg)),
    )
    shake = u(family.shake_mm)
    table = int(rng.integers(len(TABLE_CLOTHS)))
    floor = int(rng.integers(len(FLOORS)))
    clutter: list[ClutterItem] = []
    if rng.random() < family.clutter_prob:
        n = int(rng.integers(1, len(CLUTTER_KINDS) + 1))
        for kind in rng.permutation(CLUTTER_KINDS)[:n]:
            region = CLUTTER_REGIONS[int(rng.integers(len(CLUTTER_REGIONS)))]
            x, y = float(rng.uniform(*region[0])), float(rng.uniform(*region[1]))
            rgb = (0.95, 0.95, 0.92) if kind == "paper" else _non_red_rgb(rng)
            clutter.append(ClutterItem(str(kind), x, y, float(rng.uniform(-np.pi, np.pi)), (*rgb, 1.0)))
    return LabLook(
        look_seed=int(seed),
        kelvin=kelvin,
        illuminant=kelvin_to_rgb(kelvin),
        brightness=brightness,
        light=light,
        ae_strength=ae_strength,
        ae_bias_ev=ae_bias,
        ae_target=family.ae_target,
        awb_strength=awb_strength,
        wb_error=wb_error,  # type: ignore[arg-type]
        noise_std=noise_std,
        jpeg_quality=jpeg,
        blur_sigma=blur,
        vignette=vignette,
        camera=camera,
        shake_mm=shake,
        table=table,
        floor=floor,
        clutter=tuple(clutter),
    )


@functools.lru_cache(maxsize=1)
def lab_textures() -> dict[str, str]:
    """The family's texture files (a fixed, finite set): table cloths, floors, cube, goal, distractors."""
    rng = np.random.default_rng(27001)
    out: dict[str, str] = {}
    for i, (name, tint, contrast) in enumerate(TABLE_CLOTHS):
        out[f"table:{i}"] = assets.write_png(assets.photo_texture(name, rng, 128, 0.9, tint, contrast))
    for i, (name, tint, contrast) in enumerate(FLOORS):
        out[f"floor:{i}"] = assets.write_png(assets.photo_texture(name, rng, 128, 0.5, tint, contrast))
    out["object"] = assets.write_png(assets.photo_texture("coffee", rng, 64, 0.25, CUBE_TINT, 0.6, 0.8))
    out["goal"] = assets.write_png(assets.photo_texture("page", rng, 64, 0.3, (0.35, 0.9, 0.45), 0.8, 0.75))
    for i, name in enumerate(("chelsea", "rocket", "astronaut", "hubble_deep_field")):
        out[f"distractor:{i}"] = assets.write_png(assets.photo_texture(name, rng, 64, 0.3, (1.0, 1.0, 1.0), 1.2, 0.6))
    out["paper"] = assets.write_png(assets.photo_texture("page", rng, 64, 0.6, (1.0, 1.0, 1.0), 0.5, 0.9))
    return out


def lab_look(scene: Scene, look: LabLook) -> Look:
    """The scene's :class:`~domrand.envs.domains.Look` for one ``target-lab`` draw."""
    tex = lab_textures()
    white: RGBA = (1.0, 1.0, 1.0, 1.0)
    parts: list[tuple[str, str | None, RGBA]] = []
    for part in scene.parts:
        if part.cls == "robot":
            parts.append((part.name, None, target_robot_rgba(scene, part.link, ROBOT_ACCENT, ROBOT_COLOR)))
        elif part.name == "table":
            parts.append((part.name, tex[f"table:{look.table}"], white))
        elif part.name == "floor":
            parts.append((part.name, tex[f"floor:{look.floor}"], white))
        else:
            parts.append((part.name, tex.get(part.name), white))
    clutter = tuple(
        (c.kind, (c.x, c.y, c.yaw), tex["paper"] if c.kind == "paper" else None, c.rgba) for c in look.clutter
    )
    return Look(tuple(parts), look.light, look.camera, effects=look, clutter=clutter)


def shaken_camera(look: LabLook, episode_seed: int, frame: int) -> Camera:
    """The camera of one frame: the look's camera moved by this frame's shake (Gaussian, mm)."""
    if look.shake_mm <= 0:
        return look.camera
    rng = np.random.default_rng([int(episode_seed), 103, int(frame)])
    s = look.shake_mm * 1e-3
    return look.camera.shifted(rng.normal(0.0, s, 3), rng.normal(0.0, s, 3))


def pipeline_gains(raw: np.ndarray, look: LabLook) -> tuple[np.ndarray, float]:
    """Per-channel gains the camera applies to a raw render, and the exposure gain (for noise).

    The sensor sees ``raw * illuminant * brightness``; auto exposure brings its mean luminance
    towards ``ae_target * 2**bias`` by ``ae_strength`` of the way (log space), at least to
    ``AE_FLOOR`` (gain limited to 0.25..6); auto white balance
    removes ``awb_strength`` of the grey-world cast, times the per-channel ``wb_error``.
    """
    means = raw.reshape(-1, 3).astype(np.float64).mean(0) + 1.0
    scene = means * np.asarray(look.illuminant) * look.brightness
    luma = float(scene @ np.array([0.299, 0.587, 0.114]))
    want = 255.0 * look.ae_target * 2.0**look.ae_bias_ev
    ae_gain = (want / luma) ** look.ae_strength
    ae_gain = float(np.clip(max(ae_gain, 255.0 * AE_FLOOR / luma), 0.25, 6.0))  # dim scenes: the gain rises
    grey = scene.mean() / scene
    awb = grey**look.awb_strength * np.asarray(look.wb_error)
    awb = awb / float(awb @ np.array([0.299, 0.587, 0.114]))  # white balance keeps the luminance
    gains = np.asarray(look.illuminant) * look.brightness * ae_gain * awb
    return gains, ae_gain


def lab_camera(rgb: np.ndarray, look: LabLook, episode_seed: int, frame: int) -> np.ndarray:
    """The camera pipeline of one ``target-lab`` frame (uint8 HxWx3 in and out).

    Gains from :func:`pipeline_gains`, then vignetting, blur, sensor noise growing with the
    exposure gain, and JPEG (``postprocess.camera_effects``); noise draws are per frame.
    """
    gains, ae_gain = pipeline_gains(rgb, look)
    frame_rng = np.random.default_rng([int(episode_seed), 102, int(frame)])
    size = rgb.shape[0]
    return camera_effects(
        rgb,
        frame_rng,
        white_balance=(float(gains[0]), float(gains[1]), float(gains[2])),
        exposure=1.0,
        vignette=look.vignette,
        blur_sigma=look.blur_sigma * size / 64.0,
        noise_std=look.noise_std * float(np.sqrt(max(ae_gain, 0.25))),
        jpeg_quality=look.jpeg_quality,
    )
