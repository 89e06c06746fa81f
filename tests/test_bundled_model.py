"""The bundled default model (``domrand/assets/bundle/``): loads offline, is what the model card
describes, and keeps the scene's geometry better than a raw sim frame does.

The geometry check is the model card's own measurement at a smaller size: ``eval-inverter``
trains a segmenter on target-domain frames (with masks) and scores (a) raw sim frames (the floor)
and (b) the same sim frames randomized by the bundle (encoder only, as the wrapper does) against
the sim frames' own masks. Frames come from reset streams no training run used (seeds 7xx_xxx).
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from domrand.bundle import default_bundle_path, load_bundle
from domrand.cli import main
from domrand.config import GeneratorConfig, load_config

CARD = Path(__file__).resolve().parents[1] / "docs" / "model_card.md"
MAX_BYTES = 25 * 2**20


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(default_bundle_path(), device="cpu")


def test_bundled_model_loads_within_the_size_cap(bundle):
    path = default_bundle_path()
    assert sum(f.stat().st_size for f in path.iterdir()) <= MAX_BYTES
    assert bundle.G.img_resolution == 64
    small64 = asdict(load_config("small64", GeneratorConfig).network)
    config = bundle.info["generator"]["config"]["network"]
    for key in ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
        assert config[key] == small64[key], key
    assert bundle.info["inverter"]["keep_resolution"] == 16


def test_model_card_describes_the_shipped_weights(bundle):
    card = CARD.read_text()
    assert bundle.info["generator_hash"] in card, "docs/model_card.md must name the shipped generator's hash"
    floor = bundle.info["about"]["evaluation"]["geometry_miou"]["sim_frames (floor)"]
    assert f"{floor:.3f}" in card, "the card must report the sim-frame floor stored with the bundle"


def test_randomized_frames_keep_layout_and_change_appearance(bundle):
    from domrand.randomizer import StyleRandomizer

    import gymnasium as gym

    import domrand  # noqa: F401

    env = gym.make("domrand/Reach-v0", obs_mode="pixels", visual_domain="sim")
    frame, _ = env.reset(seed=700_001)
    env.close()
    r = StyleRandomizer(bundle.G, bundle.E, seed=0, **bundle.options)  # the networks the fixture loaded
    r.resample([0, 1], seed=3)
    a, b = r.randomize(np.stack([frame, frame]), env_ids=[0, 1])
    assert a.shape == frame.shape and a.dtype == np.uint8
    assert np.abs(a.astype(float) - b.astype(float)).mean() > 2.0  # two styles look different


def _export(out: Path, domain: str, n: int, seed: int) -> str:
    argv = ["export-frames", "--env", "domrand/Reach-v0", "--visual-domain", domain, "--n", str(n),
            "--seed", str(seed), "--out", str(out), "--masks", "--no-progress", "--renderer", "tiny"]
    if domain == "target":
        argv += ["--target-preset", "target-a"]
    assert main(argv) == 0
    return str(out)


def test_geometry_score_is_above_the_sim_frame_floor(bundle, tmp_path):
    path = default_bundle_path()
    seg_train = _export(tmp_path / "target_train", "target", 240, 700_000)
    seg_eval = _export(tmp_path / "target_eval", "target", 64, 710_000)
    sim = _export(tmp_path / "sim", "sim", 96, 720_000)
    out = tmp_path / "eval.json"
    argv = ["eval-inverter", "--inverter", str(path / "inverter.safetensors"), "--generator", str(path / "generator.safetensors"),
            "--target-frames", seg_train, "--target-eval-frames", seg_eval, "--sim-frames", sim,
            "--n-gen", "8", "--refine-steps", "0", "--seg-steps", "150", "--no-latency", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    geo = json.loads(out.read_text())["geometry_miou"]
    floor, randomized = geo["sim_frames (floor)"], geo["randomized_sim (encoder)"]
    card_floor = bundle.info["about"]["evaluation"]["geometry_miou"]["sim_frames (floor)"]
    assert geo["target_frames (ceiling)"] > floor  # the segmenter works in its own domain
    assert randomized > floor, geo
    assert randomized > card_floor, (randomized, card_floor)
