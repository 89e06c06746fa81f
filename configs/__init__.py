"""YAML presets shipped with domrand (installed as ``domrand.configs``)."""
