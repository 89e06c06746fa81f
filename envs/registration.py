"""Gymnasium registration of the domrand environments (names only; nothing heavy is imported)."""

from __future__ import annotations

# id -> (entry point, max_episode_steps)
ENVS: dict[str, tuple[str, int]] = {
    "domrand/Reach-v0": ("domrand.envs.reach:ReachEnv", 50),
    "domrand/Push-v0": ("domrand.envs.push:PushEnv", 100),
    "domrand/Localize-v0": ("domrand.envs.localize:LocalizeEnv", 1),
}


def register_envs() -> None:
    """Register ``domrand/*`` env ids with Gymnasium (idempotent)."""
    import gymnasium

    for env_id, (entry_point, max_steps) in ENVS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)
