"""Unit behaviour of the GAN losses and regularizers."""

from __future__ import annotations

import math

import pytest
import torch

from domrand.generator.nn.networks import NetworkConfig
from domrand.generator.train.losses import (
    PathLengthRegularizer,
    auto_r1_gamma,
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_adam_hparams,
    mixed_ws,
    path_length_lengths,
    r1_penalty,
)
from domrand.generator.nn.networks import Generator

TINY = NetworkConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)


def test_logistic_loss_values_for_known_logits() -> None:
    zero = torch.zeros(4, 1)
    assert float(g_nonsaturating_loss(zero)) == pytest.approx(math.log(2))
    fake, real = d_logistic_loss(zero, zero)
    assert float(fake) == pytest.approx(math.log(2)) and float(real) == pytest.approx(math.log(2))
    # A confident, correct D has a near-zero loss; G's non-saturating loss is large there.
    fake, real = d_logistic_loss(torch.full((3, 1), 20.0), torch.full((3, 1), -20.0))
    assert float(fake + real) < 1e-8
    assert float(g_nonsaturating_loss(torch.full((3, 1), -20.0))) == pytest.approx(20.0, abs=1e-6)
    logits = torch.tensor([[-1.0], [2.0]])
    want = (math.log1p(math.exp(1.0)) + math.log1p(math.exp(-2.0))) / 2
    assert float(g_nonsaturating_loss(logits)) == pytest.approx(want)


def test_r1_is_zero_for_a_constant_d_and_norm_squared_for_a_linear_d() -> None:
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    const = (x * 0).flatten(1).sum(1, keepdim=True) + 3.0
    assert torch.equal(r1_penalty(x, const), torch.zeros(5))
    w = torch.randn(3, 8, 8, requires_grad=True)
    x2 = torch.randn(5, 3, 8, 8, requires_grad=True)
    pen = r1_penalty(x2, (x2 * w).flatten(1).sum(1, keepdim=True))
    assert torch.allclose(pen, w.detach().square().sum().expand(5), rtol=1e-5)
    pen.mean().backward()  # the graph is kept for the D update
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.randn(2, 3, 8, 8), torch.zeros(2, 1))


def test_path_length_penalty_is_finite_and_updates_pl_mean() -> None:
    torch.manual_seed(0)
    G = Generator(TINY)
    z = torch.randn(4, TINY.z_dim)
    ws = G.mapping(z)
    img = G.synthesis(ws, noise_mode="const")
    lengths = path_length_lengths(img, ws, generator=torch.Generator().manual_seed(1))
    assert lengths.shape == (4,) and torch.isfinite(lengths).all() and (lengths > 0).all()
    reg = PathLengthRegularizer(decay=0.01)
    penalty = reg.penalty(lengths)
    assert float(reg.pl_mean) == pytest.approx(0.01 * float(lengths.detach().mean()), rel=1e-5)
    assert torch.isfinite(penalty).all()
    # Same generator state -> same noise -> same lengths.
    again = path_length_lengths(img, ws, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(again.detach(), lengths.detach())
    penalty.mean().backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_mixed_ws_prefix_from_z_suffix_from_z2() -> None:
    torch.manual_seed(0)
    G = Generator(TINY)
    z, z2 = torch.randn(6, TINY.z_dim), torch.randn(6, TINY.z_dim)
    w1, w2 = G.mapping(z), G.mapping(z2)
    assert torch.equal(mixed_ws(G, z, z2, 0.0), w1)
    ws = mixed_ws(G, z, z2, 1.0, generator=torch.Generator().manual_seed(0))
    for i in range(6):
        same1 = (ws[i] == w1[i]).all(dim=1)
        cross = int(same1.float().argmin())  # first layer not from z
        assert 1 <= cross < G.num_ws
        assert same1[:cross].all() and (ws[i, cross:] == w2[i, cross:]).all()
    before = G.mapping.w_avg.clone()
    mixed_ws(G, z, z2, 0.9, update_emas=True)
    assert not torch.equal(before, G.mapping.w_avg)


def test_heuristics() -> None:
    assert auto_r1_gamma(64, 16) == pytest.approx(0.0512)
    lr, betas = lazy_adam_hparams(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17) and betas[0] == 0.0 and betas[1] == pytest.approx(0.99 ** (16 / 17))
    assert lazy_adam_hparams(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
