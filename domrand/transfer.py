"""``domrand benchmark``: does StyleGAN randomization transfer better than the baselines?

One model, one budget and one set of seeds per *condition*; every trained model is tested in the
target visual domain(s) (the envs' target presets stand in for real camera imagery):

* ``none``: trained on plain sim frames;
* ``classic``: trained on the envs' classic visual randomization (``visual_domain="randomized"``:
  everything random but the task's cue, the cube stays red and nothing else is);
* ``augment``: trained on sim frames through the augmentation baseline (colour jitter, a random
  convolution blended with the frame on half of them; ``augment.kinds`` also takes random shift /
  translate / crop, cutout and grayscale);
* ``stylegan``: trained on sim frames through ``StyleRandomizer`` with a bundle trained on
  target-domain imagery that is disjoint from the test frames (the bundle comes from outside);
* ``oracle``: trained on target-domain frames directly (one model per target preset; the ceiling).

Tasks (``domrand.transfer_tasks``): ``localization`` (Task A: a small CNN regresses the red cube's
table position from a frame; error in cm and the share within 2 cm) and ``control`` (Task B: PPO
from pixels, success rate in the target domain).

Usage::

    domrand benchmark --config smoke                    # bundled preset (configs/benchmark/smoke.yaml)
    domrand benchmark --config configs/benchmark/taskA.yaml --bundle runs/bundle --seeds 3 --out runs/bench
    domrand benchmark --config taskA --conditions none classic augment oracle

Writes ``OUT/results.json``, ``OUT/results.png``, ``OUT/table.txt`` and ``OUT/config.yaml`` and
prints the table. In Python: ``run_benchmark(config, out)``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from domrand import cli_args
from domrand.config import ConfigError, dump_yaml, from_dict, load_config, parse_overrides, to_dict

CONDITIONS = ("none", "classic", "augment", "stylegan", "oracle")
TASKS = ("localization", "imitation", "control")
UNTRAINED_BUNDLE = "untrained:tiny"  # pseudo bundle path: an untrained 16x16 bundle (machinery checks only)
IMITATION_ENVS = ("domrand/Reach-v0", "domrand/Push-v0")  # envs with a scripted expert and proprioception
BUNDLED = "bundled"  # pseudo bundle path: the model packaged with domrand (docs/model_card.md)


@dataclass(frozen=True)
class LocalizationConfig:
    """Task A: CNN localization of the target cube from one frame (after Tobin et al. 2017)."""

    env: str = "domrand/Localize-v0"  # frame source; info["object_xy"] is the label
    train_frames: int = 2000  # training states (one sim frame each; randomized conditions get `views`)
    test_frames: int = 500  # held-out states (other reset seeds), rendered in sim and every target preset
    views: int = 4  # randomized renderings per training state (classic, augment, stylegan); one drawn per sample
    epochs: int = 30  # passes over the training states (the same for every condition)
    batch_size: int = 64  # minibatch size
    lr: float = 0.001  # AdamW learning rate (cosine decay to 0)
    weight_decay: float = 0.0001  # AdamW weight decay
    width: int = 32  # channels of the CNN's first conv (x2, x2, x4 deeper)
    within_cm: float = 2.0  # radius of the "within" share (cm)
    probe_frames: int = 256  # diagnostics: oracle models localize this many training frames of each condition (0 = off)
    swd_images: int = 0  # diagnostics: SWD between each condition's training frames and each test domain (0 = off)


@dataclass(frozen=True)
class ControlConfig:
    """Task B: PPO (stable-baselines3, CnnPolicy) from pixels; success rate in the target domain."""

    envs: tuple[str, ...] = ("domrand/Reach-v0",)  # env ids (add domrand/Push-v0 if the budget allows)
    steps: int = 200000  # PPO environment steps per model
    n_envs: int = 8  # parallel envs in one DummyVecEnv
    n_steps: int = 128  # rollout length per env between updates
    batch_size: int = 256  # PPO minibatch
    n_epochs: int = 4  # PPO epochs per update
    lr: float = 0.0003  # Adam learning rate
    gamma: float = 0.98  # discount
    ent_coef: float = 0.0  # entropy bonus
    eval_episodes: int = 50  # evaluation episodes per model and domain
    max_episode_steps: int | None = None  # override the registered episode length (None = keep)


@dataclass(frozen=True)
class ImitationConfig:
    """Task B on CPU: behaviour cloning of the scripted expert from pixels + proprioception."""

    envs: tuple[str, ...] = ("domrand/Reach-v0", "domrand/Push-v0")  # env ids with a scripted expert
    demo_episodes: int = 300  # noisy-expert sim episodes (reset seeds of the train range)
    action_noise: float = 0.3  # std of the Gaussian noise added to the executed expert action (DART); labels are clean
    max_episode_steps: int = 40  # episode cap for demonstrations and evaluation (experts need <= 25 steps)
    views: int = 2  # augment/stylegan transforms per demonstration step (one drawn per pass)
    epochs: int = 15  # passes over the demonstration steps
    batch_size: int = 64  # minibatch size
    lr: float = 0.001  # AdamW learning rate (cosine decay to 0)
    weight_decay: float = 0.0001  # AdamW weight decay
    width: int = 32  # channels of the CNN's first conv (the Task A CNN)
    eval_episodes: int = 100  # closed-loop evaluation episodes per model and domain (test reset seeds)


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment`` condition (``domrand.wrappers.ImageAugmenter``)."""

    # Applied in this order (any of wrappers.augment.KINDS). No shift/translate/crop/cutout by default:
    # with them the CNN does not fit its own augmented frames to 2 cm at the CPU-sized budget
    # (docs/transfer.md, "Fair baselines"); add them with --set "augment.kinds=[...]".
    kinds: tuple[str, ...] = ("color_jitter", "random_conv")
    conv_prob: float | None = None  # random_conv: probability per frame (None: the augmenter's default, 0.5)
    conv_mix: tuple[float, float] | None = None  # random_conv: blend weight range (None: default (0.2, 0.6))
    shift_pad: int | None = None  # random_shift/translate: max offset in pixels (None: H/16)
    crop_scale: float | None = None  # random_crop: window side / frame side (None: 0.84)
    cutout_size: tuple[float, float] | None = None  # cutout: side range / frame side (None: (0.1, 0.3))
    gray_prob: float | None = None  # grayscale: probability per frame (None: 0.3)


