"""Visual domains: what the scene looks like in ``sim``, ``target`` and ``randomized``.

A :class:`Look` is everything a domain sets for a frame: a texture file and colour per scene part,
the light, the camera, and (target only) the camera-pipeline effects. Geometry never changes, so
frames of different domains of one state share their segmentation (up to the camera: presets
``target-b``/``target-c`` and the randomized domain move it slightly; ``target-a`` and ``sim``
use the same camera, so their masks are identical).

Target domains are parameterized by :class:`TargetConfig` (a seed plus the settings); presets
``target-a``, ``target-b``, ``target-c`` are kept in ``TARGET_PRESETS`` and ``"seed:N"`` draws a
new target domain from seed N.

The ``randomized`` domain is classic domain randomization that keeps the task's cue (the target
cube stays red, nothing else is red): see the constants above :func:`randomized_look`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import numpy as np

from domrand.envs import assets
from domrand.envs.camera import Camera, Light
from domrand.envs.scene import TABLE_Z, Scene

DOMAINS = ("sim", "target", "randomized")
RGBA = tuple[float, float, float, float]

NOMINAL_CAMERA = Camera(eye=(0.32, 0.38, TABLE_Z + 0.74), target=(-0.14, 0.0, TABLE_Z + 0.05), fov=50.0)
SIM_LIGHT = Light()

SIM_COLORS: dict[str, RGBA] = {
    "object": (0.9, 0.15, 0.1, 1.0),
    "goal": (0.1, 0.8, 0.2, 1.0),
    "distractor:0": (0.1, 0.25, 0.85, 1.0),
    "distractor:1": (0.95, 0.8, 0.1, 1.0),
    "distractor:2": (0.7, 0.2, 0.75, 1.0),
    "distractor:3": (0.1, 0.6, 0.6, 1.0),
}


@dataclasses.dataclass(frozen=True)
class Look:
    """Per-frame appearance: part name -> (texture path or None, rgba), light, camera, effects.

    ``effects``: the camera pipeline (a :class:`TargetConfig` for the fixed target presets, a
    ``target_lab.LabLook`` for the ``target-lab`` family, None for none). ``clutter``: visual-only
    clutter items shown, as ``(kind, (x, y, yaw), texture or None, rgba)`` (others are hidden).
    """

    parts: tuple[tuple[str, str | None, RGBA], ...]
    light: Light
    camera: Camera
    effects: "TargetConfig | Any | None" = None
    clutter: tuple[tuple[str, tuple[float, float, float], str | None, RGBA], ...] = ()


def apply_look(scene: Scene, look: Look) -> None:
    """Re-texture the scene's parts as ``look`` says (cheap: no geometry changes)."""
    by_name = {part.name: part for part in scene.parts}
    for name, tex, rgba in look.parts:
        part = by_name.get(name)
        if part is not None:
            scene.set_look(part, tex, rgba)
    scene.show_clutter(look.clutter)


# ------------------------------------------------------------------------------------------ sim
def _sim_floor() -> str:
    return assets.resized_texture(assets.data_path("checker_blue.png"), 64)


def _sim_table() -> str:
    return assets.resized_texture(assets.data_path("table", "table.png"), 256)


def sim_look(scene: Scene) -> Look:
    """The plain simulator look: pybullet_data's table and checker floor, URDF arm colours."""
    parts: list[tuple[str, str | None, RGBA]] = [
        ("floor", _sim_floor(), (1.0, 1.0, 1.0, 1.0)),
        ("table", _sim_table(), (1.0, 1.0, 1.0, 1.0)),
    ]
    for part in scene.parts:
        if part.cls == "robot":
            parts.append((part.name, None, scene.robot_colors.get(part.link, (0.5, 0.7, 1.0, 1.0))))
        elif part.name in SIM_COLORS:
            parts.append((part.name, None, SIM_COLORS[part.name]))
    return Look(tuple(parts), SIM_LIGHT, NOMINAL_CAMERA)


