"""Mixed-precision generator training (training.amp: bf16 autocast of the G/D passes). The trainer
enables it on CUDA only; here it is forced on for the CPU, whose autocast also makes bf16 outputs,
so the dtype handling of every pass (mapping EMA, losses, R1, path length) is exercised anywhere."""

from __future__ import annotations

import numpy as np
import torch

from domrand.generator.train.stylegan import Trainer, resolve_config


def test_bf16_autocast_training_steps_run_and_keep_float32_state():
    cfg = resolve_config("tiny")
    data = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    trainer = Trainer(cfg, data, device="cpu", seed=0)
    trainer.amp = True  # what a CUDA device gets by default
    w_avg_before = trainer.G.mapping.w_avg.clone()
    for _ in range(6):  # covers the lazy R1 and path-length steps of the tiny preset
        stats = trainer.train_step()
    assert all(np.isfinite(v) for v in stats.values()), stats
    w_avg = trainer.G.mapping.w_avg
    assert w_avg.dtype == torch.float32 and not torch.equal(w_avg, w_avg_before)
    assert all(p.dtype == torch.float32 for p in trainer.G.parameters())


def test_random_noise_from_a_cpu_generator_lands_on_another_device():
    """Trainers seed CPU generators; noise for a CUDA synthesis must still be drawn from them (a CUDA
    run of train-inverter failed here). The meta device stands in for CUDA on a CPU-only machine."""
    from domrand.config import load_config
    from domrand.generator.train.stylegan_config import GeneratorConfig
    from domrand.generator.nn.networks import Generator

    G = Generator(load_config("tiny", GeneratorConfig).network)
    layer = next(m for m in G.modules() if hasattr(m, "draw_noise"))
    out = layer.draw_noise(2, "random", torch.device("meta"), torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (2, 1, layer.resolution, layer.resolution)
    a = layer.draw_noise(2, "random", torch.device("cpu"), torch.Generator().manual_seed(0))
    b = layer.draw_noise(2, "random", torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_cpu_amp_turns_autocast_on_only_where_the_cpu_computes_bfloat16(monkeypatch):
    """training.cpu_amp enables the autocast on a CPU with native bfloat16 and is ignored on one that
    would emulate it (measured 10x slower); off by default."""
    from domrand.generator.train import stylegan

    data = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    seen = {}
    for native in (True, False):
        monkeypatch.setattr(stylegan, "cpu_has_fast_bfloat16", lambda native=native: native)
        for cpu_amp in (True, False):
            cfg = resolve_config("tiny", overrides={"training.cpu_amp": cpu_amp})
            seen[native, cpu_amp] = Trainer(cfg, data, device="cpu", seed=0).amp
    assert seen == {(True, True): True, (True, False): False, (False, True): False, (False, False): False}
    assert resolve_config("tiny").training.cpu_amp is False
