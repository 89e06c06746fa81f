"""``domrand collect`` and frame fitting: frames from any Gymnasium env (render(), a pixel Box, a
Dict entry), policies, a manifest, determinism, clear errors; pad/crop/stretch round trips."""

from __future__ import annotations

import json

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from domrand.cli import main as cli_main
from domrand.collect import collect, frame_source
from domrand.frames import fit_frames, unfit_frames


def _smooth(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // (h + w)], -1).astype(np.uint8)[None]


@pytest.mark.parametrize("mode", ["pad", "crop", "stretch"])
def test_fit_and_unfit_round_trip_a_wide_frame(mode):
    frame = _smooth(48, 96)
    small = fit_frames(frame, 32, mode)
    assert small.shape == (1, 32, 32, 3)
    back = unfit_frames(small, (48, 96), mode, original=frame if mode == "crop" else None)
    assert back.shape == frame.shape
    assert np.abs(back.astype(int) - frame.astype(int)).mean() < 4  # a smooth image survives the round trip


def test_pad_keeps_the_aspect_ratio_and_crop_the_centre():
    frame = np.zeros((1, 20, 40, 3), np.uint8)
    frame[0, :, 15:25] = 255  # a centred vertical bar, a quarter of the width
    pad = fit_frames(frame, 40, "pad")[0]
    assert (pad[20, :, 0] > 128).sum() == 10  # the bar keeps its width: scale 1
    crop = fit_frames(frame, 20, "crop")[0]
    assert (crop[10, :, 0] > 128).sum() == 10  # the central 20x20 holds the whole bar
    stretch = fit_frames(frame, 20, "stretch")[0]
    assert abs(int(stretch[10, :, 0].astype(int).sum()) - 5 * 255) <= 2  # squashed to half its width
    with pytest.raises(ValueError, match="pad, crop, stretch"):
        fit_frames(frame, 20, "zoom")


def test_collect_renders_a_classic_control_env_with_a_manifest(tmp_path):
    m = collect("CartPole-v1", 12, tmp_path / "a", size=16, seed=3, progress=False)
    assert m["source"] == "render" and m["original_size"] == [400, 600] and m["n"] == 12
    files = sorted((tmp_path / "a" / "frames").glob("*.png"))
    assert len(files) == 12
    assert cv2.imread(str(files[0])).shape == (16, 16, 3)
    rows = (tmp_path / "a" / "index.csv").read_text().splitlines()
    assert rows[0] == "frame,episode,step" and len(rows) == 13
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["fit"] == "pad"
    collect("CartPole-v1", 12, tmp_path / "b", size=16, seed=3, progress=False)
    for f in files:  # same seed, same frames
        assert (tmp_path / "b" / "frames" / f.name).read_bytes() == f.read_bytes()
    with pytest.raises(ValueError, match="already holds"):
        collect("CartPole-v1", 2, tmp_path / "a", size=16, progress=False)


class _DictPixels(gym.Env):
    """Dict observations: a 24x32 image and a state vector; the image's brightness is the step count."""

    observation_space = spaces.Dict({"image": spaces.Box(0, 255, (24, 32, 3), np.uint8), "state": spaces.Box(-1, 1, (2,))})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 5, {}

    def _obs(self):
        return {"image": np.full((24, 32, 3), 40 * self.t, np.uint8), "state": np.zeros(2, np.float32)}


def always_one(env, obs):
    return 1


def test_collect_takes_the_image_entry_of_a_dict_and_a_module_policy(tmp_path):
    gym.register("TestDictPixels-v0", entry_point=_DictPixels)
    try:
        env = gym.make("TestDictPixels-v0")
        assert frame_source(env, None) == ("obs", "image")
        with pytest.raises(ValueError, match="not an image"):
            frame_source(env, "state")
        m = collect("TestDictPixels-v0", 7, tmp_path / "d", size=8, policy="test_collect:always_one", progress=False)
        assert m["source"] == "obs" and m["obs_key"] == "image" and m["episodes"] == 2
        first = cv2.imread(str(tmp_path / "d" / "frames" / "000001.png"))
        assert int(first.mean()) == 40  # step 1 of episode 0
    finally:
        gym.envs.registration.registry.pop("TestDictPixels-v0", None)


def test_collect_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["collect", "--env", "NoSuchEnv-v0", "--n", "2", "--out", str(tmp_path / "x")]) == 2
    assert "NoSuchEnv" in capsys.readouterr().err
    assert cli_main(["collect", "--env", "CartPole-v1", "--n", "2", "--out", str(tmp_path / "y"), "--policy", "expert"]) == 2
    assert "domrand envs only" in capsys.readouterr().err
    assert cli_main(["collect", "--env", "CartPole-v1", "--n", "2", "--out", str(tmp_path / "z"), "--policy", "nomodule:f"]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_the_randomizer_keeps_the_aspect_ratio_of_non_square_frames(tmp_path):
    import torch

    from domrand.randomizer import StyleRandomizer
    from domrand.transfer import make_untrained_bundle

    bundle = make_untrained_bundle(tmp_path / "b")
    frames = np.repeat(_smooth(30, 60), 2, axis=0)
    R = StyleRandomizer.from_bundle(bundle, device="cpu", seed=0)
    assert R.fit == "pad"  # the default keeps the aspect ratio
    x = R._to_model(frames, channels_first=False)
    expected = fit_frames(frames, R.resolution, "pad")
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(expected))
    for mode in ("pad", "crop", "stretch"):
        R.fit = mode
        out = R.randomize(frames)
        assert out.shape == frames.shape and out.dtype == np.uint8
        out_t = R.randomize(torch.from_numpy(frames).permute(0, 3, 1, 2), channels_first=True)
        assert tuple(out_t.shape) == (2, 3, 30, 60)
    with pytest.raises(ValueError, match="pad, crop, stretch"):
        StyleRandomizer.from_bundle(bundle, device="cpu", fit="zoom")


