"""The ``stylegan`` condition's bundle: resolving ``bundle:`` and fingerprinting it for cache keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from domrand.bundle import add_student, default_bundle_path, save_bundle
from domrand.config import load_config
from domrand.generator.nn.inverter import Inverter
from domrand.generator.nn.networks import Generator
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.generator.train.inverter import InverterConfig
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.transfer.common import content_hash

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig

UNTRAINED_BUNDLE = "untrained:tiny"  # pseudo bundle path: an untrained 16x16 bundle (machinery checks only)
BUNDLED = "bundled"  # pseudo bundle path: the model packaged with domrand (docs/model_card.md)


def make_untrained_bundle(out: str | os.PathLike, seed: int = 0, student: bool = False) -> Path:
    """An untrained 16x16 bundle (``tiny`` generator + ``tiny`` inverter, with ``student`` a small
    untrained distilled student too) for machinery checks."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(load_config("tiny", GeneratorConfig).network).eval()
        E = Inverter.for_generator(G, load_config("tiny", InverterConfig, kind="inverter").network, samples=64)
        S = StudentNet(StudentConfig(resolution=int(G.img_resolution), w_dim=int(G.w_dim), channels=(8, 16)))
    path = save_bundle(out, G, E)
    return add_student(path, S) if student else path


def resolve_bundle(cfg: "BenchmarkConfig", cache: Path) -> Path:
    """The stylegan bundle path: the configured one (checked), the packaged model (``bundled``), or
    a made ``untrained:tiny`` bundle."""
    if not cfg.bundle:
        raise ValueError("condition 'stylegan' needs a bundle path (config 'bundle:' or --bundle)")
    if cfg.bundle == UNTRAINED_BUNDLE:
        path = cache / "bundles" / "untrained-tiny"
        if not (path / "bundle.json").is_file():
            make_untrained_bundle(path, student=True)
        return path
    if cfg.bundle == BUNDLED:
        return default_bundle_path()
    path = Path(cfg.bundle).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"bundle {cfg.bundle!r} does not exist (make one with 'domrand bundle')")
    return path


def bundle_fingerprint(path: Path) -> str:
    """Identifies a bundle's content for cache keys (file names, sizes, mtimes and bundle.json)."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    parts = []
    for f in files:
        if f.is_file():
            st = f.stat()
            parts.append([f.name, st.st_size, int(st.st_mtime)])
            if f.name == "bundle.json":
                parts.append(f.read_text())
    return content_hash(parts)
