"""Gymnasium wrappers over the randomizer (and the augmentation baseline): spaces, schedule, ecosystem."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from domrand.config import load_config

from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.networks import Generator
from domrand.randomizer import StyleRandomizer
from domrand.wrappers import (
    AugmentationObservation,
    ImageAugmenter,
    StyleRandomizationObservation,
    VectorAugmentation,
    VectorStyleRandomization,
)
from standins import StandInEncoder

# check_env warns that it is given a wrapped env: wrapping is the point here
pytestmark = pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")


class ImageEnv(gym.Env):
    """A fast pixel env: a random image per episode, shifted each step; episode of fixed length."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, size=24, episode_len=5, channels_first=False, dict_obs=False, render_mode=None):
        self.size, self.episode_len, self.channels_first, self.dict_obs = size, episode_len, channels_first, dict_obs
        self.render_mode = render_mode
        box = spaces.Box(0, 255, (3, size, size) if channels_first else (size, size, 3), np.uint8)
        state = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict({"pixels": box, "state": state}) if dict_obs else box
        self.action_space = spaces.Discrete(2)
        self._t, self._base = 0, np.zeros((size, size, 3), np.uint8)

    def _frame(self) -> np.ndarray:
        return np.roll(self._base, self._t, axis=1)

    def _obs(self):
        img = self._frame()
        img = np.ascontiguousarray(img.transpose(2, 0, 1)) if self.channels_first else img
        if self.dict_obs:
            return {"pixels": img, "state": np.zeros(2, np.float32)}
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._base = self.np_random.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, self._t >= self.episode_len, False, {}

    def render(self):
        return self._frame() if self.render_mode == "rgb_array" else None


@pytest.fixture(scope="module")
def randomizer() -> StyleRandomizer:
    torch.manual_seed(0)
    G = Generator(load_config("tiny", GeneratorConfig).network).eval()
    torch.manual_seed(1)
    return StyleRandomizer(G, StandInEncoder.for_generator(G), keep_resolution=8, seed=0)


def _make_domrand(**kw) -> gym.Env:
    try:
        return gym.make("domrand/Reach-v0", **kw)
    except Exception as exc:  # the pybullet envs land separately
        pytest.skip(f"domrand/Reach-v0 is not available yet: {type(exc).__name__}: {exc}")


# ---- ecosystem ------------------------------------------------------------------------------------


def test_check_env_box_dict_and_channel_first(randomizer) -> None:
    for env in (
        StyleRandomizationObservation(ImageEnv(), randomizer),
        StyleRandomizationObservation(ImageEnv(dict_obs=True), randomizer, pixel_key="pixels", resample=2),
        StyleRandomizationObservation(ImageEnv(channels_first=True), randomizer, resample="step"),
        AugmentationObservation(ImageEnv()),
    ):
        inner = env.env.observation_space
        check_env(env, skip_render_check=True)
        assert env.observation_space == inner


def test_domrand_env_wrapped(randomizer) -> None:
    env = _make_domrand(obs_mode="pixels+state", image_size=64)
    wrapped = StyleRandomizationObservation(env, randomizer)  # Dict: pixel_key defaults to "pixels"
    check_env(wrapped, skip_render_check=True)
    obs, _ = wrapped.reset(seed=0)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8 and "state" in obs
    check_env(AugmentationObservation(_make_domrand(obs_mode="pixels", image_size=64)), skip_render_check=True)


def test_classic_control_from_render(randomizer) -> None:
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("CartPole rendering needs pygame (pip install pygame)")
    env = StyleRandomizationObservation(gym.make("CartPole-v1", render_mode="rgb_array"), randomizer, from_render=True)
    assert env.observation_space == spaces.Box(0, 255, (400, 600, 3), np.uint8)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (400, 600, 3) and obs.dtype == np.uint8
    obs, *_ = env.step(0)
    assert env.observation_space.contains(obs)


def test_sb3_ppo_cnn_on_wrapped_vec_env(randomizer) -> None:
    pytest.importorskip("stable_baselines3", reason="the 'rl' extra (stable-baselines3) is not installed")
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    _make_domrand(obs_mode="pixels", image_size=64).close()
    venv = make_vec_env(
        "domrand/Reach-v0",
        n_envs=2,
        seed=0,
        env_kwargs={"obs_mode": "pixels", "image_size": 64},
        wrapper_class=StyleRandomizationObservation,
        wrapper_kwargs={"randomizer_or_bundle": randomizer},
    )
    model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, device="cpu", seed=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    venv.close()


