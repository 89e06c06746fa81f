"""The transfer benchmark's tasks: frame sets per condition (cached), the CNN localizer, PPO control.

Task A (``run_localization``)
    Training states are reset seeds ``data_seed * 10**7 + i`` of ``domrand/Localize-v0``; test states
    are ``data_seed * 10**7 + 5 * 10**6 + i`` (never the same states). Per condition the training set
    is ``views`` renderings of every training state (``[V, N, H, W, 3]``): ``none`` the sim frame,
    ``classic`` V draws of the classic randomized domain, ``augment`` V augmentations of the sim frame,
    ``stylegan`` V style randomizations of the sim frame (a new style per frame), ``oracle`` the
    target-domain frame of one preset (one model per preset). Each epoch visits every state once
    with one of its views drawn at random, so every condition gets the same number of gradient steps.
    Test sets: the held-out states in sim and in every target preset, and per condition its
    *in-domain* test set: the held-out states rendered like its training frames (``in_domain``).
    Rendered frames and style-randomized frames are cached as ``.npz`` under the cache folder, keyed
    by everything that determines them (including a hash of the env sources and of the bundle).

Task B (``run_control``)
    PPO (stable-baselines3 ``CnnPolicy``) from pixels; the condition is the training env's visual
    domain or wrapper; evaluation runs the deterministic policy for ``eval_episodes`` episodes in sim
    and in every target preset. stable-baselines3 is imported lazily; without it the section is
    skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from domrand.transfer import BenchmarkConfig

IN_DOMAIN_ABOUT = (
    "each condition's model on the held-out test states rendered the way its own training frames were made "
    "(none: sim; classic: a classic randomized draw; augment/stylegan: sim frames through the augmenter/"
    "randomizer with unseen parameters; oracle: its own preset, mean over presets): does it fit its own frames?"
)
FRAMES_VERSION = 1  # bump when the frame generation below changes meaning
TEST_OFFSET = 5_000_000  # test reset seeds start here (relative to data_seed * 10**7)

Log = Callable[[str], None]


def split_preset(preset: str, split: str) -> str:
    """The target preset that renders ``split`` frames (``target-lab`` test frames use ``target-lab-test``)."""
    from domrand.envs.target_lab import split_preset as _split_preset

    return _split_preset(preset, split)


# ============================================================================== helpers
def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def _device(name: str) -> torch.device:
    from domrand.utils import resolve_device

    return resolve_device(name)


def _sha(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _seed_int(*entropy: int) -> int:
    return int(np.random.SeedSequence([int(e) & (2**63 - 1) for e in entropy]).generate_state(1, np.uint64)[0] >> 1)


def cache_root(cfg: "BenchmarkConfig") -> Path:
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "domrand" / "transfer"
    root.mkdir(parents=True, exist_ok=True)
    return root


_ENV_HASH: str | None = None


def env_source_hash() -> str:
    """Hash of the envs' source files: cached frames go stale when the envs change."""
    global _ENV_HASH
    if _ENV_HASH is None:
        import domrand.envs

        h = hashlib.sha1()
        for path in sorted(Path(domrand.envs.__file__).parent.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        _ENV_HASH = h.hexdigest()[:16]
    return _ENV_HASH


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    from domrand.utils import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):  # a damaged cache entry is re-made
        return None