# ------------------------------------------------------------------------------------------ target
@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """A target ("real camera") domain. Photo names are scikit-image's bundled photos."""

    seed: int = 0  # which crops of the photos are used
    table_photo: str = "grass"
    table_tint: tuple[float, float, float] = (0.95, 0.76, 0.56)
    table_contrast: float = 0.45
    floor_photo: str = "brick"
    floor_tint: tuple[float, float, float] = (0.75, 0.5, 0.4)
    object_photo: str = "coffee"
    object_tint: tuple[float, float, float] = (1.0, 0.45, 0.3)  # the target cube stays reddish
    distractor_photos: tuple[str, ...] = ("chelsea", "rocket", "astronaut", "hubble_deep_field")
    goal_photo: str = "page"
    goal_tint: tuple[float, float, float] = (0.35, 0.9, 0.45)
    robot_color: tuple[float, float, float] = (0.86, 0.86, 0.84)
    robot_accent: tuple[float, float, float] = (0.95, 0.55, 0.1)
    light_direction: tuple[float, float, float] = (-0.6, 0.5, 0.9)
    light_color: tuple[float, float, float] = (1.0, 0.9, 0.75)
    ambient: float = 0.45
    diffuse: float = 0.55
    specular: float = 0.15
    shadow: bool = True
    camera_eye_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m
    camera_target_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m
    fov_offset: float = 0.0  # degrees
    white_balance: tuple[float, float, float] = (1.08, 1.0, 0.86)
    white_balance_jitter: float = 0.03  # per-episode relative jitter of each gain
    exposure_jitter: float = 0.06  # per-episode relative jitter of brightness
    vignette: float = 0.45
    blur_sigma: float = 0.45  # px at 64x64 (scaled with the image size)
    noise_std: float = 4.0  # 0..255 units
    jpeg_quality: int = 60


TARGET_PRESETS: dict[str, TargetConfig] = {
    # Same camera as sim: masks of target-a and sim frames of one state are identical.
    "target-a": TargetConfig(),
    "target-b": TargetConfig(
        seed=1,
        table_photo="moon",
        table_tint=(1.15, 1.2, 1.3),
        table_contrast=0.9,
        floor_photo="gravel",
        floor_tint=(0.55, 0.55, 0.5),
        object_photo="brick",
        object_tint=(1.0, 0.35, 0.25),
        distractor_photos=("rocket", "hubble_deep_field", "chelsea", "coins"),
        robot_color=(0.95, 0.95, 0.95),
        robot_accent=(0.2, 0.3, 0.6),
        light_direction=(0.7, -0.5, 0.8),
        light_color=(0.85, 0.92, 1.0),
        ambient=0.5,
        diffuse=0.6,
        camera_eye_offset=(0.015, -0.012, 0.01),
        camera_target_offset=(0.0, 0.005, 0.0),
        fov_offset=1.5,
        white_balance=(0.9, 1.0, 1.12),
        vignette=0.3,
        blur_sigma=0.6,
        noise_std=5.0,
        jpeg_quality=50,
    ),
    "target-c": TargetConfig(
        seed=2,
        table_photo="gravel",
        table_tint=(0.7, 0.85, 0.75),
        table_contrast=0.35,
        floor_photo="grass",
        floor_tint=(0.5, 0.62, 0.4),
        object_photo="gravel",
        object_tint=(0.95, 0.3, 0.2),
        distractor_photos=("astronaut", "coins", "rocket", "chelsea"),
        robot_color=(0.3, 0.32, 0.35),
        robot_accent=(0.85, 0.85, 0.3),
        light_direction=(0.1, 0.2, 1.0),
        light_color=(1.0, 0.95, 0.6),
        ambient=0.5,
        diffuse=0.45,
        specular=0.3,
        camera_eye_offset=(-0.01, 0.015, -0.01),
        camera_target_offset=(0.005, 0.0, 0.0),
        fov_offset=-1.5,
        white_balance=(1.12, 1.02, 0.8),
        vignette=0.55,
        blur_sigma=0.35,
        noise_std=6.0,
        jpeg_quality=40,
    ),
}


def random_target_config(seed: int) -> TargetConfig:
    """Draw a new target domain from ``seed`` (for making several distinct target domains)."""
    rng = np.random.default_rng([int(seed), 7])
    photos = list(assets.PHOTOS)

    def tint(lo: float = 0.45) -> tuple[float, float, float]:
        return tuple(float(v) for v in rng.uniform(lo, 1.0, 3))

    def pick() -> str:
        return str(photos[int(rng.integers(len(photos)))])

    d = rng.normal(size=3)
    d[2] = abs(d[2]) + 0.5
    return TargetConfig(
        seed=int(seed),
        table_photo=pick(),
        table_tint=tint(),
        table_contrast=float(rng.uniform(0.3, 1.0)),
        floor_photo=pick(),
        floor_tint=tint(0.3),
        object_photo=pick(),
        object_tint=(float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.1, 0.4))),
        distractor_photos=tuple(pick() for _ in range(4)),
        goal_tint=tint(0.2),
        robot_color=tint(0.2),
        robot_accent=tint(0.2),
        light_direction=tuple(float(v) for v in d / np.linalg.norm(d)),
        light_color=tint(0.6),
        ambient=float(rng.uniform(0.3, 0.6)),
        diffuse=float(rng.uniform(0.35, 0.7)),
        specular=float(rng.uniform(0.0, 0.35)),
        camera_eye_offset=tuple(float(v) for v in rng.uniform(-0.015, 0.015, 3)),
        camera_target_offset=tuple(float(v) for v in rng.uniform(-0.008, 0.008, 3)),
        fov_offset=float(rng.uniform(-2, 2)),
        white_balance=tuple(float(v) for v in rng.uniform(0.85, 1.15, 3)),
        vignette=float(rng.uniform(0.1, 0.6)),
        blur_sigma=float(rng.uniform(0.3, 0.9)),
        noise_std=float(rng.uniform(2, 7)),
        jpeg_quality=int(rng.integers(35, 85)),
    )


