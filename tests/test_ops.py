"""Reference ops: gradients (float64 gradcheck), an independent upfirdn2d formulation, fused == non-fused."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from domrand.generator.nn import ops


def _upfirdn_scipy(x: np.ndarray, f2: np.ndarray, up: int, down: int, pad: tuple, gain: float) -> np.ndarray:
    """Independent formulation: zero-insert, pad/crop, scipy full 2-D convolution ('valid'), stride."""
    px0, px1, py0, py1 = pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0) : u.shape[2] - max(-py1, 0), max(-px0, 0) : u.shape[3] - max(-px1, 0)]
    out = np.stack([np.stack([convolve2d(u[i, j], f2, mode="valid") for j in range(c)]) for i in range(n)])
    return out[:, :, ::down, ::down] * gain


@pytest.mark.parametrize(
    "up,down,pad,taps",
    [(1, 1, (1, 2, 2, 1), [1, 3, 3, 1]), (2, 1, (2, 1, 2, 1), [1, 3, 3, 1]), (1, 2, (1, 1, 1, 1), [1, 3, 3, 1]),
     (2, 2, (0, 1, 3, -1), [1, 2, 1]), (4, 1, (3, 2, 1, 4), [1, 3, 3, 1]), (1, 1, (-1, 0, 0, -2), [1, 4, 6, 4, 1])],
)
@pytest.mark.parametrize("separable", [True, False])
def test_upfirdn2d_matches_independent_formulation(up, down, pad, taps, separable):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    f = ops.setup_filter(taps, separable=separable).double()
    f2 = np.outer(np.array(taps, float), np.array(taps, float))
    f2 /= f2.sum()
    got = ops.upfirdn2d(torch.from_numpy(x), f, up=up, down=down, padding=pad, gain=1.7).numpy()
    want = _upfirdn_scipy(x, f2, up, down, pad, 1.7)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_upfirdn2d_asymmetric_filter_is_a_true_convolution():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1  # an impulse reproduces the (unflipped) filter
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    y = ops.upfirdn2d(x, f, padding=[1, 0, 1, 0])
    assert torch.equal(y[0, 0, 2:4, 2:4], f)
    y_corr = ops.upfirdn2d(x, f, padding=[1, 0, 1, 0], flip_filter=True)
    assert torch.equal(y_corr[0, 0, 2:4, 2:4], f.flip([0, 1]))


def test_upsample_downsample_sizes_and_dc_gain():
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 0.5)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # away from the zero-padded border a constant image stays constant
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.tensor(0.5))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(0.5))


def test_setup_filter_normalizes_and_rejects_bad_kernels():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4,) and math.isclose(float(f.sum()), 1.0)
    f2 = ops.setup_filter([1, 3, 3, 1], separable=False)
    assert f2.shape == (4, 4) and math.isclose(float(f2.sum()), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="filter"):
        ops.setup_filter([])


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_upfirdn2d_gradcheck(up, down):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=[1, 2, 2, 1], gain=up * up)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", sorted(ops.ACTIVATIONS))
def test_bias_act_gradcheck_and_values(act):
    torch.manual_seed(1)
    # keep values away from the relu kink so finite differences are valid
    x = (torch.rand(3, 4, 2, dtype=torch.float64) + 0.1) * torch.tensor([1.0, -1.0]).double().repeat(3, 4, 1)
    x.requires_grad_(True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True) * 0.01
    b = b.detach().requires_grad_(True)
    fn = lambda t, bb: ops.bias_act(t, bb, dim=1, act=act)
    assert torch.autograd.gradcheck(fn, (x, b))
    y = ops.bias_act(x, b, dim=1, act=act)
    assert y.shape == x.shape


def test_bias_act_semantics():
    x = torch.tensor([[-2.0, 3.0]])
    b = torch.tensor([1.0, -1.0])
    y = ops.bias_act(x.t(), b, dim=0, act="lrelu")  # x.t() is [2, 1]: bias along dim 0
    assert torch.allclose(y.flatten(), torch.tensor([-1.0 * 0.2 * math.sqrt(2), 2.0 * math.sqrt(2)]))
    y = ops.bias_act(torch.tensor([100.0, -100.0]), act="linear", gain=2.0, clamp=5.0)
    assert torch.equal(y, torch.tensor([5.0, -5.0]))
    assert torch.equal(ops.bias_act(torch.tensor([-1.0, 2.0]), act="relu", gain=1.0), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="unknown activation 'gelu2'.*accepted"):
        ops.bias_act(x, act="gelu2")
    with pytest.raises(ValueError, match="b: expected shape"):
        ops.bias_act(x, torch.zeros(3), dim=1)


@pytest.mark.parametrize("up,down,k", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 2, 1), (1, 1, 1), (2, 1, 1)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_fused_equals_nonfused(up, down, k, demodulate):
    torch.manual_seed(2)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 4, k, k, dtype=torch.float64)
    s = torch.randn(3, 4, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    a = ops.modulated_conv2d(x, w, s, up=up, down=down, resample_filter=f, demodulate=demodulate, fused=True)
    b = ops.modulated_conv2d(x, w, s, up=up, down=down, resample_filter=f, demodulate=demodulate, fused=False)
    assert a.shape == (3, 5, 8 * up // down, 8 * up // down)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_modulated_conv2d_gradcheck(fused, up, down):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    fn = lambda a, b, c: ops.modulated_conv2d(a, b, c, up=up, down=down, resample_filter=f, fused=fused)
    assert torch.autograd.gradcheck(fn, (x, w, s))


def test_upsampling_conv_matches_upsample_then_conv_in_the_interior():
    """The transposed-conv fast path equals FIR-upsample-then-3x3-conv, except at the 1-pixel border
    where the zero padding falls at a different stage of the two formulations."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    got = ops.conv2d_resample(x, w, f, up=2)
    want = F.conv2d(ops.upsample2d(x, f), w, padding=1)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-10, atol=1e-10)


