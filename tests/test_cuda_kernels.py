"""The CUDA kernels against the reference ops, forward, backward and double backward.

Two layers of tests:

* CPU emulation (runs wherever g++ is installed): ``kernels.cu`` is compiled as plain C++ with
  ``-DDOMRAND_CPU_EMULATION`` (one thread, one block: the same grid-stride loop bodies) and called
  through ctypes by a runner that replaces ``PyCudaRunner``. This checks the kernel arithmetic and
  indexing, the launch planners (argument packing, padding, strides, dtypes) and the autograd
  wrappers (including double backward) without a GPU. It cannot check GPU-only behaviour: real
  parallel execution, PyCUDA loading/launching, contexts and streams.
* GPU (``@pytest.mark.gpu``): the same comparisons through PyCUDA on CUDA tensors, the stream
  ordering test and the real compile cache. Skipped, with the reason, where CUDA or PyCUDA is
  unavailable.
"""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from domrand.cuda import autograd as cuda_autograd
from domrand.cuda import dispatch, launch
from domrand.generator.nn import ops

KERNELS_CU = Path(dispatch.__file__).with_name("kernels.cu")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=1e-2, atol=1e-2)}


# --------------------------------------------------------------------------------------------
# CPU emulation runner

_CTYPES = {"P": ctypes.c_void_p, "q": ctypes.c_int64, "i": ctypes.c_int32, "f": ctypes.c_float}


class EmulatedRunner:
    """Runs the kernels of kernels.cu compiled for the CPU (see the module docstring)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        self.calls: list[str] = []

    def run(self, kernel, work_items, args):
        sig = launch.SIGNATURES[kernel.rsplit("_", 1)[0]]
        assert len(sig) == len(args), (kernel, sig, args)
        fn = getattr(self.lib, kernel)
        fn.argtypes = [_CTYPES[c] for c in sig]
        fn.restype = None
        fn(*[(a or None) if c == "P" else a for c, a in zip(sig, args)])
        self.calls.append(kernel)


def _build_emulation(source: Path, out: Path) -> EmulatedRunner:
    """Compile ``source`` (a kernels.cu) as plain C++ and load it (skips without a usable g++)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the CPU emulation of kernels.cu")
    cmd = [cxx, "-O1", "-shared", "-fPIC", "-x", "c++", "-DDOMRAND_CPU_EMULATION", str(source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if "_Float16" in proc.stderr:
            pytest.skip(f"{cxx} lacks _Float16, needed by the emulation build")
        pytest.fail(f"emulation build failed:\n{proc.stderr}")
    return EmulatedRunner(ctypes.CDLL(str(out)))


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> EmulatedRunner:
    return _build_emulation(KERNELS_CU, tmp_path_factory.mktemp("emu") / "kernels_emu.so")


@pytest.fixture(scope="module")
def wrong_emu(tmp_path_factory) -> EmulatedRunner:
    """kernels.cu with a deliberate bug in the bias_act forward kernel (output off by 1% + 0.01)."""
    good = "dr_store(&y[i], dr_act_out(act, v, alpha, gain, clamp));"
    source = KERNELS_CU.read_text(encoding="utf-8")
    assert source.count(good) >= 1, "the line this test breaks is gone from kernels.cu; update the test"
    folder = tmp_path_factory.mktemp("wrong_emu")
    broken = folder / "kernels_wrong.cu"
    broken.write_text(source.replace(good, "dr_store(&y[i], dr_act_out(act, v, alpha, gain, clamp) * 1.01f + 0.01f);", 1))
    return _build_emulation(broken, folder / "kernels_wrong.so")


def _close(a, b, dtype, what):
    torch.testing.assert_close(a.float(), b.float(), **TOL[dtype], msg=lambda m: f"{what}: {m}")


# --------------------------------------------------------------------------------------------
# Source-level checks (no compiler needed)


def test_signatures_match_kernel_source():
    """launch.SIGNATURES agrees with the exported kernels' parameter lists in kernels.cu."""
    src = KERNELS_CU.read_text()
    block = src[src.index("#define DR_EXPORT_ALL"):]
    found = {}
    for name, params in re.findall(r'__global__ void (\w+)_##SUFFIX\(([^)]*)\)', block.replace("\\\n", " ")):
        codes = ""
        for p in params.split(","):
            p = " ".join(p.split())
            codes += "P" if "*" in p else {"int64_t": "q", "int": "i", "float": "f"}[p.rsplit(" ", 1)[0]]
        found[name] = codes
    assert found == launch.SIGNATURES


def test_activation_codes_match_kernel_source():
    src = KERNELS_CU.read_text()
    codes = {m[0].lower(): int(m[1]) for m in re.findall(r"#define DR_ACT_(\w+) (\d+)", src)}
    assert codes == launch.ACT_CODES
    assert set(launch.ACT_CODES) == set(ops.ACTIVATIONS)


@pytest.mark.parametrize("up,down,pad,taps", [
    ((1, 1), (1, 1), (0, 0, 0, 0), (4, 4)),
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4)),
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4)),
    ((2, 1), (1, 2), (3, -1, 0, 2), (3, 5)),
    ((3, 2), (2, 3), (-1, 4, 2, -2), (5, 2)),
])
def test_upfirdn2d_adjoint_params_are_the_gradient(up, down, pad, taps):
    """The gradient formula (flip, swap up/down, adjusted padding), checked on the reference."""
    torch.manual_seed(0)
    fw, fh = taps
    f = torch.randn(fh, fw, dtype=torch.float64)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=1.5)
    dy = torch.randn_like(y)
    (want,) = torch.autograd.grad(y, x, dy)
    up_t, down_t, pad_t = launch.upfirdn2d_adjoint_params(tuple(x.shape[2:]), tuple(y.shape[2:]), taps, up, down, pad)
    got = ops.upfirdn2d(dy, f, up=up_t, down=down_t, padding=pad_t, flip_filter=True, gain=1.5)
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------------------------
# Emulated kernels vs reference