@dataclass(frozen=True)
class StyleConfig:
    """``StyleRandomizer`` options for the ``stylegan`` condition (None = the bundle's default)."""

    psi: float | None = None  # truncation of the sampled fine styles
    mix: float | None = None  # 0 = frame's own fine styles, 1 = fully sampled
    keep_resolution: int | None = None  # coarse/fine boundary
    noise: str | None = None  # fine noise mode: random | step | const | none


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str = "custom"  # shown in the table and results.json
    tasks: tuple[str, ...] = ("localization",)  # any of: localization, control
    conditions: tuple[str, ...] = CONDITIONS  # any of: none, classic, augment, stylegan, oracle
    seeds: int = 3  # seeds per condition: base_seed .. base_seed + seeds - 1
    base_seed: int = 0  # first seed (model init, sample order, view choice, PPO)
    target_presets: tuple[str, ...] = ("target-a",)  # target domains tested (one table column each)
    image_size: int = 64  # frame side in pixels
    renderer: str = "auto"  # pybullet renderer: auto, tiny or egl
    device: str = "auto"  # torch device for the CNN, the randomizer and PPO
    threads: int = 0  # torch CPU threads (0 = torch's default)
    data_seed: int = 0  # which states (reset seeds) and randomized views make up the frame sets
    cache_dir: str | None = None  # rendered frame cache (None = ~/.cache/domrand/transfer)
    bundle: str | None = None  # stylegan: bundle path (trained on target imagery disjoint from the test set)
    bundle_note: str = ""  # free text recorded with the results: what imagery the bundle was trained on
    stylegan: StyleConfig = field(default_factory=StyleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    control: ControlConfig = field(default_factory=ControlConfig)


def check_names(kind: str, names: Sequence[str], valid: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or ``ConfigError`` naming the unknown ones and the valid list."""
    names = tuple(names)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"unknown {kind}(s) {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")
    if not names:
        raise ConfigError(f"no {kind}s given; valid {kind}s: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{kind}s listed twice: {list(names)}")
    return names


def validate(cfg: BenchmarkConfig) -> BenchmarkConfig:
    """Check a config's values (names, sizes, the stylegan bundle); returns it unchanged."""
    check_names("task", cfg.tasks, TASKS)
    check_names("condition", cfg.conditions, CONDITIONS)
    if cfg.seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {cfg.seeds}")
    if not cfg.target_presets:
        raise ConfigError("target_presets: name at least one target domain (e.g. target-a)")
    if len(set(cfg.target_presets)) != len(cfg.target_presets) or "sim" in cfg.target_presets:
        raise ConfigError(f"target_presets: each preset once, and not 'sim'; got {list(cfg.target_presets)}")
    from domrand.envs.domains import resolve_target

    for preset in cfg.target_presets:
        try:
            resolve_target(preset)
        except ValueError as exc:
            raise ConfigError(f"target_presets: {exc}") from None
    if cfg.renderer not in ("auto", "tiny", "egl"):
        raise ConfigError(f"renderer must be auto, tiny or egl, got {cfg.renderer!r}")
    loc, ctl, imi = cfg.localization, cfg.control, cfg.imitation
    for where, value, low in (
        ("image_size", cfg.image_size, 16),
        ("localization.train_frames", loc.train_frames, 2),
        ("localization.test_frames", loc.test_frames, 1),
        ("localization.views", loc.views, 1),
        ("localization.epochs", loc.epochs, 1),
        ("localization.batch_size", loc.batch_size, 1),
        ("localization.width", loc.width, 1),
        ("localization.probe_frames", loc.probe_frames, 0),
        ("localization.swd_images", loc.swd_images, 0),
        ("imitation.demo_episodes", imi.demo_episodes, 1),
        ("imitation.max_episode_steps", imi.max_episode_steps, 1),
        ("imitation.views", imi.views, 1),
        ("imitation.epochs", imi.epochs, 1),
        ("imitation.batch_size", imi.batch_size, 1),
        ("imitation.width", imi.width, 1),
        ("imitation.eval_episodes", imi.eval_episodes, 1),
        ("control.steps", ctl.steps, 1),
        ("control.n_envs", ctl.n_envs, 1),
        ("control.n_steps", ctl.n_steps, 2),
        ("control.batch_size", ctl.batch_size, 2),
        ("control.n_epochs", ctl.n_epochs, 1),
        ("control.eval_episodes", ctl.eval_episodes, 1),
    ):
        if value < low:
            raise ConfigError(f"{where} must be >= {low}, got {value}")
    if imi.action_noise < 0:
        raise ConfigError(f"imitation.action_noise must be >= 0, got {imi.action_noise}")
    if "imitation" in cfg.tasks:
        if not imi.envs:
            raise ConfigError("imitation.envs: name at least one env id (domrand/Reach-v0, domrand/Push-v0)")
        unknown = [e for e in imi.envs if e not in IMITATION_ENVS]
        if unknown:
            raise ConfigError(f"imitation.envs: no scripted expert for {unknown}; choose from {list(IMITATION_ENVS)}")
    if "control" in cfg.tasks and not ctl.envs:
        raise ConfigError("control.envs: name at least one env id (e.g. domrand/Reach-v0)")
    if "control" in cfg.tasks and cfg.image_size < 36:
        raise ConfigError(f"control: PPO's CnnPolicy (NatureCNN) needs image_size >= 36, got {cfg.image_size}")
    from domrand.wrappers.augment import KINDS

    check_names("augmentation kind", cfg.augment.kinds, KINDS)
    from domrand.transfer_tasks import augment_options
    from domrand.wrappers.augment import ImageAugmenter

    try:
        ImageAugmenter(kinds=cfg.augment.kinds, **augment_options(cfg))
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None
    if "stylegan" in cfg.conditions and not cfg.bundle:
        raise ConfigError(
            "condition 'stylegan' needs a bundle trained on target-domain imagery (disjoint from the test "
            "frames): set 'bundle:' in the config or pass --bundle PATH (make one with 'domrand bundle'); "
            "or leave it out, e.g. --conditions none classic augment oracle"
        )
    return cfg


def load_benchmark_config(path_or_name: str | Path, **overrides: Any) -> BenchmarkConfig:
    """Load a benchmark preset (bundled name or YAML path), apply dotted ``overrides``, validate.

    Overrides (``seeds=2``, ``**{"localization.epochs": 5}``; None values are ignored) are
    type-checked like YAML values; unknown keys are ``ConfigError``.
    """
    cfg = load_config(path_or_name, BenchmarkConfig, kind="benchmark")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        data = to_dict(cfg)
        for key, value in overrides.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {key!r}: {part!r} is not a section of the benchmark config")
                node = node[part]
            if isinstance(value, tuple):
                value = list(value)
            node[leaf] = value
        cfg = from_dict(BenchmarkConfig, data, f"{path_or_name} (with overrides)")
    return validate(cfg)


def config_from_dict(data: dict[str, Any]) -> BenchmarkConfig:
    """Build and validate a config from a plain mapping (unknown keys are errors)."""
    return validate(from_dict(BenchmarkConfig, data, "benchmark config"))


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import stable_baselines3

        info["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        info["stable_baselines3"] = None
    return info


def run_benchmark(
    cfg: BenchmarkConfig,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every task of ``cfg``; write the report into ``out`` (if given); return the results dict."""
    import torch

    from domrand import transfer_report, transfer_tasks

    validate(cfg)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    cache = transfer_tasks.cache_root(cfg)
    bundle = transfer_tasks.resolve_bundle(cfg, cache) if "stylegan" in cfg.conditions else None
    started = time.time()
    results: dict[str, Any] = {
        "name": cfg.name,
        "config": to_dict(cfg),
        "domains": ["sim", *cfg.target_presets],
        "bundle": {
            "path": None if bundle is None else str(bundle),
            "configured": cfg.bundle,
            "note": cfg.bundle_note
            or {UNTRAINED_BUNDLE: "untrained tiny bundle: checks the machinery; stylegan numbers are meaningless",
                BUNDLED: "the bundled default model (docs/model_card.md)"}.get(str(cfg.bundle), ""),
        },
        "machine": machine_info(),
        "env_source_hash": transfer_tasks.env_source_hash(),  # frames depend on the env code version
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "sections": {},
    }
    if "localization" in cfg.tasks:
        results["sections"]["localization"] = transfer_tasks.run_localization(cfg, cache, bundle, progress, log)
    if "imitation" in cfg.tasks:
        from domrand import transfer_imitation

        for env_id in cfg.imitation.envs:
            key = "imitation/" + env_id.split("/")[-1]
            results["sections"][key] = transfer_imitation.run_imitation(cfg, env_id, cache, bundle, progress, log)
    if "control" in cfg.tasks:
        for env_id in cfg.control.envs:
            key = "control/" + env_id.split("/")[-1]
            results["sections"][key] = transfer_tasks.run_control(cfg, env_id, bundle, progress, log)
    results["duration_s"] = round(time.time() - started, 2)
    if out is not None:
        results["files"] = {k: str(v) for k, v in transfer_report.write_report(results, out, cfg).items()}
    return results


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="smoke", help="benchmark preset name or YAML path (configs/benchmark/<name>.yaml)")
    parser.add_argument("--conditions", nargs="+", default=None, metavar="C", help=f"subset of: {' '.join(CONDITIONS)}")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="T", help=f"subset of: {' '.join(TASKS)}")
    parser.add_argument("--seeds", type=cli_args.positive_int, default=None, metavar="N", help="number of seeds (overrides the config)")
    parser.add_argument("--targets", nargs="+", default=None, metavar="P", help="target presets (target-a target-b ... or seed:N)")
    parser.add_argument("--bundle", default=None, help=f"stylegan bundle path, {BUNDLED!r} (the packaged model) or {UNTRAINED_BUNDLE!r} (machinery check)")
    parser.add_argument("--out", default=None, help="output folder (default runs/benchmark/<config name>)")
    parser.add_argument("--cache", default=None, help="frame cache folder (default ~/.cache/domrand/transfer)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=cli_args.nonnegative_int, default=None, help="torch CPU threads (0 = default)")
    parser.add_argument("--set", nargs="+", default=None, metavar="KEY=VALUE", help="override config values (dotted keys, YAML values), e.g. localization.epochs=5")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")


def main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "conditions": None if args.conditions is None else tuple(args.conditions),
        "tasks": None if args.tasks is None else tuple(args.tasks),
        "seeds": args.seeds,
        "target_presets": None if args.targets is None else tuple(args.targets),
        "bundle": args.bundle,
        "cache_dir": args.cache,
        "device": args.device,
        "threads": args.threads,
    }
    overrides.update(parse_overrides(args.set))
    cfg = load_benchmark_config(args.config, **overrides)
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        return 0
    out = Path(args.out) if args.out else Path("runs") / "benchmark" / cfg.name
    results = run_benchmark(cfg, out, progress=not args.no_progress)
    from domrand.transfer_report import format_table

    print(format_table(results))
    files = results.get("files", {})
    print(f"wrote {', '.join(files.values())}" if files else "", flush=True)
    return 0


def dumps(results: dict[str, Any]) -> str:
    """results -> JSON text (what results.json holds)."""
    return json.dumps(results, indent=2, allow_nan=True) + "\n"