def test_demodulation_keeps_unit_output_std_whatever_the_style_scale():
    torch.manual_seed(5)
    x = torch.randn(8, 64, 16, 16)
    w = torch.randn(32, 64, 3, 3)
    stds = {}
    for scale in (0.01, 1.0, 100.0):
        s = torch.randn(8, 64).abs() * scale + 1e-3 * scale
        y = ops.modulated_conv2d(x, w, s, demodulate=True)
        per_feature = y.std(dim=[2, 3])  # [N, O]
        stds[scale] = float(per_feature.mean())
        assert 0.8 < stds[scale] < 1.2, f"style scale {scale}: output std {stds[scale]:.3f}"
        y_raw = ops.modulated_conv2d(x, w, s, demodulate=False)
        assert abs(float(y_raw.std(dim=[2, 3]).mean()) - 1) > 0.5  # without demodulation it drifts
    assert max(stds.values()) - min(stds.values()) < 0.1


def test_modulated_conv2d_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="styles: expected shape"):
        ops.modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(4, 3, 3, 3), torch.randn(2, 5))


def test_bias_act_accepts_a_negative_dim():
    x = torch.zeros(2, 3)
    b = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(ops.bias_act(x, b, dim=-1), ops.bias_act(x, b, dim=1))


# ---- inference forms (no autograd, CPU): the same functions in fewer passes -----------------


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("noise_rows", [0, 1, 3, "expanded"])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_modulated_conv2d_bias_act_equals_the_reference_composition(up, noise_rows, clamp):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64) + 1
    b = torch.randn(4, generator=g, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    r = 6 * up
    if noise_rows == 0:
        noise = None
    elif noise_rows == "expanded":
        noise = torch.randn(1, 1, r, r, generator=g, dtype=torch.float64).expand(3, 1, r, r)
    else:
        noise = torch.randn(noise_rows, 1, r, r, generator=g, dtype=torch.float64)
    strength = torch.tensor(0.3, dtype=torch.float64)
    gain = math.sqrt(2) * 0.7
    want = ops.noise_bias_act(
        ops.modulated_conv2d(x, weight, styles, up=up, resample_filter=f, fused=False),
        noise, strength, b, act="lrelu", gain=gain, clamp=clamp,
    )
    with torch.no_grad():
        got = ops.modulated_conv2d_bias_act(x, weight, styles, noise, strength, b, up=up, resample_filter=f, gain=gain, clamp=clamp)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if clamp is not None:
        assert float(want.abs().max()) == clamp  # the clamp was exercised


def test_modulated_conv2d_bias_act_keeps_channels_last_and_refuses_a_negative_gain():
    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = ops.modulated_conv2d_bias_act(x, torch.randn(3, 4, 3, 3), torch.ones(2, 4), None, None, torch.zeros(3))
        assert y.is_contiguous(memory_format=torch.channels_last)
        with pytest.raises(ValueError, match="gain must be > 0"):
            ops.modulated_conv2d_bias_act(x, torch.randn(3, 4, 3, 3), torch.ones(2, 4), None, None, None, gain=-1.0)


@pytest.mark.parametrize("up,down,k", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 2, 1)])
@pytest.mark.parametrize("act", ["linear", "lrelu", "relu"])
def test_conv2d_resample_bias_and_act_equal_bias_act_after_it(up, down, k, act):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    want = ops.bias_act(ops.conv2d_resample(x, w, f, up=up, down=down), b, act=act, gain=1.0)
    with torch.no_grad():
        got = ops.conv2d_resample(x, w, f, up=up, down=down, bias=b, act=act)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_inference_forms_only_without_autograd_and_outside_reference_only():
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        assert ops.inference_shortcuts(x)
        with ops.reference_only():
            assert not ops.inference_shortcuts(x)
    assert not ops.inference_shortcuts(x)  # grad mode: the reference forms, which autograd can differentiate
    with pytest.raises(ValueError, match="inference form"):
        ops.conv2d_resample(x, torch.randn(2, 2, 3, 3), act="lrelu")
    with torch.no_grad(), pytest.raises(ValueError, match="no in-place form; accepted: linear, lrelu, relu"):
        ops.act_clamp_(x.clone(), "tanh")
