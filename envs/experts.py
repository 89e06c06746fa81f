"""Scripted experts: ``expert_action(env)`` for Reach, Push and Localize (wrapped or unwrapped env).

They read the simulator state (not pixels), so they work in every visual domain. Each env also
has ``env.unwrapped.expert_action()``, which calls this.
"""

from __future__ import annotations

import numpy as np

from domrand.envs.base import MAX_DELTA
from domrand.envs.scene import TABLE_Z

SAFE_Z = TABLE_Z + 0.10  # travel height when going around the cube
PUSH_Z = TABLE_Z + 0.018  # tip height while pushing
STANDOFF = 0.085  # tip distance behind the cube's centre before pushing (flange radius ~5.5 cm)


def _toward(tip: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.clip((goal - tip) / MAX_DELTA, -1.0, 1.0).astype(np.float32)


def reach_action(env) -> np.ndarray:
    """Straight to the reach point above the cube."""
    return _toward(env.scene.tip_position(), env.reach_point())


def push_action(env) -> np.ndarray:
    """Go over and behind the cube (opposite the goal), come down, push it along the line to the goal."""
    scene = env.scene
    tip = scene.tip_position()
    cube = scene.object_position()[:2]
    goal = scene.goal_xy()
    to_goal = goal - cube
    dist = float(np.linalg.norm(to_goal))
    direction = to_goal / max(dist, 1e-6)
    rel = tip[:2] - cube
    along = float(rel @ direction)  # negative: behind the cube
    lateral = float(rel @ np.array([-direction[1], direction[0]]))
    low = tip[2] < TABLE_Z + 0.06
    if low and along < -0.04 and abs(lateral) < 0.025:
        # In position: push through the cube towards the goal, steering out lateral error.
        aim = cube + direction * (min(dist, 0.05) + 0.02) - 0.8 * lateral * np.array([-direction[1], direction[0]])
        return _toward(tip, np.array([aim[0], aim[1], PUSH_Z]))
    pre = cube - direction * STANDOFF
    near_cube = float(np.linalg.norm(rel)) < 0.11
    if low and near_cube:
        return _toward(tip, np.array([tip[0], tip[1], SAFE_Z]))  # lift clear before moving around
    if float(np.linalg.norm(tip[:2] - pre)) > 0.03:
        return _toward(tip, np.array([pre[0], pre[1], SAFE_Z]))
    return _toward(tip, np.array([pre[0], pre[1], PUSH_Z]))  # close enough: come down (and finish xy)


def localize_action(env) -> np.ndarray:
    """The true cube position, normalized (an oracle, for tests and demos)."""
    return env.normalize_xy(env.scene.object_position()[:2])


def expert_action(env) -> np.ndarray:
    """The scripted expert's action for the current state of a domrand env (wrapped or not)."""
    from domrand.envs.localize import LocalizeEnv
    from domrand.envs.push import PushEnv
    from domrand.envs.reach import ReachEnv

    base = getattr(env, "unwrapped", env)
    if isinstance(base, ReachEnv):
        return reach_action(base)
    if isinstance(base, PushEnv):
        return push_action(base)
    if isinstance(base, LocalizeEnv):
        return localize_action(base)
    raise ValueError(f"no scripted expert for {type(base).__name__}")
