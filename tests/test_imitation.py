"""Task B on CPU (behaviour cloning): demonstrations, the policy learns, the benchmark section and report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domrand.transfer import imitation as transfer_imitation
from domrand.config import ConfigError
from domrand.transfer import load_benchmark_config, run_benchmark
from domrand.transfer.imitation import collect_demonstrations, proprioception, train_policy
from domrand.transfer.report import format_table
from domrand.transfer import make_untrained_bundle

torch.set_num_threads(1)

REACH = "domrand/Reach-v0"


def _cfg(**imitation):
    return load_benchmark_config(
        "smoke", tasks=("imitation",), conditions=("none",), target_presets=("target-a",), image_size=32,
        renderer="tiny", device="cpu", seeds=1,
        **{"imitation.envs": (REACH,), **{f"imitation.{k}": v for k, v in imitation.items()}},
    )  # fmt: skip


def test_demonstrations_are_clean_expert_labels_on_noisy_states_and_cached(tmp_path, monkeypatch):
    cfg = _cfg(demo_episodes=6, max_episode_steps=20, action_noise=0.3)
    demos = collect_demonstrations(cfg, REACH, tmp_path)
    n = demos["actions"].shape[0]
    assert n >= 6 and demos["episode"].max() == 5
    for key in ("sim", "randomized", "target:target-a"):
        assert demos[key].shape == (n, 32, 32, 3) and demos[key].dtype == np.uint8
    assert not np.array_equal(demos["sim"], demos["target:target-a"])
    assert demos["proprio"].shape == (n, 10)
    # The Reach expert's action is clip((goal - tip) / 3 cm): mostly saturated at +-1, never beyond.
    assert np.abs(demos["actions"]).max() <= 1.0 and (np.abs(demos["actions"]) == 1.0).mean() > 0.3
    # With noise the episodes are longer than the clean expert's (states off its path get visited).
    clean = collect_demonstrations(_cfg(demo_episodes=6, max_episode_steps=20, action_noise=0.0), REACH, tmp_path)
    assert n > clean["actions"].shape[0]
    # A second call reads the cache (no env is made).
    monkeypatch.setattr(transfer_imitation, "_make_env", lambda *a, **k: pytest.fail("re-rendered a cached set"))
    again = collect_demonstrations(cfg, REACH, tmp_path)
    assert all(np.array_equal(again[k], demos[k]) for k in demos)


def test_behaviour_cloning_learns_the_expert_from_pixels(tmp_path):
    """Held-out episodes: the policy's action error is well below always predicting the mean action."""
    cfg = _cfg(demo_episodes=48, max_episode_steps=20, epochs=30, batch_size=32)
    demos = collect_demonstrations(cfg, REACH, tmp_path)
    train, held = demos["episode"] < 40, demos["episode"] >= 40
    policy = train_policy(demos["sim"][None][:, train], demos["proprio"][train], demos["actions"][train], cfg, 0,
                          torch.device("cpu"))  # fmt: skip
    with torch.no_grad():
        pred = policy(torch.from_numpy(demos["sim"][held]), torch.from_numpy(demos["proprio"][held]))
    err = float(((pred.clamp(-1, 1).numpy() - demos["actions"][held]) ** 2).mean())
    mean_action = float(((demos["actions"][train].mean(0) - demos["actions"][held]) ** 2).mean())
    assert err < 0.65 * mean_action, (err, mean_action)
    act = policy.act(demos["sim"][0], demos["proprio"][0])
    assert act.shape == (3,) and act.dtype == np.float32 and np.abs(act).max() <= 1.0


def test_imitation_section_end_to_end(tmp_path):
    bundle = make_untrained_bundle(tmp_path / "bundle")
    cfg = load_benchmark_config(
        "smoke", tasks=("imitation",), target_presets=("target-a",), image_size=32, renderer="tiny",
        device="cpu", seeds=1, bundle=str(bundle), cache_dir=str(tmp_path / "cache"),
        **{"imitation.envs": (REACH,), "imitation.demo_episodes": 3, "imitation.epochs": 1,
           "imitation.eval_episodes": 2, "imitation.max_episode_steps": 12},
    )  # fmt: skip
    results = run_benchmark(cfg, tmp_path / "out", progress=False)
    section = results["sections"]["imitation/Reach-v0"]
    assert section["task"] == "imitation" and section["eval_episodes"] == 2
    assert section["baselines"]["expert"]["success_rate"] == 1.0  # the scripted expert reaches in <= 12 steps
    for cond in ("none", "classic", "augment", "stylegan", "oracle"):
        for dom in ("sim", "target-a"):
            row = section["results"][cond][dom]
            assert 0.0 <= row["success_rate_mean"] <= 1.0 and 1 <= row["episode_steps_mean"] <= 12
    assert set(section["bar"]) == {"target-a"} and "met" in section["bar"]["target-a"]
    table = format_table(results)
    assert "imitation/Reach-v0" in table and "(scripted expert)" in table and "noisy-expert episodes" in table
    assert (tmp_path / "out" / "results.json").is_file()


def test_proprioception_is_the_arm_state_only():
    state = np.arange(16, dtype=np.float32)  # Reach: tip (3), joints (7), cube (3), cube - tip (3)
    assert np.array_equal(proprioception(state), state[:10])


def test_imitation_config_errors_name_the_accepted_values():
    with pytest.raises(ConfigError, match="no scripted expert.*Localize.*Reach-v0"):
        load_benchmark_config("taskB", **{"imitation.envs": ("domrand/Localize-v0",)})
    with pytest.raises(ConfigError, match="imitation.demo_episodes must be >= 1"):
        load_benchmark_config("taskB", **{"imitation.demo_episodes": 0})
    with pytest.raises(ConfigError, match="action_noise"):
        load_benchmark_config("taskB", **{"imitation.action_noise": -0.1})
