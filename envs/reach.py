"""``domrand/Reach-v0``: move the arm's flange to just above the red target cube.

Action: tip displacement (dx, dy, dz) in [-1, 1] (x ``MAX_DELTA`` = 3 cm per step).
State (16 floats): tip xyz (3), joint angles (7), cube xyz (3), cube - tip (3); world metres.
Reward: dense ``-distance`` (tip to the reach point, m) or sparse ``0`` on success, ``-1`` else.
Success: the tip within 3 cm of the point 2 cm above the cube's top; the episode then ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domrand.envs.base import TabletopEnv
from domrand.envs.scene import CUBE_HALF, OBJECT_REGION

REACH_HOVER = 0.02  # reach point: this far above the cube's top face
SUCCESS_RADIUS = 0.03


def sample_separated(rng: np.random.Generator, n: int, min_dist: float, taken: list[np.ndarray], region=OBJECT_REGION) -> list[np.ndarray]:
    """``n`` table positions in ``region``, each at least ``min_dist`` from the others and ``taken``."""
    out: list[np.ndarray] = []
    for _ in range(n):
        for _attempt in range(200):
            xy = np.array([rng.uniform(*region[0]), rng.uniform(*region[1])])
            if all(np.linalg.norm(xy - t) >= min_dist for t in [*taken, *out]):
                break
        out.append(xy)
    return out


class ReachEnv(TabletopEnv):
    """Reach the target cube (see the module docstring)."""

    n_distractors = 2
    state_dim = 16

    def __init__(self, *args: Any, reward_type: str = "dense", **kwargs: Any) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        self.reward_type = reward_type
        super().__init__(*args, **kwargs)

    def reach_point(self) -> np.ndarray:
        return self.scene.object_position() + np.array([0.0, 0.0, CUBE_HALF + REACH_HOVER])

    def _setup_episode(self, options: dict | None) -> None:
        rng = self.np_random
        cube = sample_separated(rng, 1, 0.0, [])[0]
        others = sample_separated(rng, self.n_distractors, 0.1, [cube])
        yaws = rng.uniform(-np.pi, np.pi, 1 + self.n_distractors)
        self.scene.reset(cube, float(yaws[0]), others, [float(y) for y in yaws[1:]])

    def _state(self) -> np.ndarray:
        tip = self.scene.tip_position()
        cube = self.scene.object_position()
        return np.concatenate([tip, self.scene.joint_positions(), cube, cube - tip])

    def _evaluate(self, action: np.ndarray | None) -> tuple[float, bool, dict[str, Any]]:
        dist = float(np.linalg.norm(self.scene.tip_position() - self.reach_point()))
        success = dist < SUCCESS_RADIUS
        reward = -dist if self.reward_type == "dense" else (0.0 if success else -1.0)
        return reward, success, {"is_success": bool(success), "distance": dist}