ACTS = list(launch.ACT_CODES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_emulated(emu, act, dtype):
    torch.manual_seed(1)
    x = (torch.randn(3, 5, 4, 3) * 3).to(dtype).requires_grad_()
    b = torch.randn(5).to(dtype).requires_grad_()
    clamp = 1.5 if act in ("lrelu", "linear", "swish") else None
    y = cuda_autograd.bias_act(x, b, act=act, clamp=clamp, runner=emu)
    xr, br = x.detach().float().requires_grad_(), b.detach().float().requires_grad_()
    yr = ops.bias_act(xr, br, act=act, clamp=clamp)
    _close(y, yr, dtype, f"{act} forward")
    dy = torch.randn_like(yr)
    gx, gb = torch.autograd.grad(y, [x, b], dy.to(dtype))
    rx, rb = torch.autograd.grad(yr, [xr, br], dy)
    _close(gx, rx, dtype, f"{act} dx")
    _close(gb, rb, dtype, f"{act} db")
    assert gx.dtype == dtype and gb.dtype == dtype


@pytest.mark.parametrize("dim,shape", [(0, [6, 4]), (1, [2, 6]), (2, [2, 3, 6, 2]), (3, [2, 3, 2, 6]), (-1, [3, 6])])
def test_bias_act_emulated_any_dim_no_bias_alpha_gain(emu, dim, shape):
    torch.manual_seed(2)
    x = torch.randn(shape)
    b = torch.randn(x.shape[dim])
    y = cuda_autograd.bias_act(x, b, dim=dim, act="lrelu", alpha=0.1, gain=0.7, runner=emu)
    # (the reference itself takes non-negative dims only)
    torch.testing.assert_close(y, ops.bias_act(x, b, dim=dim % x.ndim, act="lrelu", alpha=0.1, gain=0.7))
    y = cuda_autograd.bias_act(x, None, act="relu", clamp=0.5, runner=emu)
    torch.testing.assert_close(y, ops.bias_act(x, None, act="relu", clamp=0.5))


def test_bias_act_emulated_clamp_edges_and_noncontiguous(emu):
    x = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]]).t().contiguous().t().requires_grad_()  # 1x5, non-contiguous view
    x2 = torch.randn(4, 6).t()  # non-contiguous
    y = cuda_autograd.bias_act(x, None, act="linear", gain=1.0, clamp=1.0, runner=emu)
    (g,) = torch.autograd.grad(y.sum(), x)
    xr = x.detach().clone().requires_grad_()
    (gr,) = torch.autograd.grad(ops.bias_act(xr, None, act="linear", gain=1.0, clamp=1.0).sum(), xr)
    torch.testing.assert_close(g, gr)  # inclusive at +-clamp, as torch.clamp
    torch.testing.assert_close(cuda_autograd.bias_act(x2, torch.ones(6), dim=0, act="tanh", runner=emu),
                               ops.bias_act(x2, torch.ones(6), dim=0, act="tanh"))


