"""Task B with PPO (the GPU-sized variant): PPO (stable-baselines3 ``CnnPolicy``) from pixels.

The condition decides the training env's visual domain and wrapper (``Condition.visual_domain``,
``control_transform``, ``wrap_control_env``); evaluation runs the deterministic policy for
``eval_episodes`` episodes in sim and in every target preset. stable-baselines3 is imported lazily;
without it the section is skipped with the reason.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any


from domrand.transfer.common import Log, mean_rows, progress_bar, run_episode, split_preset, summarize, torch_device
from domrand.transfer.conditions import FrameContext, get_condition
from domrand.utils import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig


def make_control_env(cfg: "BenchmarkConfig", env_id: str, domain: str, preset: str | None):
    """One pixel env rendering ``domain`` (sim, randomized or target with ``preset``)."""
    import gymnasium as gym

    kwargs: dict[str, Any] = dict(obs_mode="pixels", visual_domain=domain, image_size=cfg.image_size, renderer=cfg.renderer)
    if preset is not None:
        kwargs["target_preset"] = preset
    if cfg.control.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.control.max_episode_steps
    return gym.make(env_id, **kwargs)


def evaluate_success(
    model: Any, cfg: "BenchmarkConfig", env_id: str, domain: str, preset: str | None, episodes: int, seed: int
) -> float:
    """Success rate of ``model`` (deterministic actions) over ``episodes`` held-out episodes."""
    if preset is not None:  # target-lab: evaluate on the family's test half of looks
        preset = split_preset(preset, "test")
    env = make_control_env(cfg, env_id, "target" if domain == "target" else "sim", preset)
    try:
        wins = sum(run_episode(env, derive_seed(seed, 977, ep) % (2**31), lambda obs: model.predict(obs, deterministic=True)[0])[0]
                   for ep in range(episodes))  # fmt: skip
    finally:
        env.close()
    return wins / episodes


def run_control(ctx: FrameContext, env_id: str, log: Log = print) -> dict[str, Any]:
    """Task B (PPO from pixels) for every condition and seed on ``env_id``; a results section."""
    cfg = ctx.cfg
    domains = ["sim", *cfg.target_presets]
    section: dict[str, Any] = {
        "task": "control",
        "env": env_id,
        "metric": "success_rate",
        "metric_label": f"success rate ({env_id.split('/')[-1]})",
        "lower_is_better": False,
        "domains": domains,
    }
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError:
        section["skipped"] = "stable-baselines3 is not installed (pip install 'domrand[rl]')"
        log(f"control {env_id}: skipped: {section['skipped']}")
        return section
    cc = cfg.control
    device = str(torch_device(cfg.device))
    seeds = [cfg.base_seed + s for s in range(cfg.seeds)]
    per_preset = {c: get_condition(c).visual_domain == "target" for c in cfg.conditions}
    jobs = [(c, s, p) for c in cfg.conditions for s in seeds for p in (cfg.target_presets if per_preset[c] else [None])]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in domains} for c in cfg.conditions}
    preset_sim: dict[tuple[str, int], list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    bar = progress_bar(len(jobs), f"PPO {env_id.split('/')[-1]}", ctx.progress)
    try:
        for name, seed, preset in jobs:
            bar.set_postfix_str(f"{name}{'/' + preset if preset else ''} seed {seed}")
            cond = get_condition(name)
            transform = cond.control_transform(ctx, seed)
            fns = [
                (lambda c=cond, p=preset, t=transform: c.wrap_control_env(make_control_env(cfg, env_id, c.visual_domain, p), t))
                for _ in range(cc.n_envs)
            ]
            venv = DummyVecEnv(fns)
            try:
                model = PPO(
                    "CnnPolicy",
                    venv,
                    n_steps=cc.n_steps,
                    batch_size=min(cc.batch_size, cc.n_steps * cc.n_envs),
                    n_epochs=cc.n_epochs,
                    learning_rate=cc.lr,
                    gamma=cc.gamma,
                    ent_coef=cc.ent_coef,
                    seed=seed,
                    device=device,
                    verbose=0,
                )
                model.learn(total_timesteps=cc.steps)
            finally:
                venv.close()
            for d in (["sim", preset] if preset else domains):
                rate = evaluate_success(
                    model, cfg, env_id, "sim" if d == "sim" else "target", None if d == "sim" else d, cc.eval_episodes, seed
                )
                if preset and d == "sim":
                    preset_sim.setdefault((name, seed), []).append({"success_rate": rate})
                else:
                    rows[name][d].append({"seed": seed, "success_rate": rate})
            bar.update(1)
    finally:
        bar.close()
    for (name, seed), res in preset_sim.items():  # in sim: the mean over the per-preset models
        rows[name]["sim"].append(mean_rows(seed, res, ("success_rate",)))
    section.update(
        {
            "seeds": seeds,
            "steps": cc.steps,
            "eval_episodes": cc.eval_episodes,
            "results": {
                c: {d: summarize(sorted(rows[c][d], key=lambda r: r["seed"]), ("success_rate",)) for d in domains}
                for c in cfg.conditions
            },
            "timings_s": {"total_s": round(time.perf_counter() - t0, 2)},
        }
    )
    return section
