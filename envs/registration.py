"""Gymnasium registration of the domrand environments (names only; nothing heavy is imported)."""


def register_envs() -> None:
    """Register ``domrand/*`` env ids with Gymnasium (idempotent). Filled in by the envs issue."""
