"""``domrand/Push-v0``: push the red cube onto the green goal disc on the table.

Action: tip displacement (dx, dy, dz) in [-1, 1] (x 3 cm per step).
State (18 floats): tip xyz (3), joint angles (7), cube xyz (3), goal xy (2), goal - cube xy (2),
cube yaw (1); world metres and radians.
Reward: dense ``-(|goal - cube| + 0.5 |cube - tip|)`` or sparse ``0`` / ``-1``.
Success: the cube's centre within 4 cm of the goal's centre; the episode then ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from domrand.envs.base import TabletopEnv
from domrand.envs.reach import sample_separated

SUCCESS_RADIUS = 0.04
PUSH_REGION = ((-0.16, 0.05), (-0.18, 0.18))  # cube and goal (table frame, m), all reachable


class PushEnv(TabletopEnv):
    """Push the cube to the goal (see the module docstring)."""

    n_distractors = 1
    with_goal = True
    state_dim = 18

    def __init__(self, *args: Any, reward_type: str = "dense", **kwargs: Any) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        self.reward_type = reward_type
        super().__init__(*args, **kwargs)

    def _setup_episode(self, options: dict | None) -> None:
        rng = self.np_random
        for _ in range(200):
            cube = np.array([rng.uniform(*PUSH_REGION[0]), rng.uniform(*PUSH_REGION[1])])
            ang = rng.uniform(-np.pi, np.pi)
            goal = cube + rng.uniform(0.12, 0.2) * np.array([np.cos(ang), np.sin(ang)])
            if PUSH_REGION[0][0] <= goal[0] <= PUSH_REGION[0][1] and PUSH_REGION[1][0] <= goal[1] <= PUSH_REGION[1][1]:
                break
        # Distractors stay clear of the cube, the goal and the path between them.
        path = [cube + t * (goal - cube) for t in np.linspace(0, 1, 5)]
        behind = cube - 0.1 * (goal - cube) / np.linalg.norm(goal - cube)
        others = sample_separated(rng, self.n_distractors, 0.12, [*path, behind])
        yaws = rng.uniform(-np.pi, np.pi, 1 + self.n_distractors)
        self.scene.reset(cube, float(yaws[0]), others, [float(y) for y in yaws[1:]], goal_xy=goal)

    def _state(self) -> np.ndarray:
        tip = self.scene.tip_position()
        cube, yaw = self.scene.body_pose(self.scene.cube)
        goal = self.scene.goal_xy()
        return np.concatenate([tip, self.scene.joint_positions(), cube, goal, goal - cube[:2], [yaw]])

    def _evaluate(self, action: np.ndarray | None) -> tuple[float, bool, dict[str, Any]]:
        cube = self.scene.object_position()
        goal = self.scene.goal_xy()
        dist = float(np.linalg.norm(goal - cube[:2]))
        success = dist < SUCCESS_RADIUS
        if self.reward_type == "dense":
            reward = -(dist + 0.5 * float(np.linalg.norm(cube - self.scene.tip_position())))
        else:
            reward = 0.0 if success else -1.0
        info = {"is_success": bool(success), "distance": dist, "goal_xy": goal.astype(np.float32)}
        return reward, success, info
