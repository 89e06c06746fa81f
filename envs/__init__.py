"""pybullet tabletop environments (installed as ``domrand.envs``)."""
