"""The benchmark's configuration: dataclasses (YAML presets in ``configs/benchmark/``), validation, loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from domrand.config import ConfigError, from_dict, load_config, to_dict
from domrand.envs.domains import resolve_target
from domrand.transfer.conditions import condition_names, get_condition
from domrand.transfer.frames import augment_options
from domrand.wrappers.augment import ImageAugmenter, KINDS

CONDITIONS = condition_names()  # the registered conditions (domrand/transfer/conditions/), in table order
DEFAULT_CONDITIONS = tuple(c for c in CONDITIONS if get_condition(c).role != "variant")  # variants only on request
TASKS = ("localization", "imitation", "control")
IMITATION_ENVS = ("domrand/Reach-v0", "domrand/Push-v0")  # envs with a scripted expert and proprioception


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
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS  # any of: none, classic, augment, stylegan, stylegan-student, oracle
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
    check_names("condition", cfg.conditions, condition_names())  # registered now (a plug-in may add one)
    if cfg.seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {cfg.seeds}")
    if not cfg.target_presets:
        raise ConfigError("target_presets: name at least one target domain (e.g. target-a)")
    if len(set(cfg.target_presets)) != len(cfg.target_presets) or "sim" in cfg.target_presets:
        raise ConfigError(f"target_presets: each preset once, and not 'sim'; got {list(cfg.target_presets)}")

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

    check_names("augmentation kind", cfg.augment.kinds, KINDS)

    try:
        ImageAugmenter(kinds=cfg.augment.kinds, **augment_options(cfg))
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None
    needs_bundle = [c for c in cfg.conditions if c.startswith("stylegan")]
    if needs_bundle and not cfg.bundle:
        raise ConfigError(
            f"condition '{needs_bundle[0]}' needs a bundle trained on target-domain imagery (disjoint from the test "
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
