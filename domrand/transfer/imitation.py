"""Task B on CPU: closed-loop control by behaviour cloning (``imitation`` in the benchmark config).

For each env (``domrand/Reach-v0``, ``domrand/Push-v0``) the scripted expert runs ``demo_episodes``
sim episodes. The executed action is the expert's plus Gaussian noise (DART, Laskey et al. 2017: the
demonstrations visit the states a slightly wrong policy reaches); the label is always the clean
expert action. Every demonstration step is rendered once per condition's source:

* ``none``: the sim frame; ``classic``: the episode's classic randomization draw;
* ``augment`` / ``stylegan``: the sim frame through ``ImageAugmenter`` / ``StyleRandomizer``
  (``views`` transforms per step, new parameters or style per frame);
* ``oracle``: the frame in the target preset (``target-lab``: its training half of looks).

A pixel policy (the Task A CNN with the arm's proprioception, tip xyz and 7 joint angles, joined
to its feature points; output the 3-D action) is fitted to the expert actions by mean squared
error. It is evaluated closed loop, acting on its own frames, for ``eval_episodes`` held-out
episodes (reset seeds disjoint from the demonstrations', the same for every condition) in sim
and in each target preset (``target-lab``: its test half of looks). Success = ``info["is_success"]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from domrand.envs.experts import expert_action
from domrand.transfer.common import (
    FRAMES_VERSION,
    Log,
    content_hash,
    env_source_hash,
    load_npz,
    mean_rows,
    progress_bar,
    run_episode,
    save_npz,
    split_preset,
    state_seeds,
    summarize,
    torch_device,
)
from domrand.transfer.conditions import FrameContext, get_condition, with_role
from domrand.transfer.localization import Localizer, fit_on_views, frames_to_input
from domrand.utils import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig

PROPRIO_DIMS = 10  # Reach/Push state: tip xyz (3) + joint angles (7) come first
DEMO_SALT = 2  # augment/stylegan parameter streams of the demonstrations (Task A uses 0 and 1)
BAR_BASELINES = ("classic",)  # Task B's bar: the candidate's success at least these baselines


def proprioception(state: np.ndarray) -> np.ndarray:
    """The arm's own sensing from a Reach/Push state vector: tip xyz and joint angles ``[..., 10]``."""
    return np.asarray(state, np.float32)[..., :PROPRIO_DIMS]


def _make_env(cfg: "BenchmarkConfig", env_id: str, domain: str, preset: str | None):
    import gymnasium as gym

    kwargs: dict[str, Any] = dict(
        obs_mode="pixels+state", visual_domain=domain, image_size=cfg.image_size, renderer=cfg.renderer,
        max_episode_steps=cfg.imitation.max_episode_steps,
    )  # fmt: skip
    if preset is not None:
        kwargs["target_preset"] = preset
    return gym.make(env_id, **kwargs)


def collect_demonstrations(
    cfg: "BenchmarkConfig", env_id: str, cache: Path, progress: bool = False
) -> dict[str, np.ndarray]:
    """Noisy-expert sim episodes rendered per source; cached.

    Returns ``actions`` float32 ``[N, 3]`` (clean expert labels), ``proprio`` float32 ``[N, 10]``,
    ``episode`` int32 ``[N]``, ``sim`` / ``randomized`` / ``target:<preset>`` uint8 ``[N, H, W, 3]``.
    """
    ic = cfg.imitation
    sources = ["sim", "randomized", *(f"target:{p}" for p in cfg.target_presets)]
    key = content_hash({"v": FRAMES_VERSION, "env": env_id, "env_src": env_source_hash(), "size": cfg.image_size,
                "renderer": cfg.renderer, "data_seed": cfg.data_seed, "episodes": ic.demo_episodes,
                "noise": ic.action_noise, "max_steps": ic.max_episode_steps, "sources": sources})
    path = cache / "demos" / f"{env_id.split('/')[-1]}-{ic.demo_episodes}-{key}.npz"
    data = load_npz(path)
    if data is not None:
        return data

    env = _make_env(cfg, env_id, "sim", None)
    base = env.unwrapped
    rows: dict[str, list[Any]] = {k: [] for k in ("actions", "proprio", "episode", *sources)}
    rng = np.random.default_rng(derive_seed(cfg.data_seed, 61))
    bar = progress_bar(ic.demo_episodes, f"demos {env_id.split('/')[-1]}", progress)
    try:
        for ep, seed in enumerate(state_seeds(cfg, "train", ic.demo_episodes)):
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                expert = np.asarray(expert_action(base), np.float32)
                rows["actions"].append(expert)
                rows["proprio"].append(proprioception(obs["state"]))
                rows["episode"].append(ep)
                for src in sources:
                    if src == "sim":
                        rows[src].append(obs["pixels"])
                    elif src == "randomized":
                        rows[src].append(base.render_as("randomized"))
                    else:  # target-lab: the training half of looks
                        rows[src].append(base.render_as("target", split_preset(src[len("target:") :], "train")))
                noisy = np.clip(expert + rng.normal(0.0, ic.action_noise, expert.shape), -1.0, 1.0)
                obs, _, terminated, truncated, _ = env.step(noisy.astype(np.float32))
                done = terminated or truncated
            bar.update(1)
    finally:
        bar.close()
        env.close()
    data = {
        "actions": np.stack(rows["actions"]).astype(np.float32),
        "proprio": np.stack(rows["proprio"]).astype(np.float32),
        "episode": np.asarray(rows["episode"], np.int32),
        **{src: np.stack(rows[src]).astype(np.uint8) for src in sources},
    }
    save_npz(path, **data)
    return data