def test_bench_wrapper_smoke(capsys) -> None:
    _make_domrand(obs_mode="pixels", image_size=32).close()
    from domrand.cli import main as cli_main

    argv = ["bench", "wrapper", "--generator", "tiny", "--inverter", "tiny", "--image-size", "32", "--num-envs", "2"]
    argv += ["--steps", "3", "--vector-steps", "2", "--repeats", "1", "--warmup", "1", "--threads", "1"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"| {mode} |" in out for mode in ("unwrapped", "style", "augment"))
    assert cli_main([*argv, "--modes", "student", "--no-vector"]) == 0  # the style wrapper on a (untrained) student
    assert "| student |" in capsys.readouterr().out


# ---- mechanics ------------------------------------------------------------------------------------


def test_episode_stability_and_reset_seeding(randomizer) -> None:
    env = StyleRandomizationObservation(ImageEnv(episode_len=50), randomizer)
    obs0, _ = env.reset(seed=3)
    style = randomizer.styles([env.env_id]).clone()
    for _ in range(4):
        env.step(0)
        assert torch.equal(randomizer.styles([env.env_id]), style)  # one world per episode
    again, _ = env.reset(seed=3)
    assert np.array_equal(again, obs0) and torch.equal(randomizer.styles([env.env_id]), style)
    env.reset(seed=4)
    assert not torch.equal(randomizer.styles([env.env_id]), style)
    env.reset()  # unseeded: a new style
    # a second wrapper sharing the randomizer gets its own id; same reset seed -> same style
    other = StyleRandomizationObservation(ImageEnv(episode_len=50), randomizer)
    assert other.env_id != env.env_id
    env.reset(seed=9)
    other.reset(seed=9)
    assert torch.equal(randomizer.styles([env.env_id]), randomizer.styles([other.env_id]))


def test_resample_every_k_steps(randomizer) -> None:
    env = StyleRandomizationObservation(ImageEnv(episode_len=50), randomizer, resample=2)
    env.reset(seed=0)
    seen = [randomizer.styles([env.env_id]).clone()]
    for _ in range(4):
        env.step(0)
        seen.append(randomizer.styles([env.env_id]).clone())
    same = [torch.equal(a, b) for a, b in zip(seen[:-1], seen[1:])]
    assert same == [True, False, True, False]


def test_vector_autoreset_resamples_exactly_the_reset_envs(randomizer) -> None:
    lens = (2, 3, 5)
    venv = gym.vector.SyncVectorEnv([lambda n=n: ImageEnv(episode_len=n) for n in lens])
    wrapped = VectorStyleRandomization(venv, randomizer)
    assert wrapped.single_observation_space == venv.single_observation_space
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (3, 24, 24, 3) and obs.dtype == np.uint8
    ids = wrapped.env_ids
    done_prev = np.zeros(3, bool)
    for _ in range(7):
        before = randomizer.styles(ids).clone()
        obs, _, term, trunc, _ = wrapped.step(np.zeros(3, dtype=np.int64))
        after = randomizer.styles(ids)
        changed = np.array([not torch.equal(before[i], after[i]) for i in range(3)])
        assert np.array_equal(changed, done_prev) and np.array_equal(wrapped.last_resampled, done_prev)
        done_prev = term | trunc
    # one batched call: the same frames through the single-env path give the same pixels
    frames = venv.call("_frame")
    direct = randomizer.randomize(np.stack(frames), ids)
    assert np.array_equal(direct, obs)
    again = VectorStyleRandomization(gym.vector.SyncVectorEnv([lambda n=n: ImageEnv(episode_len=n) for n in lens]), randomizer)
    obs_a, _ = again.reset(seed=0)
    obs_b, _ = wrapped.reset(seed=0)
    assert np.array_equal(obs_a, obs_b)  # same seed -> same frames


def test_vector_augmentation(randomizer) -> None:
    venv = gym.vector.SyncVectorEnv([lambda: ImageEnv(episode_len=3) for _ in range(2)])
    wrapped = VectorAugmentation(venv, resample="step")
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (2, 24, 24, 3)
    wrapped.step(np.zeros(2, dtype=np.int64))
    assert wrapped.last_resampled.all()


def test_augmentation_kinds_and_determinism() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for kind in ("color_jitter", "random_conv", "random_shift"):
        aug = ImageAugmenter(kinds=(kind,))
        aug.resample([0, 1], seed=5)
        out = aug.randomize(frames)
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert not np.array_equal(out, frames)
        assert np.array_equal(out, aug.randomize(frames))  # held until resampled
        other = ImageAugmenter(kinds=(kind,))
        other.resample([0, 1], seed=5)
        assert np.array_equal(out, other.randomize(frames))
    chw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    assert ImageAugmenter().randomize(chw).shape == chw.shape
    with pytest.raises(ValueError, match="accepted"):
        ImageAugmenter(kinds=("blur",))


# ---- bad input ------------------------------------------------------------------------------------


class _SpaceEnv(gym.Env):
    def __init__(self, space, render_mode=None):
        self.observation_space, self.action_space, self.render_mode = space, spaces.Discrete(2), render_mode


