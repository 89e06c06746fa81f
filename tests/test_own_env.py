"""README "On your own env", end to end at toy size on a classic-control env: collect sim frames
from CartPole's render(), a folder of "target photos", train-pair, bundle, wrap with from_render."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np

from domrand.cli import main as cli_main
from domrand.wrappers import StyleRandomizationObservation


def test_collect_train_pair_bundle_and_wrap_cartpole(tmp_path):
    sim = tmp_path / "cartpole_sim"
    assert cli_main(["collect", "--env", "CartPole-v1", "--n", "48", "--size", "16", "--fit", "crop", "--out", str(sim), "--no-progress"]) == 0
    photos = tmp_path / "photos"  # stand-in for a real camera: warmer, darker, noisy copies at 40x40
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, f in enumerate(sorted((sim / "frames").glob("*.png"))):
        img = cv2.resize(cv2.imread(str(f)), (40, 40)).astype(np.float64) * (0.6, 0.8, 1.0) + rng.normal(0, 8, (40, 40, 3))
        cv2.imwrite(str(photos / f"{i:04d}.jpg"), img.clip(0, 255).astype(np.uint8))
    run = tmp_path / "run"
    assert cli_main(["train-pair", "--config", "tiny", "--out", str(run), "--sim-data", str(sim / "frames"),
                     "--target-data", str(photos), "--kimg", "0.05", "--no-progress"]) == 0  # fmt: skip
    assert cli_main(["bundle", "--generator", str(run), "--inverter", str(run), "--out", str(tmp_path / "bundle")]) == 0
    env = StyleRandomizationObservation(gym.make("CartPole-v1", render_mode="rgb_array"), str(tmp_path / "bundle"),
                                        from_render=True, device="cpu", fit="crop")  # fmt: skip
    obs, info = env.reset(seed=0)
    assert obs.shape == (400, 600, 3) and obs.dtype == np.uint8 and "style_seed" in info
    plain = env.env.render()
    assert np.abs(obs.astype(int) - plain.astype(int)).mean() > 1  # the frame was re-rendered
    obs2, *_ = env.step(0)
    assert obs2.shape == (400, 600, 3)
    env.close()