@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
def test_bias_act_emulated_double_backward(emu, act):
    """R1-style: grad with create_graph, then backward through it (the reference fall-back)."""
    torch.manual_seed(3)

    def second_order(fn):
        x = torch.linspace(-3, 3, 72).reshape(2, 4, 3, 3).requires_grad_()
        b = torch.randn(4, generator=torch.Generator().manual_seed(3)).requires_grad_()
        y = fn(x, b)
        (gx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
        penalty = gx.square().sum()
        return torch.autograd.grad(penalty, [x, b])

    got = second_order(lambda x, b: cuda_autograd.bias_act(x, b, act=act, clamp=2.0, runner=emu))
    want = second_order(lambda x, b: ops.bias_act(x, b, act=act, clamp=2.0))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


FILTERS = {
    "none": None,
    "1d4": ops.setup_filter([1, 3, 3, 1]),
    "1d3": ops.setup_filter([1, 2, 1]),
    "2d3x4": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 66 - 0.05,  # fh != fw, asymmetric
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("fname", list(FILTERS))
@pytest.mark.parametrize("up,down,pad", [
    (1, 1, 0),
    (2, 1, [2, 1, 2, 1]),
    (1, 2, [1, 1, 1, 1]),
    (2, 2, [1, 2, 0, 3]),
    ((2, 1), (1, 2), [3, -1, -1, 2]),
    (4, 1, [1, 1, 2, 2]),
])
def test_upfirdn2d_emulated(emu, fname, up, down, pad, dtype):
    torch.manual_seed(4)
    f = FILTERS[fname]
    x = torch.randn(2, 3, 5, 7).to(dtype).requires_grad_()
    for flip in (False, True):
        y = cuda_autograd.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=2.0, runner=emu)
        xr = x.detach().float().requires_grad_()
        yr = ops.upfirdn2d(xr, f, up=up, down=down, padding=pad, flip_filter=flip, gain=2.0)
        assert y.shape == yr.shape and y.dtype == dtype
        _close(y, yr, dtype, f"forward flip={flip}")
        dy = torch.randn_like(yr)
        (gx,) = torch.autograd.grad(y, x, dy.to(dtype))
        (rx,) = torch.autograd.grad(yr, xr, dy)
        _close(gx, rx, dtype, f"backward flip={flip}")


def test_upfirdn2d_emulated_wrappers_and_double_backward(emu):
    torch.manual_seed(5)
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    # upsample2d/downsample2d's padding conventions through the kernel
    fw, _ = ops.filter_taps(f)
    p_up = [(fw + 1) // 2, (fw - 2) // 2, (fw + 1) // 2, (fw - 2) // 2]
    torch.testing.assert_close(cuda_autograd.upfirdn2d(x, f, up=2, padding=p_up, gain=4, runner=emu),
                               ops.upsample2d(x, f))
    p_dn = [(fw - 1) // 2, (fw - 2) // 2, (fw - 1) // 2, (fw - 2) // 2]
    torch.testing.assert_close(cuda_autograd.upfirdn2d(x, f, down=2, padding=p_dn, runner=emu),
                               ops.downsample2d(x, f))

    def second_order(fn):
        y = fn(x)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), x)[0]

    got = second_order(lambda t: cuda_autograd.upfirdn2d(t, f, up=2, down=1, padding=[2, 1, 2, 1], runner=emu))
    want = second_order(lambda t: ops.upfirdn2d(t, f, up=2, down=1, padding=[2, 1, 2, 1]))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("noise_batch", [0, 1, 3])  # 0: no noise
@pytest.mark.parametrize("act", ["lrelu", "linear"])
def test_noise_bias_act_emulated(emu, noise_batch, act, dtype):
    torch.manual_seed(6)
    x = torch.randn(3, 4, 5, 6).to(dtype).requires_grad_()
    b = torch.randn(4).to(dtype).requires_grad_()
    noise = torch.randn(noise_batch, 1, 5, 6).to(dtype).requires_grad_() if noise_batch else None
    strength = torch.tensor(0.7, requires_grad=True)
    kw = dict(act=act, gain=1.3, clamp=2.5)
    y = cuda_autograd.noise_bias_act(x, noise, strength, b, runner=emu, **kw)
    leaves = [x, b, strength] + ([noise] if noise is not None else [])
    ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
    xr, br, sr = ref_leaves[:3]
    nr = ref_leaves[3] if noise is not None else None
    yr = noise_bias_act_reference(xr, nr, sr, br, **kw)
    _close(y, yr, dtype, "forward")
    dy = torch.randn_like(yr)
    got = torch.autograd.grad(y, leaves, dy.to(dtype), allow_unused=True)
    want = torch.autograd.grad(yr, ref_leaves, dy, allow_unused=True)
    for name, g, w, leaf in zip(["x", "b", "strength", "noise"], got, want, leaves):
        if w is None:
            assert g is None or not g.abs().any(), name
            continue
        assert g.dtype == leaf.dtype and g.shape == leaf.shape, name
        tol = TOL[dtype] if name in ("x", "b") else dict(rtol=2e-2, atol=5e-2)
        torch.testing.assert_close(g.float(), w.float(), **tol, msg=lambda m: f"d{name}: {m}")


def test_noise_bias_act_emulated_double_backward_and_float_strength(emu):
    torch.manual_seed(7)
    noise = torch.randn(1, 1, 4, 4)

    def second_order(fn):
        x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
        strength = torch.tensor(0.5, requires_grad=True)
        y = fn(x, strength)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), [x, strength])

    got = second_order(lambda x, s: cuda_autograd.noise_bias_act(x, noise, s, None, act="swish", runner=emu))
    want = second_order(lambda x, s: noise_bias_act_reference(x, noise, s, None, act="swish"))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(cuda_autograd.noise_bias_act(x, noise, 0.25, act="lrelu", runner=emu),
                               noise_bias_act_reference(x, noise, 0.25, act="lrelu"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(1, 3, 3, 3), (4, 8, 3, 3), (5, 2, 1, 1)])