@pytest.mark.parametrize(
    "space, kwargs, match",
    [
        (spaces.Discrete(3), {}, "found Discrete"),
        (spaces.Box(0, 1, (8, 8, 3), np.float32), {}, "dtype float32"),
        (spaces.Box(0, 255, (8, 8, 4), np.uint8), {}, r"shape \(8, 8, 4\)"),
        (spaces.Box(0, 255, (8, 8), np.uint8), {}, r"shape \(8, 8\)"),
        (spaces.Dict({"image": spaces.Box(0, 255, (8, 8, 3), np.uint8)}), {}, "keys"),
        (spaces.Dict({"image": spaces.Box(0, 255, (8, 8, 3), np.uint8)}), {"pixel_key": "pixels"}, "'pixels' not in"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), {"pixel_key": "pixels"}, "not a Dict"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), {"from_render": True}, "render_mode"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), {"resample": "often"}, "resample"),
    ],
)
def test_bad_input_raises_value_error(randomizer, space, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StyleRandomizationObservation(_SpaceEnv(space), randomizer, **kwargs)
    with pytest.raises(ValueError, match=match):
        AugmentationObservation(_SpaceEnv(space), **kwargs)


def test_bad_vector_space_and_options(randomizer) -> None:
    venv = gym.vector.SyncVectorEnv([lambda: _SpaceEnv(spaces.Box(0, 1, (8, 8, 3), np.float32))])
    with pytest.raises(ValueError, match="dtype float32"):
        VectorStyleRandomization(venv, randomizer)
    with pytest.raises(TypeError, match="bundle path"):
        StyleRandomizationObservation(ImageEnv(), randomizer, psi=0.5)


class _BadFrameEnv(ImageEnv):
    """An ImageEnv whose frames are empty or of another size than its declared space."""

    def __init__(self, bad_shape, **kw):
        super().__init__(**kw)
        self.bad_shape = bad_shape

    def _frame(self) -> np.ndarray:
        return np.zeros(self.bad_shape, np.uint8)


@pytest.mark.parametrize(
    "bad_shape, words",
    [
        ((0, 0, 3), "the env returned an empty frame (shape (0, 0, 3)); accepted: a uint8 image of the declared shape (24, 24, 3)"),
        ((32, 32, 3), "the env returned a frame of shape (32, 32, 3), but its observation space declares (24, 24, 3)"),
    ],
)
def test_empty_or_wrong_size_frames_are_a_clear_error(randomizer, bad_shape, words) -> None:
    env = StyleRandomizationObservation(_BadFrameEnv(bad_shape), randomizer)
    with pytest.raises(ValueError) as exc:
        env.reset(seed=0)
    assert words in str(exc.value)
    # a vector env hands its batch to the wrapper (SyncVectorEnv itself refuses mis-sized frames earlier)
    venv = VectorStyleRandomization(gym.vector.SyncVectorEnv([lambda: ImageEnv()] * 2), randomizer)
    with pytest.raises(ValueError, match=r"^observations: the env returned (an empty frame|a frame of shape \(2, 32, 32, 3\))"):
        venv.observations(np.zeros((2, *bad_shape), np.uint8))


def test_threads_option_sets_torch_threads_and_refuses_nonsense(monkeypatch):
    import torch

    from domrand.wrappers.style import set_threads

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    set_threads(None)
    set_threads(1)
    assert calls == [1]
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="expected an integer >= 1 or None"):
            set_threads(bad)


def test_controls_switch_freeze_explicit_randomize_and_style_seed_in_info(randomizer) -> None:
    inner = ImageEnv(episode_len=50)
    env = StyleRandomizationObservation(inner, randomizer, resample=1)
    obs, info = env.reset(seed=5)
    seed0 = info["style_seed"]
    assert isinstance(seed0, int)
    style0 = randomizer.styles([env.env_id]).clone()
    # the seed in info reproduces the frame: the same style seed on another wrapper gives the same output
    other = StyleRandomizationObservation(ImageEnv(episode_len=50), randomizer)
    other.reset(seed=123)
    other.randomize_domain(seed=seed0)
    assert np.array_equal(other.observation(inner._obs()), obs)
    # frozen: neither steps (resample=1) nor resets draw a new style
    env.frozen = True
    _, _, _, _, info = env.step(0)
    assert info["style_seed"] == seed0 and torch.equal(randomizer.styles([env.env_id]), style0)
    _, info = env.reset(seed=6)
    assert info["style_seed"] == seed0 and torch.equal(randomizer.styles([env.env_id]), style0)
    # an explicit draw works while frozen, and returns the new seed
    new = env.randomize_domain()
    assert new != seed0 and not torch.equal(randomizer.styles([env.env_id]), style0)
    # off: the env's own frame passes through untouched
    env.enabled = False
    raw, _ = env.reset(seed=7)
    assert np.array_equal(raw, inner._obs())