# ============================================================================== bundles
def make_untrained_bundle(out: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained 16x16 bundle (``tiny`` generator + ``tiny`` inverter) for machinery checks."""
    from domrand.bundle import save_bundle
    from domrand.config import GeneratorConfig, load_config
    from domrand.generator.inverter import Inverter, InverterConfig
    from domrand.generator.networks import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(load_config("tiny", GeneratorConfig).network).eval()
        E = Inverter.for_generator(G, load_config("tiny", InverterConfig, kind="inverter").network, samples=64)
    return save_bundle(out, G, E)


def resolve_bundle(cfg: "BenchmarkConfig", cache: Path) -> Path:
    """The stylegan bundle path: the configured one (checked), the packaged model (``bundled``), or
    a made ``untrained:tiny`` bundle."""
    from domrand.transfer import BUNDLED, UNTRAINED_BUNDLE

    if not cfg.bundle:
        raise ValueError("condition 'stylegan' needs a bundle path (config 'bundle:' or --bundle)")
    if cfg.bundle == UNTRAINED_BUNDLE:
        path = cache / "bundles" / "untrained-tiny"
        if not (path / "bundle.json").is_file():
            make_untrained_bundle(path)
        return path
    if cfg.bundle == BUNDLED:
        from domrand.bundle import default_bundle_path

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
    return _sha(parts)


# ============================================================================== frames
def state_seeds(cfg: "BenchmarkConfig", split: str, n: int) -> list[int]:
    """Reset seeds of the ``train`` or ``test`` states (disjoint ranges)."""
    base = cfg.data_seed * 10**7 + (TEST_OFFSET if split == "test" else 0)
    return [base + i for i in range(n)]


def _make_frame_env(cfg: "BenchmarkConfig", env_id: str):
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)

    env = gym.make(
        env_id,
        obs_mode="pixels",
        visual_domain="sim",
        image_size=cfg.image_size,
        renderer=cfg.renderer,
        randomize_every=1,  # classic views: each (no-op) step of the unwrapped env is a new draw
    )
    return env


def render_frames(
    cfg: "BenchmarkConfig",
    split: str,
    n: int,
    items: list[str],
    cache: Path,
    progress: bool = False,
    views: int = 1,
) -> dict[str, np.ndarray]:
    """Render states of ``split`` as asked by ``items``; cached per item.

    items: ``"sim"``, ``"target:<preset>"`` or ``"randomized"`` (``views`` classic draws per state).
    Returns ``{"labels": float32 [n, 2] (m), item: uint8 [V, n, H, W, 3]}``.
    """
    env_id = cfg.localization.env
    common = {
        "v": FRAMES_VERSION,
        "env": env_id,
        "env_src": env_source_hash(),
        "size": cfg.image_size,
        "renderer": cfg.renderer,
        "data_seed": cfg.data_seed,
        "split": split,
        "n": n,
    }

    def path_of(item: str) -> Path:
        nv = views if item == "randomized" else 1
        tag = item.replace(":", "-").replace("/", "-")
        return cache / "frames" / f"{split}-{n}-{tag}-{_sha({**common, 'item': item, 'views': nv})}.npz"

    out: dict[str, np.ndarray] = {}
    missing = []
    for item in items:
        data = _load_npz(path_of(item))
        if data is None:
            missing.append(item)
        else:
            out[item], out["labels"] = data["frames"], data["labels"]
    if not missing:
        return out
    env = _make_frame_env(cfg, env_id)
    base = env.unwrapped
    size = cfg.image_size
    arrays = {
        item: np.zeros((views if item == "randomized" else 1, n, size, size, 3), np.uint8) for item in missing
    }
    labels = np.zeros((n, 2), np.float32)
    noop = np.zeros(base.action_space.shape, np.float32)
    bar = _bar(n, f"render {split} {'+'.join(missing)}", progress)
    try:
        for i, seed in enumerate(state_seeds(cfg, split, n)):
            obs, info = base.reset(seed=seed)
            labels[i] = info["object_xy"]
            for item in missing:
                if item == "sim":
                    arrays[item][0, i] = obs
                elif item.startswith("target:"):
                    # target-lab: test states are rendered with the family's test half of looks
                    arrays[item][0, i] = base.render_as("target", split_preset(item[len("target:") :], split))
                elif item == "randomized":
                    for k in range(views):
                        if k:
                            base.step(noop)  # LocalizeEnv: the scene stays, the randomization draw advances
                        arrays[item][k, i] = base.render_as("randomized")
                else:
                    raise ValueError(f"unknown frame item {item!r}")
            bar.update(1)
    finally:
        bar.close()
        env.close()
    for item, arr in arrays.items():
        _save_npz(path_of(item), frames=arr, labels=labels)
        out[item] = arr
    out["labels"] = labels
    return out


def augment_views(cfg: "BenchmarkConfig", frames: np.ndarray, views: int, salt: int = 0) -> np.ndarray:
    """``views`` augmentations of sim frames ``[n, H, W, 3]`` (new parameters per frame) -> ``[V, n, H, W, 3]``.

    ``salt`` picks another parameter stream (the in-domain test frames use 1, training frames 0).
    """
    from domrand.wrappers.augment import ImageAugmenter

    aug = ImageAugmenter(kinds=cfg.augment.kinds, **augment_options(cfg))
    n = frames.shape[0]
    out = np.zeros((views, *frames.shape), np.uint8)
    chunk = 256
    for k in range(views):
        for j in range(0, n, chunk):
            m = min(chunk, n - j)
            ids = list(range(m))
            aug.resample(ids, seed=[_seed_int(cfg.data_seed, 31, k, j + b, *([salt] if salt else [])) for b in ids])
            out[k, j : j + m] = aug.randomize(frames[j : j + m], env_ids=ids)
    return out


def augment_options(cfg: "BenchmarkConfig") -> dict[str, Any]:
    """``ImageAugmenter`` keyword options of the ``augment`` condition (None values: the augmenter's default)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(cfg.augment).items() if k != "kinds" and v is not None}


def style_options(cfg: "BenchmarkConfig") -> dict[str, Any]:
    opts = {k: getattr(cfg.stylegan, k) for k in ("psi", "mix", "keep_resolution", "noise")}
    return {k: v for k, v in opts.items() if v is not None}


def stylegan_views(
    cfg: "BenchmarkConfig",
    frames: np.ndarray,
    views: int,
    bundle: Path,
    cache: Path,
    split_key: str,
    progress: bool = False,
    salt: int = 0,
) -> np.ndarray:
    """``views`` style randomizations of sim frames (a new style per frame), cached per bundle.

    ``salt`` picks another style stream (the in-domain test frames use 1, training frames 0).
    """
    key = _sha({"v": FRAMES_VERSION, "frames": split_key, "views": views, "bundle": bundle_fingerprint(bundle),
                "opts": style_options(cfg), "data_seed": cfg.data_seed, **({"salt": salt} if salt else {})})
    path = cache / "frames" / f"stylegan-{frames.shape[0]}-{key}.npz"
    data = _load_npz(path)
    if data is not None:
        return data["frames"]
    from domrand.randomizer import StyleRandomizer

    rand = StyleRandomizer.from_bundle(bundle, device=cfg.device, **style_options(cfg))
    n = frames.shape[0]
    chunk = max(1, min(64, rand.max_batch))
    out = np.zeros((views, *frames.shape), np.uint8)
    bar = _bar(views * n, "stylegan frames", progress)
    try:
        for k in range(views):
            for j in range(0, n, chunk):
                m = min(chunk, n - j)
                ids = list(range(m))
                rand.resample(ids, seed=[_seed_int(cfg.data_seed, 47, k, j + b, *([salt] if salt else [])) for b in ids], immediate=True)
                out[k, j : j + m] = rand.randomize(frames[j : j + m], env_ids=ids)
                bar.update(m)
    finally:
        bar.close()
    _save_npz(path, frames=out)
    return out


# ============================================================================== Task A model
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


def _to_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
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
    from domrand.envs.localize import normalize_xy

    lc = cfg.localization
    gen = torch.Generator().manual_seed(_seed_int(seed, 11))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_int(seed, 13))
        model = Localizer(cfg.image_size, lc.width).to(device)
    frames = torch.from_numpy(np.ascontiguousarray(views))
    targets = torch.from_numpy(normalize_xy(labels)).float()
    v, n = frames.shape[:2]
    steps_per_epoch = math.ceil(n / lc.batch_size)
    total = lc.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lc.lr, weight_decay=lc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    model.train()
    for _ in range(lc.epochs):
        order = torch.randperm(n, generator=gen)
        pick = torch.randint(v, (n,), generator=gen)
        for j in range(0, n, lc.batch_size):
            idx = order[j : j + lc.batch_size]
            x = _to_input(frames[pick[idx], idx], device)
            y = targets[idx].to(device)
            loss = F.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def predict_xy(model: Localizer, frames: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """Predicted table xy (m) for uint8 frames ``[N, H, W, 3]``."""
    from domrand.envs.localize import denormalize_xy

    out = []
    t = torch.from_numpy(np.ascontiguousarray(frames))
    for j in range(0, t.shape[0], batch):
        out.append(model(_to_input(t[j : j + batch], device)).float().cpu().numpy())
    return denormalize_xy(np.concatenate(out))


def localization_errors(pred_xy: np.ndarray, true_xy: np.ndarray, within_cm: float) -> dict[str, float]:
    """Mean Euclidean error (cm), median, and the share of frames within ``within_cm``."""
    err = np.linalg.norm(np.asarray(pred_xy, np.float64) - np.asarray(true_xy, np.float64), axis=1) * 100.0
    return {
        "error_cm": float(err.mean()),
        "median_cm": float(np.median(err)),
        "within": float((err <= within_cm).mean()),
    }


def summarize(per_seed: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean and std (population, over seeds) of each key, plus the per-seed rows."""
    out: dict[str, Any] = {}
    for k in keys:
        vals = np.array([row[k] for row in per_seed], np.float64)
        out[f"{k}_mean"] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std())
    out["per_seed"] = per_seed
    return out


# ============================================================================== Task A
def swd_table(
    cfg: "BenchmarkConfig",
    train_sets: dict[str, dict[str, np.ndarray]],
    test_frames: dict[str, np.ndarray],
    domains: list[str],
    n: int,
) -> dict[str, dict[str, float]]:
    """SWD (mean over pyramid levels, x1e3) between each condition's training frames and each test domain."""
    from domrand.metrics import swd

    out: dict[str, dict[str, float]] = {}
    for cond, sets in train_sets.items():
        out[cond] = {}
        for d in domains:
            if cond == "oracle":
                frames = sets.get(d, next(iter(sets.values())))[0]
            else:
                frames = next(iter(sets.values()))[0]
            out[cond][d] = float(swd(frames[:n], test_frames[d][:n], patches_per_image=64, directions=256)["mean"])
    return out


def localization_bar(table: dict[str, dict[str, Any]], presets: Sequence[str]) -> dict[str, Any]:
    """The issue's bar per target domain: stylegan error <= half of none's, and below classic and augment.

    Only the comparisons whose conditions ran are checked; empty when ``stylegan`` did not run.
    """
    if "stylegan" not in table:
        return {}
    out: dict[str, Any] = {}
    for d in presets:
        sg = table["stylegan"][d]["error_cm_mean"]
        checks: dict[str, bool] = {}
        if "none" in table:
            checks["at_most_half_of_none"] = bool(sg <= 0.5 * table["none"][d]["error_cm_mean"])
        for c in ("classic", "augment"):
            if c in table:
                checks[f"below_{c}"] = bool(sg < table[c][d]["error_cm_mean"])
        out[d] = {"met": bool(checks) and all(checks.values()), **checks}
    return out


def localization_training_sets(
    cfg: "BenchmarkConfig", cache: Path, bundle: Path | None, progress: bool, log: Log
) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, dict[str, float]]:
    """Per condition the training views (``{condition: {model_key: [V, N, H, W, 3]}}``), labels, timings."""
    lc = cfg.localization
    conds = cfg.conditions
    items = ["sim"]
    if "classic" in conds:
        items.append("randomized")
    if "oracle" in conds:
        items += [f"target:{p}" for p in cfg.target_presets]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = render_frames(cfg, "train", lc.train_frames, items, cache, progress, views=lc.views)
    timings["render_train_s"] = time.perf_counter() - t0
    sim = data["sim"]
    sets: dict[str, dict[str, np.ndarray]] = {}
    for cond in conds:
        t0 = time.perf_counter()
        if cond == "none":
            sets[cond] = {"": sim}
        elif cond == "classic":
            sets[cond] = {"": data["randomized"]}
        elif cond == "augment":
            sets[cond] = {"": augment_views(cfg, sim[0], lc.views)}
        elif cond == "stylegan":
            if bundle is None:
                raise ValueError("condition 'stylegan' needs a bundle (config 'bundle:' or --bundle)")
            split_key = _sha({"sim": "train", "n": lc.train_frames, "size": cfg.image_size, "renderer": cfg.renderer,
                              "env_src": env_source_hash(), "data_seed": cfg.data_seed, "env": lc.env})
            sets[cond] = {"": stylegan_views(cfg, sim[0], lc.views, bundle, cache, split_key, progress)}
        elif cond == "oracle":
            sets[cond] = {p: data[f"target:{p}"] for p in cfg.target_presets}
        timings[f"frames_{cond}_s"] = time.perf_counter() - t0
    return sets, data["labels"], timings


def in_domain_test_frames(
    cfg: "BenchmarkConfig", cache: Path, bundle: Path | None, sim_test: np.ndarray, progress: bool
) -> dict[str, np.ndarray]:
    """Per condition (but ``oracle``) the held-out test states rendered the way its training frames
    were made (``[n, H, W, 3]``): ``none`` sim frames, ``classic`` one classic randomized draw,
    ``augment`` / ``stylegan`` the sim frames through the augmenter / randomizer with a parameter
    stream the training frames do not use. ``oracle``'s in-domain frames are its preset's test frames."""
    lc = cfg.localization
    out: dict[str, np.ndarray] = {}
    for cond in cfg.conditions:
        if cond == "none":
            out[cond] = sim_test
        elif cond == "classic":
            out[cond] = render_frames(cfg, "test", lc.test_frames, ["randomized"], cache, progress, views=1)["randomized"][0]
        elif cond == "augment":
            out[cond] = augment_views(cfg, sim_test, 1, salt=1)[0]
        elif cond == "stylegan" and bundle is not None:
            split_key = _sha({"sim": "test", "n": lc.test_frames, "size": cfg.image_size, "renderer": cfg.renderer,
                              "env_src": env_source_hash(), "data_seed": cfg.data_seed, "env": lc.env})
            out[cond] = stylegan_views(cfg, sim_test, 1, bundle, cache, split_key, progress, salt=1)[0]
    return out


def run_localization(
    cfg: "BenchmarkConfig", cache: Path, bundle: Path | None, progress: bool = True, log: Log = print
) -> dict[str, Any]:
    """Task A for every condition and seed; the results section (see ``transfer_report``)."""
    lc = cfg.localization
    device = _device(cfg.device)
    t_start = time.perf_counter()
    train_sets, train_labels, timings = localization_training_sets(cfg, cache, bundle, progress, log)
    t0 = time.perf_counter()
    test_items = ["sim", *[f"target:{p}" for p in cfg.target_presets]]
    test = render_frames(cfg, "test", lc.test_frames, test_items, cache, progress)
    timings["render_test_s"] = time.perf_counter() - t0
    test_labels = test["labels"]
    domains = ["sim", *cfg.target_presets]
    test_frames = {d: test["sim" if d == "sim" else f"target:{d}"][0] for d in domains}
    t0 = time.perf_counter()
    own_test = in_domain_test_frames(cfg, cache, bundle, test_frames["sim"], progress)
    timings["in_domain_test_s"] = time.perf_counter() - t0

    # Reference: predict the training mean everywhere (what a model that learned nothing scores).
    mean_xy = np.broadcast_to(train_labels.mean(0), test_labels.shape)
    baseline = localization_errors(mean_xy, test_labels, lc.within_cm)

    seeds = [cfg.base_seed + s for s in range(cfg.seeds)]
    jobs = [(c, s, k) for c in cfg.conditions for s in seeds for k in train_sets[c]]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in domains} for c in cfg.conditions}
    t0 = time.perf_counter()
    bar = _bar(len(jobs), "train localizers", progress)
    oracle_sim: dict[int, list[dict[str, float]]] = {}
    in_rows: dict[str, list[dict[str, Any]]] = {c: [] for c in cfg.conditions}
    oracle_own: dict[int, list[dict[str, float]]] = {}
    probe: dict[str, dict[str, list[float]]] = {}
    n_probe = min(lc.probe_frames, lc.train_frames)
    try:
        for cond, seed, key in jobs:
            bar.set_postfix_str(f"{cond}{'/' + key if key else ''} seed {seed}")
            model = train_localizer(train_sets[cond][key], train_labels, cfg, seed, device)
            if cond == "oracle" and n_probe:
                # Do the other conditions' training frames look like this target domain, with the
                # layout (cube position) kept? The oracle for it localizes them against their labels.
                for c2, sets in train_sets.items():
                    frames = next(iter(sets.values())) if c2 != "oracle" else sets[key]
                    pred = predict_xy(model, frames[:, :n_probe].reshape(-1, *frames.shape[2:]), device)
                    truth = np.tile(train_labels[:n_probe], (frames.shape[0], 1))
                    err = localization_errors(pred, truth, lc.within_cm)["error_cm"]
                    probe.setdefault(c2, {}).setdefault(key, []).append(err)
            evals = domains if cond != "oracle" else ["sim", key]
            for d in evals:
                m = localization_errors(predict_xy(model, test_frames[d], device), test_labels, lc.within_cm)
                if cond == "oracle" and d == "sim":
                    oracle_sim.setdefault(seed, []).append(m)
                else:
                    rows[cond][d].append({"seed": seed, **m})
                if cond == "oracle" and d == key:
                    oracle_own.setdefault(seed, []).append(m)
            if cond in own_test:
                m = localization_errors(predict_xy(model, own_test[cond], device), test_labels, lc.within_cm)
                in_rows[cond].append({"seed": seed, **m})
            bar.update(1)
    finally:
        bar.close()
    for seed, ms in oracle_sim.items():  # oracle on sim: the mean over the per-preset oracle models
        rows["oracle"]["sim"].append(
            {"seed": seed, **{k: float(np.mean([m[k] for m in ms])) for k in ("error_cm", "median_cm", "within")}}
        )
    for seed, ms in oracle_own.items():  # oracle in-domain: each preset's model on its own preset
        in_rows["oracle"].append(
            {"seed": seed, **{k: float(np.mean([m[k] for m in ms])) for k in ("error_cm", "median_cm", "within")}}
        )
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
        c: {d: summarize(sorted(rows[c][d], key=lambda r: r["seed"]), ("error_cm", "median_cm", "within")) for d in domains}
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
            c: summarize(sorted(in_rows[c], key=lambda r: r["seed"]), ("error_cm", "median_cm", "within"))
            for c in cfg.conditions
            if in_rows[c]
        },
        "in_domain_about": IN_DOMAIN_ABOUT,
        "baselines": {"predict_mean": baseline},
        "bar": localization_bar(table, cfg.target_presets),
        "diagnostics": diagnostics,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }


