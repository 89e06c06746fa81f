"""``TabletopEnv``: the Gymnasium env shared by Reach, Push and Localize.

It owns one :class:`~domrand.envs.scene.Scene`, the observation modes, the visual domains and the
rendering (at most one render per step; ``render()`` returns the cached frame). Subclasses
define the task: how an episode starts, the state vector, reward and success.

Randomness: ``reset`` draws one episode seed from ``self.np_random``; every visual random draw
(the randomized look, the target domain's per-episode white balance/exposure and per-frame
sensor noise) is derived from that seed, the step and the draw index, never from the env's
generator afterwards, so ``render_as`` can render other domains without touching the env's RNG.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from domrand.envs import domains, target_lab
from domrand.envs.camera import RENDERERS
from domrand.envs.camera import render as _render_frame
from domrand.envs.postprocess import camera_effects
from domrand.envs.scene import CLASS_IDS, Scene

OBS_MODES = ("pixels", "state", "pixels+state")
MAX_DELTA = 0.03  # metres of tip motion per unit action per step


class TabletopEnv(gym.Env):
    """Base class of the domrand tabletop envs (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    n_distractors = 2
    with_goal = False
    state_dim = 0
    class_ids = CLASS_IDS

    def __init__(
        self,
        obs_mode: str = "pixels",  # "pixels" (uint8 HxWx3), "state" (float32 vector) or "pixels+state" (Dict)
        visual_domain: str = "sim",  # "sim", "target" or "randomized"
        target_preset: "str | domains.TargetConfig | target_lab.LabFamily" = "target-a",  # target domain used by visual_domain="target" (target-a/b/c, target-lab, target-lab-test, seed:N)
        image_size: int = 64,  # square frame side in pixels
        renderer: str = "auto",  # "auto" (EGL when a GPU is visible), "tiny" or "egl"
        return_masks: bool = False,  # put the class segmentation of each frame in info["mask"]
        randomize_every: int | None = None,  # "randomized": redraw every k steps (None: on reset only)
        render_mode: str | None = "rgb_array",  # only "rgb_array" (or None)
    ) -> None:
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if visual_domain not in domains.DOMAINS:
            raise ValueError(f"visual_domain must be one of {domains.DOMAINS}, got {visual_domain!r}")
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if randomize_every is not None and (int(randomize_every) < 1):
            raise ValueError(f"randomize_every must be None or >= 1, got {randomize_every!r}")
        if renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.obs_mode = obs_mode
        self.visual_domain = visual_domain
        self.target_config = domains.resolve_target(target_preset)
        self.image_size = image_size
        self.return_masks = bool(return_masks)
        self.randomize_every = None if randomize_every is None else int(randomize_every)
        self.render_mode = render_mode

        self.scene = Scene(
            n_distractors=self.n_distractors,
            with_goal=self.with_goal,
            renderer=renderer,
            egl_textures=lambda: domains.all_texture_files(self.target_config),
        )
        self.renderer_flag = self.scene.renderer_flag
        self._sim_look = domains.sim_look(self.scene)
        self._target_looks: dict[domains.TargetConfig, domains.Look] = {}
        self._lab_looks: dict[tuple[target_lab.LabFamily, int], domains.Look] = {}
        self._rand_cache: tuple[int, domains.Look] | None = None
        self._applied: domains.Look | None = None
        self._episode_seed = 0
        self._step_count = 0
        self._frame: tuple[int, np.ndarray, np.ndarray | None] | None = None  # (step, rgb, mask)

        pixels = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        state = spaces.Box(-10.0, 10.0, (self.state_dim,), np.float32)  # metres and radians
        if obs_mode == "pixels":
            self.observation_space = pixels
        elif obs_mode == "state":
            self.observation_space = state
        else:
            self.observation_space = spaces.Dict({"pixels": pixels, "state": state})
        self.action_space = self._make_action_space()

    # ------------------------------------------------------------------------- task hooks
    def _make_action_space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (3,), np.float32)

    def _setup_episode(self, options: dict | None) -> None:
        """Place the scene for a new episode using ``self.np_random``."""
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        self.scene.move_tip(np.asarray(action, np.float64) * MAX_DELTA)

    def _state(self) -> np.ndarray:
        raise NotImplementedError

    def _evaluate(self, action: np.ndarray | None) -> tuple[float, bool, dict[str, Any]]:
        """(reward, terminated, task info incl. is_success) for the current state."""
        raise NotImplementedError

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (see ``domrand.envs.experts``)."""
        from domrand.envs.experts import expert_action

        return expert_action(self)

    # ------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._episode_seed = int(self.np_random.integers(0, 2**62))
        self._step_count = 0
        self._frame = None
        self._rand_cache = None
        self._setup_episode(options)
        _, _, info = self._evaluate(None)
        return self._observe(info), info

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32).reshape(self.action_space.shape), -1.0, 1.0)
        self._apply_action(action)
        self._step_count += 1
        reward, terminated, info = self._evaluate(action)
        return self._observe(info), float(reward), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        """The current frame (uint8 HxWx3) in the env's visual domain."""
        if self.render_mode is None:
            return None
        return self._current_frame(False)[0]

    def close(self) -> None:
        scene = getattr(self, "scene", None)
        if scene is not None:
            scene.close()

    # ------------------------------------------------------------------------- observations
    def _observe(self, info: dict[str, Any]):
        info["object_xy"] = self.scene.object_position()[:2].astype(np.float32)
        want_pixels = self.obs_mode != "state"
        if want_pixels or self.return_masks:
            rgb, mask = self._current_frame(self.return_masks)
            rgb = rgb.copy()  # callers may keep or modify observations; the cache stays intact
            if self.return_masks:
                info["mask"] = mask.copy()
        if self.obs_mode == "pixels":
            return rgb
        state = self._state().astype(np.float32)
        if self.obs_mode == "state":
            return state
        return {"pixels": rgb, "state": state}

    def _current_frame(self, want_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
        cached = self._frame
        if cached is not None and cached[0] == self._frame_index() and (cached[2] is not None or not want_mask):
            return cached[1], cached[2]
        rgb, mask = self._render_look(self._own_look(), want_mask)
        self._frame = (self._frame_index(), rgb, mask)
        return rgb, mask

    # ------------------------------------------------------------------------- visual domains
    def _look(self, domain: str, preset: "str | domains.TargetConfig | target_lab.LabFamily | None" = None) -> domains.Look:
        if domain == "sim":
            return self._sim_look
        if domain == "target":
            cfg = self.target_config if preset is None else domains.resolve_target(preset)
            if isinstance(cfg, target_lab.LabFamily):
                return self._lab_look(cfg)
            look = self._target_looks.get(cfg)
            if look is None:
                look = self._target_looks[cfg] = domains.target_look(self.scene, cfg)
            return look
        if domain == "randomized":
            draw = 0 if self.randomize_every is None else self._step_count // self.randomize_every
            if self._rand_cache is None or self._rand_cache[0] != draw:
                rng = np.random.default_rng([self._episode_seed, 201, draw])
                self._rand_cache = (draw, domains.randomized_look(self.scene, rng))
            return self._rand_cache[1]
        raise ValueError(f"unknown visual domain {domain!r}; choose from {domains.DOMAINS}")

    def _lab_look(self, family: target_lab.LabFamily) -> domains.Look:
        """This episode's ``target-lab`` look (drawn from the episode seed and the family's split)."""
        key = (family, self._episode_seed)
        look = self._lab_looks.get(key)
        if look is None:
            if len(self._lab_looks) >= 8:
                self._lab_looks.clear()
            seed = target_lab.look_seed(self._episode_seed, family.split)
            look = self._lab_looks[key] = target_lab.lab_look(self.scene, target_lab.draw_lab_look(family, seed))
        return look

    def lab_look_seed(self, preset: "str | target_lab.LabFamily | None" = None) -> int | None:
        """The look seed of the current episode in a ``target-lab`` preset (None for fixed presets)."""
        cfg = self.target_config if preset is None else domains.resolve_target(preset)
        if not isinstance(cfg, target_lab.LabFamily):
            return None
        return target_lab.look_seed(self._episode_seed, cfg.split)

    def _frame_index(self) -> int:
        """Which frame of the episode the scene shows (keys the frame cache and the sensor noise)."""
        return self._step_count

    def _own_look(self) -> domains.Look:
        return self._look(self.visual_domain)

    def _render_look(self, look: domains.Look, want_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._applied is not look:
            domains.apply_look(self.scene, look)
            self._applied = look
        size = self.image_size
        lab = look.effects if isinstance(look.effects, target_lab.LabLook) else None
        camera = look.camera if lab is None else target_lab.shaken_camera(lab, self._episode_seed, self._frame_index())
        rgb, seg = _render_frame(self.scene.client, self.renderer_flag, camera, look.light, size, size, want_mask)
        if lab is not None:
            rgb = target_lab.lab_camera(rgb, lab, self._episode_seed, self._frame_index())
        elif look.effects is not None:
            rgb = self._camera_effects(rgb, look.effects)
        mask = self.scene.class_mask(seg) if seg is not None else None
        return rgb, mask

    def _camera_effects(self, rgb: np.ndarray, cfg: domains.TargetConfig) -> np.ndarray:
        ep = np.random.default_rng([self._episode_seed, 101])
        wb = np.asarray(cfg.white_balance) * (1.0 + cfg.white_balance_jitter * ep.uniform(-1, 1, 3))
        exposure = 1.0 + cfg.exposure_jitter * float(ep.uniform(-1, 1))
        frame_rng = np.random.default_rng([self._episode_seed, 102, self._frame_index()])
        return camera_effects(
            rgb,
            frame_rng,
            white_balance=tuple(wb),
            exposure=exposure,
            vignette=cfg.vignette,
            blur_sigma=cfg.blur_sigma * self.image_size / 64.0,
            noise_std=cfg.noise_std,
            jpeg_quality=cfg.jpeg_quality,
        )

    def render_as(
        self,
        domain: str,
        preset: "str | domains.TargetConfig | None" = None,
        return_mask: bool = False,
    ) -> "np.ndarray | tuple[np.ndarray, np.ndarray]":
        """Render the current state in another visual domain without changing the env's state or RNG.

        ``preset`` picks the target domain (default: the env's ``target_preset``). For
        ``"randomized"`` the env's current randomization draw is used. Returns the uint8 frame, or
        ``(frame, class mask)`` with ``return_mask=True``.
        """
        if domain not in domains.DOMAINS:
            raise ValueError(f"unknown visual domain {domain!r}; choose from {domains.DOMAINS}")
        rgb, mask = self._render_look(self._look(domain, preset), return_mask)
        return (rgb, mask) if return_mask else rgb