def test_modulation_coefficients_emulated(emu, shape, dtype):
    torch.manual_seed(8)
    o, i, kh, kw = shape
    w = torch.randn(o, i, kh, kw).to(dtype).requires_grad_()
    s = torch.randn(3, i).to(dtype).requires_grad_()
    d = cuda_autograd.modulation_coefficients(w, s, runner=emu)
    wr, sr = w.detach().float().requires_grad_(), s.detach().float().requires_grad_()
    dr = ops.modulation_coefficients(wr, sr)
    _close(d, dr, dtype, "forward")
    dd = torch.rand_like(dr)
    gw, gs = torch.autograd.grad(d, [w, s], dd.to(dtype))
    rw, rs = torch.autograd.grad(dr, [wr, sr], dd)
    _close(gw, rw, dtype, "dweight")
    _close(gs, rs, dtype, "dstyles")
    assert cuda_autograd.modulation_coefficients(w, s, demodulate=False, runner=emu) is None


def test_modulation_coefficients_emulated_double_backward(emu):
    """Path-length style: gradient w.r.t. styles with create_graph, then backward to the weight."""
    torch.manual_seed(9)

    def second_order(fn):
        w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
        s = torch.randn(2, 3, generator=torch.Generator().manual_seed(2)).requires_grad_()
        (gs,) = torch.autograd.grad(fn(w, s).square().sum(), s, create_graph=True)
        return torch.autograd.grad(gs.square().sum(), [w, s])

    got = second_order(lambda w, s: cuda_autograd.modulation_coefficients(w, s, runner=emu))
    want = second_order(lambda w, s: ops.modulation_coefficients(w, s))
    for g, wt in zip(got, want):
        torch.testing.assert_close(g, wt)


def test_emulated_modulated_conv2d_pipeline(emu):
    """A synthesis-layer step assembled from emulated kernels matches the reference ops."""
    torch.manual_seed(10)
    x = torch.randn(2, 4, 8, 8)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.randn(2, 4)
    noise = torch.randn(2, 1, 8, 8)
    strength = torch.tensor(0.3)
    b = torch.randn(5)
    d = cuda_autograd.modulation_coefficients(weight, styles, runner=emu)
    y = ops.conv2d_resample(x * styles[:, :, None, None], weight) * d[:, :, None, None]
    out = cuda_autograd.noise_bias_act(y, noise, strength, b, act="lrelu", gain=math.sqrt(2), clamp=256, runner=emu)
    ref = ops.modulated_conv2d(x, weight, styles, noise=noise * strength, fused=False)
    ref = ops.bias_act(ref, b, act="lrelu", gain=math.sqrt(2), clamp=256)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Whole networks through the real dispatch path, with the ops.py integration lines applied


