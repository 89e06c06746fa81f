"""Task A: localization (after Tobin et al. 2017). A small CNN regresses the red cube's table position
from one ``domrand/Localize-v0`` frame; error in cm and the share within 2 cm.

Training states are reset seeds ``data_seed * 10**7 + i``; test states are
``data_seed * 10**7 + 5 * 10**6 + i`` (never the same states). Per condition the training set is
``views`` renderings of every training state (``[V, N, H, W, 3]``, made by the condition). Each epoch
visits every state once with one of its views drawn at random, so every condition gets the same
number of gradient steps. Test sets: the held-out states in sim and in every target preset, and per
condition its *in-domain* test set: the held-out states rendered like its training frames.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domrand.transfer.common import (
    Log,
    content_hash,
    env_source_hash,
    mean_rows,
    progress_bar,
    summarize,
    torch_device,
)
from domrand.transfer.conditions import FrameContext, get_condition, with_role
from domrand.transfer.frames import render_frames

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer.config import BenchmarkConfig

IN_DOMAIN_ABOUT = (
    "each condition's model on the held-out test states rendered the way its own training frames were made "
    "(none: sim; classic: a classic randomized draw; augment/stylegan: sim frames through the augmenter/"
    "randomizer with unseen parameters; oracle: its own preset, mean over presets): does it fit its own frames?"
)
from domrand.utils import derive_seed
from domrand.envs.localize import denormalize_xy, normalize_xy
from domrand.metrics import swd
ERROR_KEYS = ("error_cm", "median_cm", "within")


class Localizer(nn.Module):
    """Small CNN with a spatial soft-argmax head (feature points, as in deep spatial autoencoders).

    Image ``[N, 3, H, W]`` in [-0.5, 0.5] (plus optional ``extra`` ``[N, extra_inputs]`` features,
    concatenated with the feature points) -> ``[N, outputs]`` (Task A: normalized table xy). Four GroupNorm conv
    layers (stride 4 in all for H > 32, else 2) give ``2 * width`` feature maps; each map's
    soft-argmax (expected x, y under its spatial softmax) feeds a 2-layer MLP. Per-sample
    normalization only, so no statistics carry over from the training domain.
    """

    def __init__(self, image_size: int = 64, width: int = 32, outputs: int = 2, extra_inputs: int = 0):
        super().__init__()
        w = width
        self.extra_inputs = extra_inputs

        def norm(c: int) -> nn.GroupNorm:
            return nn.GroupNorm(max(1, min(8, c // 4)), c)

        self.features = nn.Sequential(
            nn.Conv2d(3, w, 5, stride=2, padding=2), norm(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2 if image_size > 32 else 1, padding=1), norm(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=1), norm(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=1),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(4 * w + extra_inputs, 128), nn.ReLU(inplace=True), nn.Linear(128, outputs))

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(x)
        n, c, h, w = f.shape
        p = torch.softmax(f.flatten(2).float(), dim=-1).reshape(n, c, h, w)
        xs = torch.linspace(-1.0, 1.0, w, device=f.device)
        ys = torch.linspace(-1.0, 1.0, h, device=f.device)
        ex = (p.sum(2) * xs).sum(-1)  # [N, C]
        ey = (p.sum(3) * ys).sum(-1)
        points = [ex, ey] if extra is None else [ex, ey, extra.float()]
        return self.head(torch.cat(points, dim=1))


def frames_to_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` in [-0.5, 0.5]."""
    return batch.to(device).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


def train_localizer(
    views: np.ndarray,  # uint8 [V, N, H, W, 3]
    labels: np.ndarray,  # float [N, 2] table xy (m)
    cfg: "BenchmarkConfig",
    seed: int,
    device: torch.device,
) -> Localizer:
    """Train the CNN for ``epochs`` passes over the N states (one random view per state per pass)."""
    lc = cfg.localization
    gen = torch.Generator().manual_seed(derive_seed(seed, 11))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 13))
        model = Localizer(cfg.image_size, lc.width).to(device)
    targets = torch.from_numpy(normalize_xy(labels)).float()
    forward = lambda batch, idx: model(frames_to_input(batch, device))  # noqa: E731
    return fit_on_views(model, views, targets, forward, gen, lc.epochs, lc.batch_size, lc.lr, lc.weight_decay, device)


