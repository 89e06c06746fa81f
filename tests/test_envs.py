"""Behavioural tests of the pybullet tabletop envs (domrand/Reach-v0, Push-v0, Localize-v0)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import domrand  # noqa: F401  (registers the envs)
from domrand.envs.experts import expert_action
from domrand.envs.scene import CLASS_IDS, OBJECT_REGION

ENV_IDS = ("domrand/Reach-v0", "domrand/Push-v0", "domrand/Localize-v0")
OBS_MODES = ("pixels", "state", "pixels+state")
SIZE = 32  # small frames keep the suite fast


def make(env_id: str = "domrand/Reach-v0", **kwargs):
    kwargs.setdefault("image_size", SIZE)
    kwargs.setdefault("renderer", "tiny")
    return gym.make(env_id, **kwargs)


def test_registration_is_lazy_and_idempotent():
    for env_id, steps in zip(ENV_IDS, (50, 100, 1)):
        assert gym.spec(env_id).max_episode_steps == steps
    domrand.envs.registration.register_envs()  # a second call must not raise or re-register
    code = "import sys, domrand; print('pybullet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_check_env_and_spaces(env_id, obs_mode):
    env = make(env_id, obs_mode=obs_mode)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    pixels = obs if obs_mode == "pixels" else (obs["pixels"] if obs_mode == "pixels+state" else None)
    if pixels is not None:
        assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    state = obs if obs_mode == "state" else (obs["state"] if obs_mode == "pixels+state" else None)
    if state is not None:
        space = env.observation_space if obs_mode == "state" else env.observation_space["state"]
        assert state.dtype == np.float32 and state.shape == space.shape
    assert isinstance(info["is_success"], bool)
    assert info["object_xy"].dtype == np.float32 and info["object_xy"].shape == (2,)
    assert env.action_space.dtype == np.float32
    env.close()


def _rollout(env, seed: int, steps: int = 8):
    obs, _ = env.reset(seed=seed)
    frames, states = [obs["pixels"]], [obs["state"]]
    for t in range(steps):
        action = np.array([np.sin(t), np.cos(t), -0.5], np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs["pixels"])
        states.append(obs["state"])
        if terminated or truncated:
            break
    return np.stack(frames), np.stack(states)


@pytest.mark.parametrize("domain", ["target", "randomized"])
def test_determinism_same_seed_same_actions(domain):
    kw = dict(obs_mode="pixels+state", visual_domain=domain, randomize_every=3)
    a, b = make("domrand/Push-v0", **kw), make("domrand/Push-v0", **kw)
    f1, s1 = _rollout(a, 5)
    _rollout(a, 9)  # another episode in between must not matter
    f2, s2 = _rollout(a, 5)
    f3, s3 = _rollout(b, 5)
    assert np.array_equal(f1, f2) and np.array_equal(s1, s2)
    assert np.array_equal(f1, f3) and np.array_equal(s1, s3)
    f4, _ = _rollout(b, 6)
    assert not np.array_equal(f1[0], f4[0])
    a.close()
    b.close()


@pytest.mark.parametrize("env_id", ["domrand/Reach-v0", "domrand/Push-v0"])
def test_expert_success_rate(env_id):
    env = make(env_id, obs_mode="state")
    n, wins = 12, 0
    for seed in range(n):
        env.reset(seed=100 + seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(expert_action(env))
            done = terminated or truncated
        wins += info["is_success"]
    assert wins / n >= 0.9, f"{env_id}: expert succeeded in {wins}/{n}"
    env.close()


def test_localize_places_object_at_random_and_oracle_succeeds():
    env = make("domrand/Localize-v0", obs_mode="pixels")
    xys = []
    for seed in range(4):
        _, info = env.reset(seed=seed)
        xy = info["object_xy"]
        assert OBJECT_REGION[0][0] - 0.01 <= xy[0] <= OBJECT_REGION[0][1] + 0.01
        assert OBJECT_REGION[1][0] - 0.01 <= xy[1] <= OBJECT_REGION[1][1] + 0.01
        xys.append(xy)
        _, reward, terminated, _, info = env.step(env.unwrapped.expert_action())
        assert terminated and info["is_success"] and reward > -0.01
    assert len({tuple(np.round(x, 4)) for x in xys}) == 4
    env.close()


def test_target_differs_from_sim_with_identical_masks():
    env = make("domrand/Reach-v0", obs_mode="pixels", visual_domain="sim", return_masks=True, image_size=48)
    obs, info = env.reset(seed=3)
    base = env.unwrapped
    sim, sim_mask = base.render_as("sim", return_mask=True)
    target, target_mask = base.render_as("target", "target-a", return_mask=True)
    other = base.render_as("target", "target-c")
    assert np.array_equal(sim, obs) and np.array_equal(sim_mask, info["mask"])
    assert np.abs(sim.astype(np.float32) - target).mean() > 25.0
    assert np.abs(other.astype(np.float32) - target).mean() > 10.0
    assert np.array_equal(sim_mask, target_mask)
    assert set(np.unique(sim_mask)) <= set(CLASS_IDS.values())
    assert {CLASS_IDS["table"], CLASS_IDS["robot"], CLASS_IDS["object"]} <= set(np.unique(sim_mask))
    env.close()


def test_render_as_keeps_state_rng_and_next_frames():
    kw = dict(obs_mode="pixels+state", visual_domain="target")
    a, b = make("domrand/Reach-v0", **kw), make("domrand/Reach-v0", **kw)
    a.reset(seed=2)
    b.reset(seed=2)
    rng_state = a.unwrapped.np_random.bit_generator.state
    for domain, preset in (("sim", None), ("randomized", None), ("target", "target-b")):
        a.unwrapped.render_as(domain, preset)
    assert a.unwrapped.np_random.bit_generator.state == rng_state
    action = np.array([0.3, -0.2, -0.4], np.float32)
    oa, *_ = a.step(action)
    ob, *_ = b.step(action)
    assert np.array_equal(oa["pixels"], ob["pixels"]) and np.array_equal(oa["state"], ob["state"])
    assert np.array_equal(a.render(), oa["pixels"])
    a.close()
    b.close()


def test_randomized_redraws_on_reset_and_every_k_steps():
    env = make("domrand/Reach-v0", visual_domain="randomized", randomize_every=2)
    base = env.unwrapped
    env.reset(seed=0)
    look0 = base._look("randomized")
    env.step(np.zeros(3, np.float32))
    assert base._look("randomized") is look0  # same draw within k steps
    env.step(np.zeros(3, np.float32))
    assert base._look("randomized") != look0  # redrawn at step k
    env.reset(seed=1)
    assert base._look("randomized") != look0
    once = make("domrand/Reach-v0", visual_domain="randomized")
    f0, _ = once.reset(seed=0)
    f1, _ = once.reset(seed=1)
    assert np.abs(f0.astype(np.float32) - f1).mean() > 10.0
    env.close()
    once.close()


def test_target_presets_and_errors():
    from domrand.envs.domains import TARGET_PRESETS, random_target_config, resolve_target

    assert len(TARGET_PRESETS) >= 3
    assert resolve_target("seed:7") == random_target_config(7) != random_target_config(8)
    with pytest.raises(ValueError, match="target preset"):
        make(visual_domain="target", target_preset="nope")
    with pytest.raises(ValueError, match="obs_mode"):
        make(obs_mode="depth")
    with pytest.raises(ValueError, match="visual_domain"):
        make(visual_domain="real")
    env = make(visual_domain="target", target_preset="seed:3")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (SIZE, SIZE, 3)
    env.close()


def test_envs_share_a_process():
    a, b = make("domrand/Reach-v0"), make("domrand/Push-v0")
    a.reset(seed=0)
    b.reset(seed=0)
    assert a.unwrapped.scene.client != b.unwrapped.scene.client
    a.close()
    b.step(b.action_space.sample())  # closing one env leaves the other working
    b.close()


def test_bench_env_measures():
    from domrand.speed.env import measure

    rates = measure("domrand/Reach-v0", "sim", steps=5, repeats=1, warmup=1, image_size=SIZE)
    assert len(rates) == 1 and rates[0] > 0


def test_egl_renderer_matches_tiny_when_available():
    import pybullet as p

    egl = make("domrand/Reach-v0", renderer="egl", visual_domain="target", image_size=48)
    if egl.unwrapped.renderer_flag != p.ER_BULLET_HARDWARE_OPENGL:
        egl.close()
        pytest.skip("pybullet's EGL plugin is not available here")
    tiny = make("domrand/Reach-v0", renderer="tiny", visual_domain="target", image_size=48)
    for domain in ("target", "sim"):
        a = egl.unwrapped.render_as(domain) if domain == "sim" else egl.reset(seed=0)[0]
        b = tiny.unwrapped.render_as(domain) if domain == "sim" else tiny.reset(seed=0)[0]
        assert np.abs(a.astype(np.float32) - b).mean() < 30.0  # same textures; shading differs a little
    egl.close()
    tiny.close()