def integrate_dispatch(monkeypatch):
    """Apply the integration proposed for ops.py (the same lines) by wrapping the reference ops."""
    ref_bias_act, ref_upfirdn2d, ref_modcoef = ops.bias_act, ops.upfirdn2d, ops.modulation_coefficients

    def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
        impl = dispatch.maybe_cuda("bias_act", x, b)
        if impl is not None:
            return impl(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        return ref_bias_act(x, b, dim, act, alpha, gain, clamp)

    def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
        impl = dispatch.maybe_cuda("upfirdn2d", x, f)
        if impl is not None:
            return impl(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
        return ref_upfirdn2d(x, f, up, down, padding, flip_filter, gain)

    def modulation_coefficients(weight, styles, demodulate=True, eps=1e-8):
        if not demodulate:
            return None
        impl = dispatch.maybe_cuda("modulation_coefficients", weight, styles)
        if impl is not None:
            return impl(weight, styles, demodulate, eps)
        return ref_modcoef(weight, styles, demodulate, eps)

    monkeypatch.setattr(ops, "bias_act", bias_act)
    monkeypatch.setattr(ops, "upfirdn2d", upfirdn2d)
    monkeypatch.setattr(ops, "modulation_coefficients", modulation_coefficients)


def test_emulated_networks_match_reference_with_r1_and_path_length(emu, monkeypatch):
    """G forward/backward, path-length-style and R1-style double backward: kernels (emulated on CPU
    through the real dispatch path) vs DOMRAND_OPS=torch."""
    from domrand.generator.nn.networks import NetworkConfig
    from domrand.generator.nn.networks import Discriminator, Generator

    integrate_dispatch(monkeypatch)
    monkeypatch.setattr(dispatch, "EXTRA_KERNEL_DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(dispatch, "runner_for", lambda device: emu)
    cfg = NetworkConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    torch.manual_seed(15)
    G, D = Generator(cfg), Discriminator(cfg)
    with torch.no_grad():  # non-zero noise strengths so noise paths matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    z = torch.randn(2, cfg.z_dim)
    real = torch.randn(2, 3, 16, 16)

    def run():
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        ws = G.mapping(z)
        ws = ws.detach().requires_grad_()
        img = G.synthesis(ws, noise_mode="const")
        (g_ws,) = torch.autograd.grad((img * torch.linspace(-1, 1, img.numel()).reshape(img.shape)).sum(), ws,
                                      create_graph=True)
        (g_ws.square().sum() + img.square().mean()).backward()  # path-length style
        x = real.clone().requires_grad_()
        (g_x,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        g_x.square().sum().backward()  # R1 style
        grads = {n: p.grad.clone() for n, p in list(G.named_parameters()) + list(D.named_parameters())
                 if p.grad is not None}
        return img.detach(), ws.grad.clone(), grads

    monkeypatch.setenv("DOMRAND_OPS", "auto")
    emu.calls.clear()
    img_k, dws_k, grads_k = run()
    used = set(c.rsplit("_", 1)[0] for c in emu.calls)
    assert {"bias_act_fwd", "bias_act_bwd", "upfirdn2d", "weight_sq", "demod_coefs"} <= used, used
    monkeypatch.setenv("DOMRAND_OPS", "torch")
    emu.calls.clear()
    img_r, dws_r, grads_r = run()
    assert emu.calls == []
    torch.testing.assert_close(img_k, img_r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dws_k, dws_r, rtol=1e-3, atol=1e-5)
    assert grads_k.keys() == grads_r.keys() and len(grads_k) > 10
    for name in grads_r:
        torch.testing.assert_close(grads_k[name], grads_r[name], rtol=1e-3, atol=1e-5, msg=lambda m: f"{name}: {m}")


def noise_bias_act_reference(*args, **kwargs):
    """``ops.noise_bias_act`` through its PyTorch reference (never a kernel)."""
    with ops.reference_only():
        return ops.noise_bias_act(*args, **kwargs)


def previous_synthesis_layer_forward(self, x, w, noise, fused=None, gain=1.0):
    """SynthesisLayer.forward before the fused noise + bias + activation op: noise added inside the
    modulated convolution, then bias_act."""
    from domrand.utils import assert_shape

    styles = self.affine(w)
    if noise is not None:
        assert_shape("noise", noise, [None, 1, self.resolution, self.resolution])
        noise = noise * self.noise_strength
    x = ops.modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, resample_filter=self.resample_filter, fused=fused)
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    return ops.bias_act(x, self.bias, act="lrelu", gain=math.sqrt(2) * gain, clamp=clamp)


def test_synthesis_layers_use_noise_bias_act_and_its_kernel(emu, monkeypatch):
    """The synthesis layer (ops.noise_bias_act) equals the previous formula exactly on the reference
    path, and through dispatch runs the noise kernels with the same result."""
    from domrand.generator.nn.networks import NetworkConfig
    from domrand.generator.nn import networks

    cfg = NetworkConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    torch.manual_seed(16)
    G = networks.Generator(cfg)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    ws = G.mapping(torch.randn(2, cfg.z_dim)).detach()

    def run():
        G.zero_grad(set_to_none=True)
        img = G.synthesis(ws, noise_mode="const")
        img.square().sum().backward()
        return img.detach(), {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    with monkeypatch.context() as m:
        m.setattr(networks.SynthesisLayer, "forward", previous_synthesis_layer_forward)
        want_img, want_grads = run()
    for path in ("reference", "cpu folded", "kernels"):
        if path == "kernels":  # emulated CUDA: the layers take the kernels' path, not the CPU folding
            integrate_dispatch(monkeypatch)
            monkeypatch.setattr(dispatch, "EXTRA_KERNEL_DEVICE_TYPES", ("cpu",))
            monkeypatch.setattr(dispatch, "runner_for", lambda device: emu)
            monkeypatch.setattr(ops, "FOLDING_DEVICE_TYPES", ())
            emu.calls.clear()
        if path == "reference":  # the same arithmetic in the same order: bit for bit
            with ops.reference_only():
                img, grads = run()
            assert torch.equal(img, want_img) and all(torch.equal(grads[n], want_grads[n]) for n in want_grads)
        else:
            img, grads = run()
        torch.testing.assert_close(img, want_img, rtol=1e-4, atol=1e-5)
        for name in want_grads:
            torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-3, atol=1e-5)
    assert {"noise_bias_act_fwd_f32", "noise_bias_act_bwd_f32"} <= set(emu.calls)


# --------------------------------------------------------------------------------------------
# First-use self-check (selfcheck.check_op through dispatch)


def _with_runner(op, runner):
    impl = cuda_autograd.IMPLEMENTATIONS[op]
    return lambda *args, **kwargs: impl(*args, runner=runner, **kwargs)


def _reference(op):
    return noise_bias_act_reference if op == "noise_bias_act" else getattr(ops, op)


@pytest.mark.parametrize("op", dispatch.OPS)
def test_selfcheck_passes_the_emulated_kernels(emu, op):
    from domrand.cuda import selfcheck

    result = selfcheck.check_op(op, _with_runner(op, emu), _reference(op), torch.device("cpu"), dispatch.reference_only)
    assert result.ok, result.describe()
    assert "forward" in result.errors and any(k.startswith("grad ") for k in result.errors)


def test_selfcheck_catches_the_wrong_kernel(wrong_emu):
    from domrand.cuda import selfcheck

    result = selfcheck.check_op("bias_act", _with_runner("bias_act", wrong_emu), ops.bias_act, torch.device("cpu"),
                                dispatch.reference_only)
    assert not result.ok
    assert result.errors["forward"] > 10  # off by ~1%: far beyond the 0.1% tolerance
    assert result.errors["grad x"] <= 1.0  # the backward kernel is intact


def test_dispatch_falls_back_from_a_wrong_kernel_once(wrong_emu, monkeypatch):
    """A kernel failing its first-use check is reported once (with figures) and the reference runs."""
    import warnings

    monkeypatch.setattr(dispatch, "EXTRA_KERNEL_DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(dispatch, "runner_for", lambda device: wrong_emu)
    old = dispatch.set_backend(dispatch.Backend(requirements=lambda: None, build=lambda index: wrong_emu))
    try:
        monkeypatch.setenv("DOMRAND_OPS", "auto")
        torch.manual_seed(3)
        x = torch.randn(2, 8, 4, 4)
        with dispatch.reference_only():
            want = ops.bias_act(x, None, act="lrelu")
        with pytest.warns(dispatch.KernelMismatchWarning, match=r"bias_act disagrees with the PyTorch reference.*forward"):
            got = ops.bias_act(x, None, act="lrelu")
        assert torch.equal(got, want)  # the reference ran
        wrong_emu.calls.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # reported once: no second warning
            assert torch.equal(ops.bias_act(x, None, act="lrelu"), want)
            ops.upfirdn2d(x, ops.setup_filter([1, 3, 3, 1]), padding=1)  # a correct kernel still serves
        assert not any(c.startswith("bias_act_fwd") for c in wrong_emu.calls)
        assert any(c.startswith("upfirdn2d") for c in wrong_emu.calls)
        verdicts = dispatch.get_backend().verdicts()
        assert verdicts[("cpu", "upfirdn2d")] is None
        assert "forward" in verdicts[("cpu", "bias_act")]
        monkeypatch.setenv("DOMRAND_OPS", "cuda")  # insisting on kernels: a clear error with the figures
        with pytest.raises(dispatch.CudaUnavailableError, match="failed its self-check"):
            ops.bias_act(x, None, act="lrelu")
    finally:
        dispatch.set_backend(old)


def test_kernel_source_compiles_with_nvcc(tmp_path):
    """The real compile path (cache.nvcc_compile) builds a cubin exporting every kernel."""
    from domrand.cuda import cache

    if cache.find_nvcc() is None:
        pytest.skip("nvcc not found; cannot check that kernels.cu compiles for the GPU")
    spec = cache.BuildSpec(source=dispatch.kernel_source(), arch="sm_80", cuda_version=cache.nvcc_version(),
                           options=cache.DEFAULT_OPTIONS)
    payload = cache.nvcc_compile(spec)
    for name in launch.KERNEL_NAMES:
        assert name.encode() in payload, name


# --------------------------------------------------------------------------------------------
# GPU tests (skipped without CUDA + PyCUDA)


def _gpu_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device (torch.cuda.is_available() is False)"
    try:
        import pycuda.driver  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"needs PyCUDA (pip install 'domrand[cuda]'): {exc}"
    from domrand import cuda

    reason = cuda.unavailable_reason()
    return None if reason is None else f"CUDA kernels unavailable: {reason}"


@pytest.fixture(scope="module")
def gpu():
    reason = _gpu_reason()
    if reason is not None:
        pytest.skip(reason)
    return torch.device("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", ACTS)
def test_gpu_bias_act(gpu, act, dtype):
    torch.manual_seed(11)
    for shape in ([7, 5], [4, 64, 16, 16], [3, 512, 4, 4], [1, 3, 257, 129]):
        x = (torch.randn(shape, device=gpu) * 3).to(dtype).requires_grad_()
        b = torch.randn(shape[1], device=gpu).to(dtype).requires_grad_()
        y = cuda_autograd.bias_act(x, b, act=act, clamp=1.5)
        xr, br = x.detach().float().requires_grad_(), b.detach().float().requires_grad_()
        yr = ops.bias_act(xr, br, act=act, clamp=1.5)
        _close(y, yr, dtype, f"{act} {shape} forward")
        dy = torch.randn_like(yr)
        g = torch.autograd.grad(y, [x, b], dy.to(dtype))
        r = torch.autograd.grad(yr, [xr, br], dy)
        _close(g[0], r[0], dtype, "dx")
        torch.testing.assert_close(g[1].float(), r[1], rtol=1e-2, atol=1e-2 * math.prod(shape) ** 0.5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)])
def test_gpu_upfirdn2d(gpu, up, down, dtype):
    torch.manual_seed(12)
    for fname, f in FILTERS.items():
        f = None if f is None else f.to(gpu)
        for shape in ([2, 3, 9, 7], [4, 128, 32, 32], [1, 16, 256, 256]):
            x = torch.randn(shape, device=gpu).to(dtype).requires_grad_()
            y = cuda_autograd.upfirdn2d(x, f, up=up, down=down, padding=[2, 1, 1, 2], gain=up * up)
            xr = x.detach().float().requires_grad_()
            yr = ops.upfirdn2d(xr, f, up=up, down=down, padding=[2, 1, 1, 2], gain=up * up)
            _close(y, yr, dtype, f"{fname} {shape} forward")
            dy = torch.randn_like(yr)
            _close(torch.autograd.grad(y, x, dy.to(dtype))[0], torch.autograd.grad(yr, xr, dy)[0], dtype, "dx")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_noise_bias_act_and_modulation(gpu, dtype):
    torch.manual_seed(13)
    x = torch.randn(4, 32, 16, 16, device=gpu).to(dtype).requires_grad_()
    noise = torch.randn(4, 1, 16, 16, device=gpu).to(dtype)
    strength = torch.tensor(0.4, device=gpu, requires_grad=True)
    b = torch.randn(32, device=gpu).to(dtype).requires_grad_()
    y = cuda_autograd.noise_bias_act(x, noise, strength, b, act="lrelu", clamp=256)
    yr = noise_bias_act_reference(x.float(), noise.float(), strength, b.float(), act="lrelu", clamp=256)
    _close(y, yr, dtype, "noise_bias_act forward")
    w = torch.randn(64, 32, 3, 3, device=gpu)
    s = torch.randn(4, 32, device=gpu)
    torch.testing.assert_close(cuda_autograd.modulation_coefficients(w, s), ops.modulation_coefficients(w, s))


@pytest.mark.gpu
def test_gpu_stream_ordering_without_synchronization(gpu):
    """Kernels interleaved with torch ops, on the default and on a side stream, no explicit sync."""
    torch.manual_seed(14)
    f = ops.setup_filter([1, 3, 3, 1], device=gpu)
    for stream in (torch.cuda.current_stream(), torch.cuda.Stream()):  # default stream, then a side stream
        with torch.cuda.stream(stream):
            x = torch.randn(8, 64, 64, 64, device=gpu)
            y = x
            sums = []
            for _ in range(20):
                y = torch.tanh(y * 1.01)  # torch op producing the kernel's input
                y = cuda_autograd.upfirdn2d(y, f, padding=[1, 2, 1, 2])
                y = cuda_autograd.bias_act(y, None, act="lrelu") + 0.1  # torch op consuming the kernel's output
                sums.append(y.sum())
            got_sums, got_y = torch.stack(sums).cpu(), y.cpu()  # the only synchronization
        with dispatch.reference_only():
            y = x
            sums = []
            for _ in range(20):
                y = torch.tanh(y * 1.01)
                y = ops.upfirdn2d(y, f, padding=[1, 2, 1, 2])
                y = ops.bias_act(y, None, act="lrelu") + 0.1
                sums.append(y.sum())
        torch.testing.assert_close(got_y, y.cpu(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got_sums, torch.stack(sums).cpu(), rtol=1e-3, atol=1.0)


@pytest.mark.gpu
def test_gpu_dispatch_auto_uses_kernels(gpu, monkeypatch):
    from domrand import cuda

    monkeypatch.setenv("DOMRAND_OPS", "auto")
    x = torch.randn(2, 3, 4, 4, device=gpu)
    assert cuda.backend_for(x) == "cuda"
    assert dispatch.maybe_cuda("upfirdn2d", x, ops.setup_filter([1, 3, 3, 1], device=gpu)) is cuda_autograd.upfirdn2d
    assert dispatch.maybe_cuda("bias_act", x.double()) is None  # no float64 kernel
    monkeypatch.setenv("DOMRAND_OPS", "torch")
    assert cuda.backend_for(x) == "torch"


@pytest.mark.gpu
def test_gpu_compile_cache_roundtrip(gpu, tmp_path):
    import pycuda.driver as drv

    from domrand.cuda import cache

    major, minor = torch.cuda.get_device_capability()
    spec = cache.BuildSpec(source=dispatch.kernel_source(), arch=f"sm_{major}{minor}",
                           cuda_version=cache.nvcc_version(), options=cache.DEFAULT_OPTIONS)
    ctx = drv.Device(torch.cuda.current_device()).retain_primary_context()
    ctx.push()
    try:
        kc = cache.KernelCache(cache.nvcc_compile, drv.module_from_buffer, tmp_path)
        kc.get(spec)
        kc.get(spec)
        assert kc.stats["compiles"] == 1 and kc.stats["hits"] == 1
        kc.path_for(spec).write_bytes(b"garbage")
        kc.get(spec)
        assert kc.stats["compiles"] == 2 and kc.stats["rebuilt"] == 1
    finally:
        drv.Context.pop()
