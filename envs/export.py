"""``domrand export-frames``: write frames (+ labels, masks) from a domrand env.

Output folder layout::

    DIR/frames/000000.png ...   uint8 RGB frames (image_size x image_size)
    DIR/masks/000000.png ...    with --masks: uint8 class ids (see ``CLASS_IDS`` in meta.json)
    DIR/labels.csv              one row per frame (columns: ``label_columns(env)``)
    DIR/meta.json               the command's settings and the class ids

A frame is written at every reset and after every step (Localize writes reset frames only: its
step does not move anything). Runs are reproducible from ``--seed``.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

POLICIES = ("random", "expert")


def label_columns(env) -> list[str]:
    """Column names of labels.csv for an (unwrapped) domrand env."""
    scene = env.scene
    cols = ["frame", "episode", "step", "object_x", "object_y", "object_z", "object_yaw"]
    if scene.goal is not None:
        cols += ["goal_x", "goal_y"]
    for i in range(len(scene.distractors)):
        cols += [f"distractor{i}_x", f"distractor{i}_y"]
    cols += ["tip_x", "tip_y", "tip_z"]
    cols += [f"joint{j}" for j in range(scene.n_joints)]
    cols += ["is_success"]
    return cols


def label_row(env, frame: str, episode: int, step: int, success: bool) -> list[Any]:
    """One labels.csv row for the env's current state (positions in m, table frame; angles in rad)."""
    scene = env.scene
    pos, yaw = scene.body_pose(scene.cube)
    row: list[Any] = [frame, episode, step, *np.round(pos, 5), round(yaw, 5)]
    if scene.goal is not None:
        row += list(np.round(scene.goal_xy(), 5))
    for body in scene.distractors:
        row += list(np.round(scene.body_pose(body)[0][:2], 5))
    row += list(np.round(scene.tip_position(), 5))
    row += list(np.round(scene.joint_positions(), 5))
    row += [int(bool(success))]
    return row


def export_frames(
    env_id: str,
    out: str,
    n: int,
    visual_domain: str = "sim",
    target_preset: str = "target-a",
    policy: str = "random",
    masks: bool = False,
    seed: int = 0,
    image_size: int = 64,
    renderer: str = "auto",
    randomize_every: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Write ``n`` frames (+ labels.csv, masks) of ``env_id`` into ``out``; returns the labels path."""
    import cv2
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)
    from domrand.envs.experts import expert_action

    from domrand.envs.domains import DOMAINS, resolve_target

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if visual_domain not in DOMAINS:
        try:  # "--visual-domain target-lab": the target domain with that preset
            resolve_target(visual_domain)
        except ValueError:
            raise ValueError(
                f"--visual-domain must be one of {', '.join(DOMAINS)} or a target preset, got {visual_domain!r}"
            ) from None
        visual_domain, target_preset = "target", visual_domain
    if policy not in POLICIES:
        raise ValueError(f"--policy must be one of {POLICIES}, got {policy!r}")
    labels_path = os.path.join(out, "labels.csv")
    if os.path.exists(labels_path) and not overwrite:
        raise ValueError(f"{labels_path} already exists; choose another --out or pass --overwrite")
    if not env_id.startswith("domrand/"):
        raise ValueError(f"--env must be a domrand env (domrand/Reach-v0, domrand/Push-v0, domrand/Localize-v0), got {env_id!r}")
    try:
        env = gym.make(
            env_id,
            obs_mode="pixels",
            visual_domain=visual_domain,
            target_preset=target_preset,
            image_size=image_size,
            renderer=renderer,
            return_masks=masks,
            randomize_every=randomize_every,
        )
    except gym.error.Error as exc:
        raise ValueError(f"cannot make env {env_id!r}: {exc}") from None
    base = env.unwrapped
    os.makedirs(os.path.join(out, "frames"), exist_ok=True)
    if masks:
        os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    with open(os.path.join(out, "meta.json"), "w") as fh:
        json.dump(
            {
                "env": env_id,
                "visual_domain": visual_domain,
                "target_preset": target_preset if visual_domain == "target" else None,
                "n": n,
                "policy": policy,
                "seed": seed,
                "image_size": image_size,
                "randomize_every": randomize_every,
                "class_ids": base.class_ids,
            },
            fh,
            indent=2,
        )
    env.action_space.seed(seed)
    records_steps = getattr(base, "records_steps", True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"export {env_id} {visual_domain}", unit="frame")
    written = 0
    episode = 0
    try:
        with open(labels_path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(label_columns(base))

            def write(obs: np.ndarray, info: dict, step: int) -> None:
                nonlocal written
                name = f"{written:06d}.png"
                cv2.imwrite(os.path.join(out, "frames", name), np.ascontiguousarray(obs[..., ::-1]))
                if masks:
                    cv2.imwrite(os.path.join(out, "masks", name), info["mask"].astype(np.uint8))
                writer.writerow(label_row(base, f"frames/{name}", episode, step, info.get("is_success", False)))
                written += 1
                if bar is not None:
                    bar.update(1)

            obs, info = env.reset(seed=seed)
            step = 0
            write(obs, info, step)
            while written < n:
                action = expert_action(env) if policy == "expert" else env.action_space.sample()
                obs, _, terminated, truncated, info = env.step(action)
                step += 1
                if records_steps:
                    write(obs, info, step)
                if written < n and (terminated or truncated):
                    episode += 1
                    obs, info = env.reset()
                    step = 0
                    write(obs, info, step)
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return labels_path
