"""A generator preset (``configs/generator/*.yaml``): the network's shape (``NetworkConfig``, beside the
networks) and the StyleGAN2 trainer's hyper-parameters (``TrainingConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from domrand.generator.nn.networks import NetworkConfig


@dataclass(frozen=True)
class TrainingConfig:
    batch: int = 32  # global batch size
    kimg: float = 1000.0  # length of training in thousands of real images shown
    g_lr: float = 0.0025  # generator Adam learning rate
    d_lr: float = 0.0025  # discriminator Adam learning rate
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas
    r1_gamma: float | None = None  # R1 weight; None = automatic from resolution and batch
    r1_interval: int = 16  # lazy R1: every N discriminator steps
    pl_weight: float = 2.0  # path-length regularization weight (0 = off)
    pl_interval: int = 4  # lazy path length: every N generator steps
    pl_batch_shrink: int = 2  # path-length batch = batch // shrink
    pl_decay: float = 0.01  # decay of the path-length running mean
    style_mixing_prob: float = 0.9  # mixing-regularization probability
    ema_kimg: float = 10.0  # EMA half-life in kimg
    ema_rampup: float | None = 0.05  # EMA ramp-up ratio (None = off)
    xflip: bool = False  # dataset x-flips: only for mirror-symmetric scenes (a fixed robot camera is not)
    ada: bool = True  # adaptive discriminator augmentation
    ada_target: float = 0.6  # target of the sign-of-D(real) heuristic
    ada_interval: int = 4  # adjust p every N minibatches
    ada_kimg: float = 100.0  # kimg for p to go from 0 to 1 at full speed
    snapshot_kimg: float = 50.0  # checkpoint + sample grid every N kimg
    metrics_kimg: float = 50.0  # SWD every N kimg
    keep_snapshots: int = 3  # keep the last K checkpoints (plus the best by SWD)
    swd_images: int = 1024  # images per side when computing SWD during training
    progressive: bool = False  # progressive-growing curriculum
    start_resolution: int = 8  # progressive: first resolution
    fade_kimg: float = 100.0  # progressive: kimg to fade in each new resolution
    stabilize_kimg: float = 100.0  # progressive: kimg at each resolution after fading
    min_images: int = 16  # fewer images than this in --data is an error
    log_steps: int = 50  # write averaged losses, p and img/s to metrics.jsonl every N steps
    amp: bool = True  # CUDA, when network.num_fp16_res == 0: bf16 autocast of the G/D main passes
    cpu_amp: bool = False  # the same on a CPU with native bfloat16 (AMX / AVX512-BF16; ignored elsewhere): 1.5x img/s, opt-in (docs/benchmarks.md)
    channels_last: bool = False  # CUDA only: channels_last memory format for D inputs and weights (on a CPU always: measured faster)
    # Fine-tuning (train-generator --init; issue 16): keep the fine-tuned G's layout aligned with its start's.
    init: str | None = None  # the generator run, checkpoint, bundle or file the weights started from (None: fresh)
    init_hash: str | None = None  # weights_hash of that start's G_ema, checked when the run starts and resumes
    init_from_ema: bool = True  # G starts from the start's G_ema (the generator bundles and inverters use); false: its raw G
    mapping_lr_mult: float | None = None  # Adam lr factor of the mapping network on top of network.mapping_lr_mult; 0 = frozen; None: 0 with init, else 1
    freeze_d: int | None = None  # FreezeD: the first N discriminator blocks (highest resolution, nearest the image) stay frozen; None: 1 with init, else 0
    init_feature_weight: float = 0.0  # weight of the MSE between G's coarse features and the start's (same ws and noise); needs init
    keep_resolution: int = 16  # "coarse" for init_feature_weight: synthesis blocks up to this resolution


@dataclass(frozen=True)
class GeneratorConfig:
    name: str = "custom"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
