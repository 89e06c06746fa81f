"""The networks' inference forms (no autograd, CPU: gains folded into weights, tails in place,
channels-last activations) compute the same function as the reference ops they replace."""

import numpy as np
import pytest
import torch

from domrand.bundle import load_bundle
from domrand.generator.nn import ops
from domrand.randomizer import StyleRandomizer


def _nonzero_noise(G: torch.nn.Module) -> None:
    """Give every noise input a weight so that the folded noise path is exercised."""
    for name, _ in G.synthesis.noise_layers:
        block, layer = name.split(".")
        getattr(G.synthesis.blocks[block], layer).noise_strength.fill_(0.3)


@pytest.fixture()
def nets(tiny_bundle):
    b = load_bundle(tiny_bundle, device="cpu")
    with torch.no_grad():
        _nonzero_noise(b.G)
        b.G.mapping.w_avg.copy_(torch.randn(b.G.w_dim, generator=torch.Generator().manual_seed(3)))
    return b.G.eval(), b.E.eval()


def _reference(fn):
    with torch.no_grad(), ops.reference_only():
        return fn()


def _fast(fn):
    with torch.no_grad():
        return fn()


@pytest.mark.parametrize("channels_last", [False, True])
def test_generator_and_inverter_inference_forms_match_the_reference(nets, channels_last):
    G, E = nets
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, G.z_dim, generator=g)
    res = G.img_resolution
    images = torch.rand(5, 3, res, res, generator=g) * 2 - 1
    noise = G.synthesis.sample_noise(5, generator=torch.Generator().manual_seed(1))  # per-sample maps
    want_img = _reference(lambda: G(z, noise=noise))
    want_e = _reference(lambda: E(images))
    if channels_last:
        G.to(memory_format=torch.channels_last)
        E.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    got_img = _fast(lambda: G(z, noise=noise))
    got_e = _fast(lambda: E(images))
    assert want_img.abs().max() > 0.05  # not a degenerate output
    torch.testing.assert_close(got_img, want_img, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_e["ws"], want_e["ws"], rtol=1e-4, atol=1e-5)
    for r, f in want_e["features"].items():
        torch.testing.assert_close(got_e["features"][r], f, rtol=1e-4, atol=1e-5)


def test_the_folded_form_differs_from_a_broken_fold(nets, monkeypatch):
    """The comparison above can fail: dropping the gain in the folded synthesis tail is caught."""
    G, _ = nets
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(4))
    want = _reference(lambda: G(z, noise_mode="const"))
    real = ops.modulated_conv2d_bias_act
    monkeypatch.setattr(ops, "modulated_conv2d_bias_act", lambda *a, **k: real(*a, **{**k, "gain": 1.0}))
    got = _fast(lambda: G(z, noise_mode="const"))
    assert (got - want).abs().max() > 1e-3


def test_randomizer_frames_equal_the_reference_path_in_float32(tiny_bundle):
    frames = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    fast = StyleRandomizer.from_bundle(tiny_bundle, device="cpu", dtype="float32", seed=5)
    ref = StyleRandomizer.from_bundle(tiny_bundle, device="cpu", dtype="float32", seed=5)
    out = fast.randomize(frames, env_ids=list(range(6)))
    with ops.reference_only():
        want = ref.randomize(frames, env_ids=list(range(6)))
    assert fast.G.synthesis.blocks["b4"].conv1.weight.is_contiguous(memory_format=torch.channels_last)  # CPU: NHWC
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1  # uint8 rounding at most