class PixelPolicy(torch.nn.Module):
    """Frame ``[N, H, W, 3]`` uint8 + proprioception ``[N, 10]`` -> action ``[N, 3]`` in [-1, 1].

    The Task A CNN (spatial soft-argmax feature points) with the proprioception (standardized by
    the demonstrations' mean and std) joined to the feature points.
    """

    def __init__(self, image_size: int, width: int, proprio_mean: np.ndarray, proprio_std: np.ndarray):
        super().__init__()
        self.net = Localizer(image_size, width, outputs=3, extra_inputs=PROPRIO_DIMS)
        self.register_buffer("mean", torch.as_tensor(proprio_mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(proprio_std, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, H, W, 3]``, float ``[N, 10]`` -> raw action ``[N, 3]`` (clip to act)."""
        x = frames_to_input(frames, self.mean.device)
        return self.net(x, (proprio.to(self.mean.device).float() - self.mean) / self.std)

    @torch.no_grad()
    def act(self, frame: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """One action float32 ``[3]`` in [-1, 1] for one frame ``[H, W, 3]`` and proprioception ``[10]``."""
        out = self(torch.from_numpy(np.ascontiguousarray(frame[None])), torch.from_numpy(proprio[None]))
        return out[0].clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)


def train_policy(
    views: np.ndarray,  # uint8 [V, N, H, W, 3]
    proprio: np.ndarray,  # float32 [N, 10]
    actions: np.ndarray,  # float32 [N, 3]
    cfg: "BenchmarkConfig",
    seed: int,
    device: torch.device,
) -> PixelPolicy:
    """Behaviour cloning: ``epochs`` passes over the N steps (one random view per step per pass), MSE."""
    ic = cfg.imitation
    gen = torch.Generator().manual_seed(derive_seed(seed, 71))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 73))
        policy = PixelPolicy(cfg.image_size, ic.width, proprio.mean(0), proprio.std(0)).to(device)
    prop = torch.from_numpy(proprio)
    forward = lambda batch, idx: policy(batch, prop[idx])  # noqa: E731
    return fit_on_views(policy, views, torch.from_numpy(actions), forward, gen, ic.epochs, ic.batch_size, ic.lr,
                        ic.weight_decay, device)  # fmt: skip


def evaluate_policy(
    policy: PixelPolicy, cfg: "BenchmarkConfig", env_id: str, domain: str, episodes: int
) -> dict[str, float]:
    """Closed-loop success rate and mean episode length in ``domain`` (``sim`` or a target preset).

    Held-out reset seeds (the test range), the same for every condition and seed; target-lab
    episodes take their looks from its test half.
    """
    if domain == "sim":
        env = _make_env(cfg, env_id, "sim", None)
    else:
        env = _make_env(cfg, env_id, "target", split_preset(domain, "test"))
    try:
        episodes_run = [run_episode(env, seed, lambda obs: policy.act(obs["pixels"], proprioception(obs["state"])))
                for seed in state_seeds(cfg, "test", episodes)]  # fmt: skip
    finally:
        env.close()
    wins, steps = sum(s for s, _ in episodes_run), sum(n for _, n in episodes_run)
    return {"success_rate": wins / episodes, "episode_steps": steps / episodes}


def demo_training_sets(ctx: FrameContext, cond: str, demos: dict[str, np.ndarray], env_id: str) -> dict[str, np.ndarray]:
    """``{model key: [V, N, H, W, 3]}`` of condition ``cond`` made from the demonstration frames."""
    ic = ctx.cfg.imitation
    sources = {k: v[None] for k, v in demos.items() if k in ("sim", "randomized") or k.startswith("target:")}
    key = content_hash({"demos": env_id, "n": int(demos["sim"].shape[0]), "episodes": ic.demo_episodes,
                        "noise": ic.action_noise, "env_src": env_source_hash()})
    return get_condition(cond).training_sets(ctx, sources, ic.views, key, salt=DEMO_SALT)


def imitation_bar(results: dict[str, dict[str, Any]], presets: list[str]) -> dict[str, Any]:
    """Per target preset: the candidate's (stylegan) success above the reference's (none) and at
    least each of ``BAR_BASELINES`` (means over seeds)."""
    out: dict[str, Any] = {}
    for cand in with_role("candidate"):
        if cand not in results:
            continue
        for preset in presets:
            rate = {c: results[c][preset]["success_rate_mean"] for c in results}
            checks = {f"above_{c}": bool(rate[cand] > rate[c]) for c in with_role("reference") if c in rate}
            checks.update({f"at_least_{c}": bool(rate[cand] >= rate[c]) for c in BAR_BASELINES if c in rate})
            out[preset] = {"met": all(checks.values()) if checks else None, **checks}  # None: nothing to compare with
    return out


def run_imitation(ctx: FrameContext, env_id: str, log: Log = print) -> dict[str, Any]:
    """Task B by behaviour cloning on ``env_id`` for every condition and seed; a results section."""
    cfg = ctx.cfg
    ic = cfg.imitation
    device = torch_device(cfg.device)
    domains = ["sim", *cfg.target_presets]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    demos = collect_demonstrations(cfg, env_id, ctx.cache, ctx.progress)
    timings["demos_s"] = time.perf_counter() - t0
    n_steps, n_eps = int(demos["actions"].shape[0]), int(demos["episode"].max()) + 1
    log(f"imitation {env_id}: {n_eps} demonstration episodes, {n_steps} steps ({timings['demos_s']:.0f} s)")
    seeds = [cfg.base_seed + s for s in range(cfg.seeds)]
    t = time.perf_counter()
    sets = {cond: demo_training_sets(ctx, cond, demos, env_id) for cond in cfg.conditions}
    timings["frames_s"] = time.perf_counter() - t
    jobs = [(c, s, k) for c in cfg.conditions for s in seeds for k in sets[c]]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in domains} for c in cfg.conditions}
    preset_sim: dict[tuple[str, int], list[dict[str, float]]] = {}  # per-preset models (oracle) in sim
    timings["train_s"] = timings["eval_s"] = 0.0
    bar = progress_bar(len(jobs), f"BC {env_id.split('/')[-1]}", ctx.progress)
    try:
        for cond, seed, key in jobs:
            bar.set_postfix_str(f"{cond}{'/' + key if key else ''} seed {seed}")
            t = time.perf_counter()
            policy = train_policy(sets[cond][key], demos["proprio"], demos["actions"], cfg, seed, device)
            timings["train_s"] += time.perf_counter() - t
            t = time.perf_counter()
            for d in (["sim", key] if key else domains):
                res = {"seed": seed, **evaluate_policy(policy, cfg, env_id, d, ic.eval_episodes)}
                if key and d == "sim":
                    preset_sim.setdefault((cond, seed), []).append(res)
                else:
                    rows[cond][d].append(res)
            timings["eval_s"] += time.perf_counter() - t
            bar.update(1)
    finally:
        bar.close()
    keys = ("success_rate", "episode_steps")
    for (cond, seed), res in preset_sim.items():  # in sim: the mean over the per-preset models
        rows[cond]["sim"].append(mean_rows(seed, res, keys))
    results = {c: {d: summarize(sorted(rows[c][d], key=lambda r: r["seed"]), keys) for d in domains} for c in cfg.conditions}
    expert = evaluate_expert(cfg, env_id, ic.eval_episodes)
    return {
        "task": "imitation",
        "env": env_id,
        "metric": "success_rate",
        "metric_label": f"success rate ({env_id.split('/')[-1]}, behaviour cloning)",
        "lower_is_better": False,
        "domains": domains,
        "seeds": seeds,
        "demonstrations": {"episodes": n_eps, "steps": n_steps, "action_noise": ic.action_noise},
        "eval_episodes": ic.eval_episodes,
        "results": results,
        "baselines": {"expert": {"success_rate": expert}},
        "bar": imitation_bar(results, list(cfg.target_presets)),
        "timings_s": {k: round(v, 2) for k, v in {**timings, "total_s": time.perf_counter() - t0}.items()},
    }


def evaluate_expert(cfg: "BenchmarkConfig", env_id: str, episodes: int) -> float:
    """The scripted expert's success rate on the evaluation episodes (the ceiling; it reads the
    simulator state, so the visual domain does not matter)."""
    env = _make_env(cfg, env_id, "sim", None)
    try:
        wins = sum(run_episode(env, seed, lambda obs: expert_action(env.unwrapped))[0] for seed in state_seeds(cfg, "test", episodes))
    finally:
        env.close()
    return wins / episodes
