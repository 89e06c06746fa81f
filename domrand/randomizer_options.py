"""The style randomizer's option names, shared by the randomizer and the bundle format (which
stores randomizer defaults and validates them on load)."""

NOISE_OPTIONS = ("random", "step", "const", "none")
"""How fine (above ``keep_resolution``) noise is drawn: ``random`` = per-environment maps drawn at
``resample`` and held; ``step`` = fresh maps on every ``randomize`` call; ``const`` = G's constant
maps; ``none`` = no noise. Coarse noise is always G's constant maps."""


# Keyword options a bundle may store as randomizer defaults (and ``from_bundle`` accepts).
OPTION_NAMES = ("keep_resolution", "psi", "mix", "noise", "refine_steps", "seed", "max_batch", "dtype", "drift_steps", "fit", "model")

MODELS = ("teacher", "student")
"""What renders the frames: ``teacher`` = the inverter and generator; ``student`` = the bundle's
distilled ``StudentNet`` (one fast pass; it renders the teacher with constant fine noise and mix 1)."""