# ============================================================================== Task B
def _control_env(
    cfg: "BenchmarkConfig", env_id: str, cond: str, preset: str | None, transform: Any = None
):
    """One training env for ``cond`` (``visual_domain`` or a pixel wrapper)."""
    import gymnasium as gym

    import domrand  # noqa: F401

    domain = {"classic": "randomized", "oracle": "target"}.get(cond, "sim")
    kwargs: dict[str, Any] = dict(obs_mode="pixels", visual_domain=domain, image_size=cfg.image_size, renderer=cfg.renderer)
    if preset is not None:
        kwargs["target_preset"] = preset
    if cfg.control.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.control.max_episode_steps
    env = gym.make(env_id, **kwargs)
    if cond == "augment":
        from domrand.wrappers import AugmentationObservation

        env = AugmentationObservation(env, augmenter=transform, resample="episode")
    elif cond == "stylegan":
        from domrand.wrappers import StyleRandomizationObservation

        env = StyleRandomizationObservation(env, transform, resample="episode")
    return env


def evaluate_success(
    model: Any, cfg: "BenchmarkConfig", env_id: str, domain: str, preset: str | None, episodes: int, seed: int
) -> float:
    """Success rate of ``model`` (deterministic actions) over ``episodes`` held-out episodes."""
    if preset is not None:  # target-lab: evaluate on the family's test half of looks
        preset = split_preset(preset, "test")
    env = _control_env(cfg, env_id, "oracle" if domain == "target" else "none", preset)
    wins = 0
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=_seed_int(seed, 977, ep) % (2**31))
            success, done = bool(info.get("is_success", False)), False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, _, terminated, truncated, info = env.step(action)
                success = success or bool(info.get("is_success", False))
                done = terminated or truncated
            wins += int(success)
    finally:
        env.close()
    return wins / episodes