def fit_on_views(
    model: nn.Module,
    views: np.ndarray,  # uint8 [V, N, H, W, 3]
    targets: torch.Tensor,  # [N, K] regression targets
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (uint8 frames [B, H, W, 3], their indices [B]) -> [B, K]
    gen: torch.Generator,  # sample order and view choice
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    device: torch.device,
) -> nn.Module:
    """MSE regression for ``epochs`` passes over the N items, one random view of each per pass
    (AdamW, cosine decay to 0); returns ``model`` in eval mode."""
    frames = torch.from_numpy(np.ascontiguousarray(views))
    v, n = frames.shape[:2]
    total = epochs * math.ceil(n / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        pick = torch.randint(v, (n,), generator=gen)
        for j in range(0, n, batch_size):
            idx = order[j : j + batch_size]
            loss = F.mse_loss(forward(frames[pick[idx], idx], idx), targets[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict_xy(model: Localizer, frames: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """Predicted table xy (m) for uint8 frames ``[N, H, W, 3]``."""
    out = []
    t = torch.from_numpy(np.ascontiguousarray(frames))
    for j in range(0, t.shape[0], batch):
        out.append(model(frames_to_input(t[j : j + batch], device)).float().cpu().numpy())
    return denormalize_xy(np.concatenate(out))


def localization_errors(pred_xy: np.ndarray, true_xy: np.ndarray, within_cm: float) -> dict[str, float]:
    """Mean Euclidean error (cm), median, and the share of frames within ``within_cm``."""
    err = np.linalg.norm(np.asarray(pred_xy, np.float64) - np.asarray(true_xy, np.float64), axis=1) * 100.0
    return {
        "error_cm": float(err.mean()),
        "median_cm": float(np.median(err)),
        "within": float((err <= within_cm).mean()),
    }


def swd_table(
    cfg: "BenchmarkConfig",
    train_sets: dict[str, dict[str, np.ndarray]],
    test_frames: dict[str, np.ndarray],
    domains: list[str],
    n: int,
) -> dict[str, dict[str, float]]:
    """SWD (mean over pyramid levels, x1e3) between each condition's training frames and each test domain."""
    out: dict[str, dict[str, float]] = {}
    for cond, sets in train_sets.items():
        out[cond] = {}
        for d in domains:
            frames = sets.get(d, next(iter(sets.values())))[0]  # per-preset sets (oracle): the column's preset
            out[cond][d] = float(swd(frames[:n], test_frames[d][:n], patches_per_image=64, directions=256)["mean"])
    return out


def localization_bar(table: dict[str, dict[str, Any]], presets: Sequence[str]) -> dict[str, Any]:
    """The bar per target domain: the candidate's (stylegan) error <= half of the reference's (none),
    and below every baseline's (classic, augment); roles from the condition registry.

    Only the comparisons whose conditions ran are checked; empty when the candidate did not run.
    """
    out: dict[str, Any] = {}
    for cand in with_role("candidate"):
        if cand not in table:
            continue
        for d in presets:
            err = table[cand][d]["error_cm_mean"]
            checks: dict[str, bool] = {}
            for ref in with_role("reference"):
                if ref in table:
                    checks[f"at_most_half_of_{ref}"] = bool(err <= 0.5 * table[ref][d]["error_cm_mean"])
            for base in with_role("baseline"):
                if base in table:
                    checks[f"below_{base}"] = bool(err < table[base][d]["error_cm_mean"])
            out[d] = {"met": all(checks.values()) if checks else None, **checks}  # None: nothing to compare with
    return out


def localization_training_sets(
    ctx: FrameContext, log: Log
) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, dict[str, float]]:
    """Per condition the training views (``{condition: {model_key: [V, N, H, W, 3]}}``), labels, timings."""
    cfg = ctx.cfg
    lc = cfg.localization
    conds = [get_condition(c) for c in cfg.conditions]
    items = ["sim"]
    for cond in conds:
        items += [s for s in cond.sources(cfg.target_presets) if s not in items]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = render_frames(cfg, "train", lc.train_frames, items, ctx.cache, ctx.progress, views=lc.views)
    timings["render_train_s"] = time.perf_counter() - t0
    key = _frames_key(cfg, "train", lc.train_frames)
    sets: dict[str, dict[str, np.ndarray]] = {}
    for cond in conds:
        t0 = time.perf_counter()
        sets[cond.name] = cond.training_sets(ctx, data, lc.views, key)
        timings[f"frames_{cond.name}_s"] = time.perf_counter() - t0
    return sets, data["labels"], timings


def _frames_key(cfg: "BenchmarkConfig", split: str, n: int) -> str:
    """Identifies the sim frames of ``split`` (part of the cache key of their transforms)."""
    return content_hash({"sim": split, "n": n, "size": cfg.image_size, "renderer": cfg.renderer,
                         "env_src": env_source_hash(), "data_seed": cfg.data_seed, "env": cfg.localization.env})


def in_domain_test_frames(ctx: FrameContext, sim_test: np.ndarray) -> dict[str, np.ndarray]:
    """Per condition (but ``oracle``) the held-out test states made the way its training frames
    were (``[n, H, W, 3]``): ``none`` sim frames, ``classic`` one classic randomized draw,
    ``augment`` / ``stylegan`` the sim frames through the augmenter / randomizer with a parameter
    stream the training frames do not use. ``oracle``'s in-domain frames are its preset's test frames."""
    key = _frames_key(ctx.cfg, "test", ctx.cfg.localization.test_frames)
    out: dict[str, np.ndarray] = {}
    for name in ctx.cfg.conditions:
        frames = get_condition(name).in_domain_test(ctx, sim_test, key)
        if frames is not None:
            out[name] = frames
    return out


def run_localization(ctx: FrameContext, log: Log = print) -> dict[str, Any]:
    """Task A for every condition and seed; the results section (see ``domrand.transfer.report``)."""
    cfg, cache, progress = ctx.cfg, ctx.cache, ctx.progress
    lc = cfg.localization
    device = torch_device(cfg.device)
    t_start = time.perf_counter()
    train_sets, train_labels, timings = localization_training_sets(ctx, log)
    t0 = time.perf_counter()
    test_items = ["sim", *[f"target:{p}" for p in cfg.target_presets]]
    test = render_frames(cfg, "test", lc.test_frames, test_items, cache, progress)
    timings["render_test_s"] = time.perf_counter() - t0
    test_labels = test["labels"]
    domains = ["sim", *cfg.target_presets]
    test_frames = {d: test["sim" if d == "sim" else f"target:{d}"][0] for d in domains}
    t0 = time.perf_counter()
    own_test = in_domain_test_frames(ctx, test_frames["sim"])
    timings["in_domain_test_s"] = time.perf_counter() - t0

    # Reference: predict the training mean everywhere (what a model that learned nothing scores).
    mean_xy = np.broadcast_to(train_labels.mean(0), test_labels.shape)
    baseline = localization_errors(mean_xy, test_labels, lc.within_cm)

    seeds = [cfg.base_seed + s for s in range(cfg.seeds)]
    jobs = [(c, s, k) for c in cfg.conditions for s in seeds for k in train_sets[c]]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in domains} for c in cfg.conditions}
    t0 = time.perf_counter()
    bar = progress_bar(len(jobs), "train localizers", progress)
    # Conditions with one model per target preset (oracle): their sim and in-domain rows are the
    # mean over the preset models of a seed.
    preset_sim: dict[tuple[str, int], list[dict[str, float]]] = {}
    in_rows: dict[str, list[dict[str, Any]]] = {c: [] for c in cfg.conditions}
    preset_own: dict[tuple[str, int], list[dict[str, float]]] = {}
    probe: dict[str, dict[str, list[float]]] = {}
    n_probe = min(lc.probe_frames, lc.train_frames)
    try:
        for cond, seed, key in jobs:
            bar.set_postfix_str(f"{cond}{'/' + key if key else ''} seed {seed}")
            model = train_localizer(train_sets[cond][key], train_labels, cfg, seed, device)
            if key and n_probe:
                # Do the other conditions' training frames look like this target domain, with the
                # layout (cube position) kept? The model trained on it localizes them against their labels.
                for c2, sets in train_sets.items():
                    frames = sets.get(key, next(iter(sets.values())))
                    pred = predict_xy(model, frames[:, :n_probe].reshape(-1, *frames.shape[2:]), device)
                    truth = np.tile(train_labels[:n_probe], (frames.shape[0], 1))
                    err = localization_errors(pred, truth, lc.within_cm)["error_cm"]
                    probe.setdefault(c2, {}).setdefault(key, []).append(err)
            for d in (["sim", key] if key else domains):
                m = localization_errors(predict_xy(model, test_frames[d], device), test_labels, lc.within_cm)
                if key and d == "sim":
                    preset_sim.setdefault((cond, seed), []).append(m)
                else:
                    rows[cond][d].append({"seed": seed, **m})
                if key and d == key:
                    preset_own.setdefault((cond, seed), []).append(m)
            if cond in own_test:
                m = localization_errors(predict_xy(model, own_test[cond], device), test_labels, lc.within_cm)
                in_rows[cond].append({"seed": seed, **m})
            bar.update(1)
    finally:
        bar.close()
    for (cond, seed), ms in preset_sim.items():
        rows[cond]["sim"].append(mean_rows(seed, ms, ERROR_KEYS))
    for (cond, seed), ms in preset_own.items():  # in-domain: each preset's model on its own preset
        in_rows[cond].append(mean_rows(seed, ms, ERROR_KEYS))
    timings["train_eval_s"] = time.perf_counter() - t0
    diagnostics: dict[str, Any] = {}
    if probe:
        diagnostics["oracle_probe_cm"] = {
            "about": "error (cm) of the oracle model of each target preset on the first "
            f"{n_probe} training frames of each condition (all views), mean over seeds: low = the "
            "condition's frames look like that target domain and keep the layout",
            "results": {c: {p: float(np.mean(v)) for p, v in by.items()} for c, by in probe.items()},
        }
    if lc.swd_images:
        t0 = time.perf_counter()
        diagnostics["swd"] = {
            "about": f"SWD x1e3 (mean over levels) between {lc.swd_images} training frames of each condition "
            "(first view; oracle: the frames of the column's preset) and the test frames of each domain",
            "results": swd_table(cfg, train_sets, test_frames, domains, lc.swd_images),
        }
        timings["swd_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    table = {
        c: {d: summarize(sorted(rows[c][d], key=lambda r: r["seed"]), ERROR_KEYS) for d in domains}
        for c in cfg.conditions
    }
    return {
        "task": "localization",
        "env": lc.env,
        "metric": "error_cm",
        "metric_label": "localization error (cm)",
        "lower_is_better": True,
        "within_cm": lc.within_cm,
        "domains": domains,
        "seeds": seeds,
        "train_frames": lc.train_frames,
        "test_frames": lc.test_frames,
        "views": lc.views,
        "results": table,
        "in_domain": {
            c: summarize(sorted(in_rows[c], key=lambda r: r["seed"]), ERROR_KEYS)
            for c in cfg.conditions
            if in_rows[c]
        },
        "in_domain_about": IN_DOMAIN_ABOUT,
        "baselines": {"predict_mean": baseline},
        "bar": localization_bar(table, cfg.target_presets),
        "diagnostics": diagnostics,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