def target_preset_names() -> tuple[str, ...]:
    """Every named target preset: the fixed looks and the varied ``target-lab`` family (+ its test half)."""
    from domrand.envs.target_lab import LAB_PRESETS

    return (*TARGET_PRESETS, *LAB_PRESETS)


def resolve_target(preset: "str | TargetConfig | Any") -> "TargetConfig | Any":
    """A preset name (``target-a``/``-b``/``-c``, ``target-lab``/``target-lab-test``), ``"seed:N"``,
    a :class:`TargetConfig` or a ``target_lab.LabFamily``. Fixed presets resolve to a
    :class:`TargetConfig`, the lab family to a ``LabFamily`` (a new look every episode)."""
    from domrand.envs.target_lab import LAB_PRESETS, LabFamily

    if isinstance(preset, (TargetConfig, LabFamily)):
        return preset
    if isinstance(preset, str) and preset in LAB_PRESETS:
        return LAB_PRESETS[preset]
    if isinstance(preset, str) and preset.startswith("seed:"):
        try:
            return random_target_config(int(preset[5:]))
        except ValueError:
            raise ValueError(f"target preset {preset!r}: expected 'seed:<integer>'") from None
    if preset not in TARGET_PRESETS:
        raise ValueError(
            f"unknown target preset {preset!r}; choose from {', '.join(target_preset_names())} or 'seed:<N>'"
        )
    return TARGET_PRESETS[preset]


@functools.lru_cache(maxsize=64)
def _target_textures(cfg: TargetConfig) -> dict[str, str]:
    rng = np.random.default_rng([cfg.seed, 11])
    out = {
        "floor": assets.write_png(assets.photo_texture(cfg.floor_photo, rng, 128, 0.5, cfg.floor_tint)),
        "table": assets.write_png(assets.photo_texture(cfg.table_photo, rng, 128, 0.9, cfg.table_tint, cfg.table_contrast)),
        "object": assets.write_png(assets.photo_texture(cfg.object_photo, rng, 64, 0.25, cfg.object_tint, 0.9, 0.8)),
        "goal": assets.write_png(assets.photo_texture(cfg.goal_photo, rng, 64, 0.3, cfg.goal_tint, 0.8, 0.75)),
    }
    for i, name in enumerate(cfg.distractor_photos):
        out[f"distractor:{i}"] = assets.write_png(assets.photo_texture(name, rng, 64, 0.3, (1.0, 1.0, 1.0), 1.2, 0.6))
    return out


def all_texture_files(extra: "TargetConfig | Any | None" = None) -> list[str]:
    """Every texture file the sim look, the target presets (plus ``extra``), the ``target-lab``
    family and the randomization pool use (loaded up front under EGL, see ``Scene``)."""
    from domrand.envs.target_lab import lab_textures

    files = [assets.white_texture(), _sim_floor(), _sim_table()]
    configs = list(TARGET_PRESETS.values()) + ([extra] if isinstance(extra, TargetConfig) else [])
    for cfg in configs:
        files += [f for f in _target_textures(cfg).values() if f not in files]
    files += [f for f in lab_textures().values() if f not in files]
    return files + list(texture_pool()) + list(red_texture_pool())


def target_robot_rgba(scene: Scene, link: Any, accent: tuple[float, float, float],
                      body: tuple[float, float, float]) -> RGBA:
    """A target look's colour for one robot link: ``accent`` for the iiwa's orange joints, near-black
    for its dark parts, ``body`` for the rest (decided from the link's sim colour)."""
    sim_rgba = scene.robot_colors.get(link, (0.5, 0.7, 1.0, 1.0))
    is_accent = sim_rgba[0] > 0.9 and sim_rgba[2] < 0.2  # the orange joints of the iiwa
    dark = max(sim_rgba[:3]) < 0.3
    rgb = accent if is_accent else ((0.15, 0.15, 0.16) if dark else body)
    return (*rgb, 1.0)


