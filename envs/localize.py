"""``domrand/Localize-v0``: where is the red cube? A one-step frame source for the transfer benchmark.

Every reset places the cube (and distractors) at random and jitters the arm's pose;
``info["object_xy"]`` is the cube's table position (x, y) in metres.
Action: the predicted (x, y), normalized to [-1, 1] over the object region
(``LocalizeEnv.normalize_xy`` / ``denormalize_xy``). Reward: ``-error`` in metres; the episode ends
after one step. Success: error below 3 cm.
State (10 floats): tip xyz (3) and joint angles (7) (the cube's position is the label, not an input).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from domrand.envs.base import TabletopEnv
from domrand.envs.reach import sample_separated
from domrand.envs.scene import OBJECT_REGION

SUCCESS_RADIUS = 0.03
_LO = np.array([OBJECT_REGION[0][0], OBJECT_REGION[1][0]])
_HI = np.array([OBJECT_REGION[0][1], OBJECT_REGION[1][1]])


def normalize_xy(xy: np.ndarray) -> np.ndarray:
    """Table xy (m) -> [-1, 1] over the object region."""
    return (2.0 * (np.asarray(xy) - _LO) / (_HI - _LO) - 1.0).astype(np.float32)


def denormalize_xy(u: np.ndarray) -> np.ndarray:
    """[-1, 1] -> table xy (m)."""
    return _LO + (np.asarray(u, np.float64) + 1.0) * 0.5 * (_HI - _LO)


class LocalizeEnv(TabletopEnv):
    """Localize the target cube (see the module docstring)."""

    n_distractors = 2
    state_dim = 10
    records_steps = False  # frame export: the step moves nothing, so only reset frames are written
    normalize_xy = staticmethod(normalize_xy)
    denormalize_xy = staticmethod(denormalize_xy)

    def _make_action_space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _setup_episode(self, options: dict | None) -> None:
        rng = self.np_random
        cube = sample_separated(rng, 1, 0.0, [])[0]
        others = sample_separated(rng, self.n_distractors, 0.1, [cube])
        yaws = rng.uniform(-np.pi, np.pi, 1 + self.n_distractors)
        q0 = self.scene.home_q + rng.uniform(-0.15, 0.15, self.scene.n_joints)
        self.scene.reset(cube, float(yaws[0]), others, [float(y) for y in yaws[1:]], q0=q0)

    def _apply_action(self, action: np.ndarray) -> None:
        pass  # a prediction does not move anything

    def _frame_index(self) -> int:
        return 0  # the scene never changes within an episode: the step's frame is the reset frame

    def _state(self) -> np.ndarray:
        return np.concatenate([self.scene.tip_position(), self.scene.joint_positions()])

    def _evaluate(self, action: np.ndarray | None) -> tuple[float, bool, dict[str, Any]]:
        if action is None:
            return 0.0, False, {"is_success": False}
        truth = self.scene.object_position()[:2]
        err = float(np.linalg.norm(denormalize_xy(action) - truth))
        return -err, True, {"is_success": bool(err < SUCCESS_RADIUS), "error": err}