def run_control(
    cfg: "BenchmarkConfig", env_id: str, bundle: Path | None, progress: bool = True, log: Log = print
) -> dict[str, Any]:
    """Task B (PPO from pixels) for every condition and seed on ``env_id``; a results section."""
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
    device = str(_device(cfg.device))
    seeds = [cfg.base_seed + s for s in range(cfg.seeds)]
    jobs = [(c, s, p) for c in cfg.conditions for s in seeds for p in (cfg.target_presets if c == "oracle" else [None])]
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in domains} for c in cfg.conditions}
    oracle_sim: dict[int, list[float]] = {}
    randomizer = None
    t0 = time.perf_counter()
    bar = _bar(len(jobs), f"PPO {env_id.split('/')[-1]}", progress)
    try:
        for cond, seed, preset in jobs:
            bar.set_postfix_str(f"{cond}{'/' + preset if preset else ''} seed {seed}")
            transform = None
            if cond == "augment":
                from domrand.wrappers.augment import ImageAugmenter

                transform = ImageAugmenter(kinds=cfg.augment.kinds, seed=_seed_int(seed, 53), **augment_options(cfg))
            elif cond == "stylegan":
                if bundle is None:
                    raise ValueError("condition 'stylegan' needs a bundle (config 'bundle:' or --bundle)")
                if randomizer is None:
                    from domrand.randomizer import StyleRandomizer

                    randomizer = StyleRandomizer.from_bundle(bundle, device=cfg.device, **style_options(cfg))
                transform = randomizer
            fns = [
                (lambda c=cond, p=preset, t=transform: _control_env(cfg, env_id, c, p, t)) for _ in range(cc.n_envs)
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
            evals = domains if cond != "oracle" else ["sim", preset]
            for d in evals:
                rate = evaluate_success(
                    model, cfg, env_id, "sim" if d == "sim" else "target", None if d == "sim" else d, cc.eval_episodes, seed
                )
                if cond == "oracle" and d == "sim":
                    oracle_sim.setdefault(seed, []).append(rate)
                else:
                    rows[cond][d].append({"seed": seed, "success_rate": rate})
            bar.update(1)
    finally:
        bar.close()
    for seed, rates in oracle_sim.items():
        rows["oracle"]["sim"].append({"seed": seed, "success_rate": float(np.mean(rates))})
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