def target_look(scene: Scene, cfg: TargetConfig) -> Look:
    """The target domain's appearance for ``scene``."""
    tex = _target_textures(cfg)
    white: RGBA = (1.0, 1.0, 1.0, 1.0)
    parts: list[tuple[str, str | None, RGBA]] = []
    for part in scene.parts:
        if part.cls == "robot":
            parts.append((part.name, None, target_robot_rgba(scene, part.link, cfg.robot_accent, cfg.robot_color)))
        else:
            parts.append((part.name, tex.get(part.name), white))
    light = Light(
        direction=cfg.light_direction,
        color=cfg.light_color,
        ambient=cfg.ambient,
        diffuse=cfg.diffuse,
        specular=cfg.specular,
        shadow=cfg.shadow,
    )
    camera = NOMINAL_CAMERA.shifted(cfg.camera_eye_offset, cfg.camera_target_offset, cfg.fov_offset)
    return Look(tuple(parts), light, camera, effects=cfg)


# ------------------------------------------------------------------------------------------ randomized
# Classic domain randomization (Tobin et al. 2017): everything the task does not depend on is drawn
# at random per frame (textures and colours of the floor, table, arm, distractors and goal, the
# light, a small camera jitter, visual-only clutter), and the task-defining cue is kept: the target
# cube is always a shade of red (hue within RED_HUE_DEG of 0, random saturation and brightness,
# plain or with a red-on-red pattern), and nothing else in the scene is red: every other colour is
# drawn inside one of NON_RED_WEDGES (hue ranges that exclude the red family; a blend of two
# colours of one wedge stays in it, so patterns and texture filtering cannot make red) or is grey,
# and textures are only dimmed with grey, never tinted. The light's colour stays near white.
RED_HUE_DEG = 15.0  # the cube's hue: U(-x, x) degrees around pure red (rendered cubes: sim ~4, target-a ~14-19)
RED_SATURATION = (0.65, 1.0)  # the cube's HSV saturation
RED_VALUE = (0.5, 1.0)  # the cube's HSV value (brightness)
# Hue ranges (degrees) of every other colour: orange and pink are in (the sim and target arms have
# orange joints; a model must learn that orange is not the cube), the red family +-RED_EXCLUSION_DEG is not.
RED_EXCLUSION_DEG = 30.0
NON_RED_WEDGES = ((RED_EXCLUSION_DEG, 180.0), (180.0, 360.0 - RED_EXCLUSION_DEG))
GREY_PROB = 0.2  # share of non-red colours that are greys
LIGHT_COLOR = (0.8, 1.0)  # per-channel light colour range (near white: the cube stays red)
CAMERA_EYE_JITTER = 0.015  # m, U(-x, x) per axis
CAMERA_AIM_JITTER = 0.01  # m, U(-x, x) per axis
CAMERA_FOV_JITTER = 1.5  # degrees, U(-x, x)
CLUTTER_PROB = 0.5  # probability a randomized frame shows clutter (1..3 items, non-red)


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v))


def red_rgb(rng: np.random.Generator) -> np.ndarray:
    """A colour of the target cube's red family (RGB in [0, 1])."""
    return _hsv(float(rng.uniform(-RED_HUE_DEG, RED_HUE_DEG)), float(rng.uniform(*RED_SATURATION)), float(rng.uniform(*RED_VALUE)))


def non_red_sampler(rng: np.random.Generator) -> "Callable[[np.random.Generator], np.ndarray]":
    """A colour sampler for one texture or part: colours of one random non-red hue wedge, or greys."""
    lo, hi = NON_RED_WEDGES[int(rng.integers(len(NON_RED_WEDGES)))]

    def draw(r: np.random.Generator) -> np.ndarray:
        v = float(r.uniform(0.1, 1.0))
        if r.random() < GREY_PROB:
            return np.full(3, v)
        return _hsv(float(r.uniform(lo, hi)), float(r.uniform(0.2, 1.0)), v)

    return draw


def non_red_rgb(rng: np.random.Generator) -> np.ndarray:
    """One colour outside the red family (a non-red hue wedge, or a grey)."""
    return non_red_sampler(rng)(rng)