def test_vector_wrapper_randomizes_rendered_frames_of_a_classic_control_env(tmp_path):
    from domrand.transfer import make_untrained_bundle
    from domrand.wrappers import VectorStyleRandomization

    bundle = make_untrained_bundle(tmp_path / "b")
    venv = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", render_mode="rgb_array")
    env = VectorStyleRandomization(venv, bundle, from_render=True, device="cpu")
    assert env.single_observation_space.shape == (400, 600, 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 400, 600, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    plain = np.stack(venv.render())
    assert np.abs(obs.astype(int) - plain.astype(int)).mean() > 1  # re-rendered, not passed through
    obs, *_ = env.step(np.array([0, 1]))
    assert obs.shape == (2, 400, 600, 3)
    env.close()
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        VectorStyleRandomization(gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"), bundle, from_render=True, device="cpu")


def test_render_randomized_lets_recorders_see_what_the_policy_sees(tmp_path):
    from gymnasium.wrappers import RenderCollection

    from domrand.transfer import make_untrained_bundle
    from domrand.wrappers import StyleRandomizationObservation

    bundle = make_untrained_bundle(tmp_path / "b")
    gym.register("TestDictPixels-v1", entry_point=_DictPixels)
    try:
        env = StyleRandomizationObservation(gym.make("TestDictPixels-v1"), bundle, pixel_key="image", device="cpu",
                                            render_randomized=True)  # fmt: skip
        assert env.render_mode == "rgb_array"
        rec = RenderCollection(env)
        obs, _ = rec.reset(seed=0)
        obs2, *_ = rec.step(0)
        frames = rec.render()
        assert np.array_equal(frames[-1], obs2["image"]) and not np.array_equal(obs2["image"], np.full((24, 32, 3), 40, np.uint8))
        plain = StyleRandomizationObservation(gym.make("TestDictPixels-v1"), bundle, pixel_key="image", device="cpu")
        assert plain.render_mode is None  # the env's own (no render_randomized)
    finally:
        gym.envs.registration.registry.pop("TestDictPixels-v1", None)


def test_robosuite_named_controls(tmp_path):
    from domrand.transfer import make_untrained_bundle
    from domrand.wrappers import StyleRandomizationObservation

    bundle = make_untrained_bundle(tmp_path / "b")
    gym.register("TestDictPixels-v2", entry_point=_DictPixels)
    try:
        env = StyleRandomizationObservation(gym.make("TestDictPixels-v2"), bundle, pixel_key="image", device="cpu",
                                            randomize_on_reset=False, randomize_every_n_steps=2)  # fmt: skip
        _, info = env.reset(seed=0)
        first = info["style_seed"]
        _, info = env.reset()
        assert info["style_seed"] == first  # kept across resets
        _, _, _, _, info = env.step(0)
        assert info["style_seed"] == first
        _, _, _, _, info = env.step(0)
        assert info["style_seed"] != first  # every 2 steps
        with pytest.raises(ValueError, match="not both"):
            StyleRandomizationObservation(gym.make("TestDictPixels-v2"), bundle, pixel_key="image", device="cpu",
                                          resample="step", randomize_every_n_steps=2)  # fmt: skip
    finally:
        gym.envs.registration.registry.pop("TestDictPixels-v2", None)