def is_red(rgb: "np.ndarray | Sequence[float]", min_saturation: float = 0.25, hue_deg: float = 20.0) -> bool:
    """Whether an RGB colour is in the red hue family: hue within ``hue_deg`` of 0 and saturated."""
    import colorsys

    r, g, b = (float(v) for v in np.asarray(rgb, np.float64)[:3])
    h, s, _ = colorsys.rgb_to_hsv(r, g, b)
    dist = min(h * 360.0, 360.0 - h * 360.0)
    return bool(s >= min_saturation and dist <= hue_deg)


@functools.lru_cache(maxsize=1)
def texture_pool(n_per_kind: int = 8) -> tuple[str, ...]:
    """Procedural non-red textures (checker/noise/gradient/stripes) for classic domain randomization.

    The pool is fixed (seeded) and dimmed with a random grey per draw, so textures are loaded once
    per env. Each texture's colours come from one non-red hue wedge (see ``non_red_sampler``).
    """
    rng = np.random.default_rng(20240)
    return tuple(
        assets.write_png(assets.procedural_texture(kind, rng, 64, non_red_sampler(rng)))
        for kind in assets.PROCEDURAL_KINDS
        for _ in range(n_per_kind)
    )


@functools.lru_cache(maxsize=1)
def red_texture_pool(n_per_kind: int = 4) -> tuple[str, ...]:
    """Procedural red-on-red textures for the target cube under classic randomization."""
    rng = np.random.default_rng(20241)
    return tuple(
        assets.write_png(assets.procedural_texture(kind, rng, 64, red_rgb))
        for kind in assets.PROCEDURAL_KINDS
        for _ in range(n_per_kind)
    )


def _random_clutter(rng: np.random.Generator) -> tuple[tuple[str, tuple[float, float, float], None, RGBA], ...]:
    """0..3 visual-only clutter items (non-red, flat colours) outside the workspace, or none."""
    from domrand.envs.target_lab import CLUTTER_KINDS, CLUTTER_REGIONS

    if rng.random() >= CLUTTER_PROB:
        return ()
    n = int(rng.integers(1, len(CLUTTER_KINDS) + 1))
    items = []
    for kind in rng.permutation(CLUTTER_KINDS)[:n]:
        region = CLUTTER_REGIONS[int(rng.integers(len(CLUTTER_REGIONS)))]
        x, y = float(rng.uniform(*region[0])), float(rng.uniform(*region[1]))
        rgb = non_red_rgb(rng)
        items.append((str(kind), (x, y, float(rng.uniform(-np.pi, np.pi))), None, (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)))
    return tuple(items)


def randomized_look(scene: Scene, rng: np.random.Generator) -> Look:
    """Classic domain randomization (see the constants above): random non-red colours or grey-dimmed
    non-red procedural textures on every part but the cube, a red shade (plain or patterned) on the
    cube, a random near-white light, a small camera jitter and random clutter. All draws from ``rng``."""
    pool, red_pool = texture_pool(), red_texture_pool()
    parts: list[tuple[str, str | None, RGBA]] = []
    for part in scene.parts:
        textured = part.has_uv and rng.random() < 0.75
        if part.cls == "object":
            tex = red_pool[int(rng.integers(len(red_pool)))] if textured else None
            rgb = np.full(3, rng.uniform(0.6, 1.0)) if textured else red_rgb(rng)
        elif textured:
            tex = pool[int(rng.integers(len(pool)))]
            rgb = np.full(3, rng.uniform(0.5, 1.0))
        else:
            tex = None
            rgb = non_red_rgb(rng)
        parts.append((part.name, tex, (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)))
    d = rng.normal(size=3)
    d[2] = abs(d[2]) + 0.3
    light = Light(
        direction=tuple(float(v) for v in d / np.linalg.norm(d)),
        color=tuple(float(v) for v in rng.uniform(*LIGHT_COLOR, 3)),
        ambient=float(rng.uniform(0.3, 0.8)),
        diffuse=float(rng.uniform(0.2, 0.7)),
        specular=float(rng.uniform(0.0, 0.3)),
        shadow=False,
    )
    camera = NOMINAL_CAMERA.shifted(
        rng.uniform(-CAMERA_EYE_JITTER, CAMERA_EYE_JITTER, 3),
        rng.uniform(-CAMERA_AIM_JITTER, CAMERA_AIM_JITTER, 3),
        float(rng.uniform(-CAMERA_FOV_JITTER, CAMERA_FOV_JITTER)),
    )
    return Look(tuple(parts), light, camera, clutter=_random_clutter(rng))
