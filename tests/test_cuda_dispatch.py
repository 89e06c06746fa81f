"""CPU tests of domrand.cuda: availability, DOMRAND_OPS dispatch, failed-build reporting, the compile
cache and the GPU runner's stream/context logic (with fakes). No GPU or PyCUDA needed."""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import domrand.cuda as dcuda
from domrand.cuda import autograd as cuda_autograd
from domrand.cuda import cache, dispatch, launch


class FakeCudaTensor:
    """Just enough of a CUDA tensor for maybe_cuda's checks (no CUDA needed)."""

    def __init__(self, shape=(2, 3, 4, 4), dtype=torch.float32, requires_grad=False, index=0):
        self.shape = torch.Size(shape)
        self.ndim = len(shape)
        self.dtype = dtype
        self.requires_grad = requires_grad
        self.device = torch.device("cuda", index)
        self.is_cuda = True

    def numel(self):
        return self.shape.numel()


class CountingBuild:
    def __init__(self, fail: Exception | None = None):
        self.calls = 0
        self.fail = fail

    def __call__(self, device_index):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return object()  # a "runner"


@pytest.fixture
def backend(monkeypatch):
    """Install a fake backend (requirements met, counting builder); restore the real one after."""
    monkeypatch.delenv("DOMRAND_OPS", raising=False)
    build = CountingBuild()
    old = dispatch.set_backend(dispatch.Backend(requirements=lambda: None, build=build, verify=lambda *args: None))
    yield build
    dispatch.set_backend(old)


@pytest.fixture
def real_backend(monkeypatch):
    """A fresh real backend (this machine's actual requirements), with builds forbidden."""
    monkeypatch.delenv("DOMRAND_OPS", raising=False)

    def no_build(device_index):  # pragma: no cover - only reached if requirements were met
        raise AssertionError("no build should be attempted here")

    old = dispatch.set_backend(dispatch.Backend(build=no_build))
    yield
    dispatch.set_backend(old)


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


# --------------------------------------------------------------------------------------------
# Availability on this machine


@needs_no_cuda
def test_unavailable_here_with_a_useful_reason(real_backend):
    assert dcuda.available() is False
    reason = dcuda.unavailable_reason()
    assert reason and "torch.cuda.is_available() is False" in reason
    try:
        import pycuda  # noqa: F401
    except ImportError:
        assert "PyCUDA is not installed" in reason and "domrand[cuda]" in reason


def test_cpu_tensors_take_the_reference_in_auto(real_backend, monkeypatch):
    x = torch.randn(2, 3, 4, 4)
    assert dispatch.maybe_cuda("bias_act", x) is None
    monkeypatch.setenv("DOMRAND_OPS", "auto")
    assert dispatch.maybe_cuda("upfirdn2d", x, torch.ones(4)) is None
    assert dcuda.backend_for(x) == "torch"


def test_cpu_tensors_take_the_reference_even_when_kernels_are_available(backend):
    x = torch.randn(2, 3, 4, 4)
    for op in dispatch.OPS:
        assert dispatch.maybe_cuda(op, x) is None
    assert backend.calls == 0  # nothing is built for CPU tensors


def test_importing_domrand_cuda_does_not_import_pycuda():
    """PyCUDA is imported only inside functions (lazily), never at module level."""
    import ast

    def eager_imports(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return  # imports in function bodies run lazily
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
        for child in ast.iter_child_nodes(node):
            yield from eager_imports(child)

    for path in Path(dcuda.__file__).parent.glob("*.py"):
        names = list(eager_imports(ast.parse(path.read_text())))
        assert names, path  # the walk sees the module-level imports
        assert not any(n.split(".")[0] == "pycuda" for n in names), f"{path.name} imports pycuda eagerly"
    dispatch.maybe_cuda("bias_act", torch.zeros(2))
    dcuda.backend_for(torch.zeros(2))
    if not torch.cuda.is_available():
        assert "pycuda" not in sys.modules


# --------------------------------------------------------------------------------------------
# DOMRAND_OPS


def test_torch_forces_the_reference(backend, monkeypatch):
    x = FakeCudaTensor()
    assert dispatch.maybe_cuda("bias_act", x) is cuda_autograd.bias_act  # auto: kernels
    monkeypatch.setenv("DOMRAND_OPS", "torch")
    for op in dispatch.OPS:
        assert dispatch.maybe_cuda(op, x) is None
    assert dcuda.backend_for(torch.zeros(1)) == "torch"


def test_auto_picks_each_kernel_for_covered_cuda_tensors(backend, monkeypatch):
    monkeypatch.setenv("DOMRAND_OPS", " AUTO ")  # case and spaces are forgiven
    x = FakeCudaTensor()
    f = FakeCudaTensor((4,))
    assert dispatch.maybe_cuda("bias_act", x, FakeCudaTensor((3,))) is cuda_autograd.bias_act
    assert dispatch.maybe_cuda("upfirdn2d", x, f) is cuda_autograd.upfirdn2d
    assert dispatch.maybe_cuda("noise_bias_act", x, FakeCudaTensor((1, 1, 4, 4)), FakeCudaTensor(()), None) \
        is cuda_autograd.noise_bias_act
    assert dispatch.maybe_cuda("modulation_coefficients", FakeCudaTensor((5, 3, 3, 3)), FakeCudaTensor((2, 3))) \
        is cuda_autograd.modulation_coefficients
    assert backend.calls == 1  # built once for cuda:0


@pytest.mark.parametrize("case", ["float64", "bfloat16", "filter_requires_grad", "other_device", "noise_shape",
                                  "reference_only"])
def test_uncovered_cases_take_the_reference(backend, monkeypatch, case):
    x = FakeCudaTensor()
    args = {
        "float64": ("bias_act", FakeCudaTensor(dtype=torch.float64)),
        "bfloat16": ("bias_act", FakeCudaTensor(dtype=torch.bfloat16)),
        "filter_requires_grad": ("upfirdn2d", x, FakeCudaTensor((4,), requires_grad=True)),
        "other_device": ("bias_act", x, FakeCudaTensor((3,), index=1)),
        "noise_shape": ("noise_bias_act", x, FakeCudaTensor((2, 3, 4, 4))),
        "reference_only": ("bias_act", x),
    }[case]
    for mode in ("auto", "cuda"):
        monkeypatch.setenv("DOMRAND_OPS", mode)
        if case == "reference_only":
            with dispatch.reference_only():
                assert dispatch.maybe_cuda(*args) is None
            assert dispatch.maybe_cuda(*args) is not None
        else:
            assert dispatch.maybe_cuda(*args) is None


def test_cuda_mode_raises_with_the_reason_when_unavailable(real_backend, monkeypatch):
    monkeypatch.setenv("DOMRAND_OPS", "cuda")
    if dispatch.get_backend().requirements_reason() is None:  # pragma: no cover - GPU machines
        pytest.skip("requirements are met here")
    with pytest.raises(dcuda.CudaUnavailableError) as err:
        dispatch.maybe_cuda("bias_act", torch.randn(3))
    msg = str(err.value)
    assert "DOMRAND_OPS=cuda" in msg and dispatch.get_backend().requirements_reason() in msg
    with pytest.raises(dcuda.CudaUnavailableError):
        dcuda.backend_for(torch.randn(3))


def test_cuda_mode_raises_after_a_failed_build(monkeypatch):
    build = CountingBuild(fail=cache.CompileError("nvcc failed with exit status 1", log="kernels.cu(3): error: boom"))
    old = dispatch.set_backend(dispatch.Backend(requirements=lambda: None, build=build, verify=lambda *args: None))
    try:
        monkeypatch.setenv("DOMRAND_OPS", "cuda")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(dcuda.CudaUnavailableError, match="kernel build failed"):
                dispatch.maybe_cuda("bias_act", FakeCudaTensor())
        with pytest.raises(dcuda.CudaUnavailableError, match="nvcc failed"):
            dispatch.maybe_cuda("bias_act", FakeCudaTensor())
        assert build.calls == 1
    finally:
        dispatch.set_backend(old)


@pytest.mark.parametrize("value", ["gpu", "pycuda", "1", "reference"])
def test_invalid_mode_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("DOMRAND_OPS", value)
    with pytest.raises(ValueError) as err:
        dispatch.maybe_cuda("bias_act", torch.randn(2))
    assert repr(value) in str(err.value) and "auto, torch, cuda" in str(err.value)
    monkeypatch.setenv("DOMRAND_OPS", "torch")  # a fixed value is picked up at once
    assert dispatch.maybe_cuda("bias_act", torch.randn(2)) is None


def test_mode_is_parsed_only_when_the_variable_changes(monkeypatch):
    calls = []
    real = dispatch.parse_mode
    x = torch.randn(2)
    monkeypatch.setenv("DOMRAND_OPS", "auto")
    dispatch.maybe_cuda("bias_act", x)
    monkeypatch.setattr(dispatch, "parse_mode", lambda raw: calls.append(raw) or real(raw))
    monkeypatch.setenv("DOMRAND_OPS", "torch")
    for _ in range(50):
        dispatch.maybe_cuda("bias_act", x)
    assert calls == ["torch"]
    monkeypatch.setenv("DOMRAND_OPS", "auto")
    for _ in range(50):
        dispatch.maybe_cuda("bias_act", x)
    assert calls == ["torch", "auto"]
    assert dispatch.current_mode() == "auto"


def test_dispatch_check_is_cheap_on_cpu(monkeypatch):
    monkeypatch.delenv("DOMRAND_OPS", raising=False)
    x = torch.randn(4)
    dispatch.maybe_cuda("bias_act", x)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        dispatch.maybe_cuda("bias_act", x)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 10e-6, f"maybe_cuda costs {per_call * 1e6:.1f} us per call on a CPU tensor"


# --------------------------------------------------------------------------------------------
# A failed build is reported once and never retried


def test_failed_build_warns_once_with_the_log_and_is_not_retried(monkeypatch):
    monkeypatch.delenv("DOMRAND_OPS", raising=False)
    err = cache.CompileError("nvcc failed with exit status 2", log="kernels.cu(12): error: identifier \"oops\" is undefined",
                             command="nvcc --cubin -arch=sm_90 kernels.cu")
    build = CountingBuild(fail=err)
    old = dispatch.set_backend(dispatch.Backend(requirements=lambda: None, build=build, verify=lambda *args: None))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(25):
                assert dispatch.maybe_cuda("bias_act", FakeCudaTensor()) is None  # reference
            assert dispatch.get_backend().reason(0) is not None
        assert build.calls == 1
        ours = [w for w in caught if issubclass(w.category, dcuda.KernelBuildWarning)]
        assert len(ours) == 1
        text = str(ours[0].message)
        assert "identifier \"oops\" is undefined" in text and "nvcc --cubin" in text and "reference" in text
        assert "kernel build failed" in dispatch.get_backend().reason(0)
    finally:
        dispatch.set_backend(old)


def test_each_device_is_built_once(backend):
    for _ in range(5):
        dispatch.maybe_cuda("bias_act", FakeCudaTensor(index=0))
        dispatch.maybe_cuda("bias_act", FakeCudaTensor(index=1))
    assert backend.calls == 2


def test_requirements_are_checked_once(monkeypatch):
    calls = []
    old = dispatch.set_backend(dispatch.Backend(requirements=lambda: calls.append(1) or "no GPU here"))
    try:
        for _ in range(10):
            assert dispatch.get_backend().reason(0) == "no GPU here"
        assert calls == [1]
    finally:
        dispatch.set_backend(old)


def test_unknown_op_name(backend):
    with pytest.raises(ValueError, match="unknown op"):
        dispatch.maybe_cuda("conv2d", FakeCudaTensor())


# --------------------------------------------------------------------------------------------
# Compile cache


class FakeCompiler:
    def __init__(self):
        self.calls = 0

    def __call__(self, spec: cache.BuildSpec) -> bytes:
        self.calls += 1
        return b"CUBIN:" + spec.key().encode()


def fake_load(payload: bytes):
    if not payload.startswith(b"CUBIN:"):
        raise RuntimeError("cuModuleLoadData failed: CUDA_ERROR_INVALID_IMAGE")
    return ("module", payload)


SPEC = cache.BuildSpec(source="__global__ void k() {}", arch="sm_90", cuda_version="12.4", options=("-O3",))


def test_cache_hit_avoids_recompiling(tmp_path):
    compiler = FakeCompiler()
    kc = cache.KernelCache(compiler, fake_load, tmp_path)
    first = kc.get(SPEC)
    second = cache.KernelCache(compiler, fake_load, tmp_path).get(SPEC)  # a new process, same dir
    assert first == second and compiler.calls == 1
    assert kc.path_for(SPEC).is_file()


def test_cache_key_changes_with_source_options_arch_and_cuda_version():
    import dataclasses

    keys = {
        SPEC.key(),
        dataclasses.replace(SPEC, source=SPEC.source + " ").key(),
        dataclasses.replace(SPEC, options=("-O2",)).key(),
        dataclasses.replace(SPEC, arch="sm_80").key(),
        dataclasses.replace(SPEC, cuda_version="12.5").key(),
    }
    assert len(keys) == 5
    assert SPEC.key() == cache.BuildSpec(**dataclasses.asdict(SPEC)).key()  # deterministic
    assert "sm_90" in SPEC.key() and "cuda12.4" in SPEC.key()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "empty", "unloadable"])
def test_corrupt_cache_entry_is_rebuilt(tmp_path, damage):
    compiler = FakeCompiler()
    kc = cache.KernelCache(compiler, fake_load, tmp_path)
    good = kc.get(SPEC)
    path = kc.path_for(SPEC)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a cubin at all")
    elif damage == "flip_byte":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # intact entry, but the driver refuses the image
        path.write_bytes(cache.pack_entry(b"BROKEN IMAGE"))
    assert kc.get(SPEC) == good
    assert compiler.calls == 2 and kc.stats["rebuilt"] == 1
    assert cache.unpack_entry(path.read_bytes()) is not None  # replaced by a good entry
    assert kc.get(SPEC) == good and compiler.calls == 2


def test_atomic_write_leaves_no_partial_files(tmp_path, monkeypatch):
    compiler = FakeCompiler()
    kc = cache.KernelCache(compiler, fake_load, tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    assert kc.get(SPEC)[0] == "module"  # a failed write only costs a rebuild next time
    assert list(tmp_path.iterdir()) == []  # no entry, no temporary file
    monkeypatch.undo()
    kc.get(SPEC)
    assert [p.name for p in tmp_path.iterdir()] == [kc.path_for(SPEC).name]
    assert compiler.calls == 2


def test_compile_error_propagates_and_writes_nothing(tmp_path):
    def failing(spec):
        raise cache.CompileError("nvcc failed", log="error: boom")

    kc = cache.KernelCache(failing, fake_load, tmp_path)
    with pytest.raises(cache.CompileError) as err:
        kc.get(SPEC)
    assert err.value.log == "error: boom"
    assert list(tmp_path.iterdir()) == []


def test_fresh_image_that_cannot_load_is_a_load_error(tmp_path):
    kc = cache.KernelCache(lambda spec: b"BROKEN", fake_load, tmp_path)
    with pytest.raises(cache.LoadError, match="failed to load"):
        kc.get(SPEC)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_follows_domrand_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DOMRAND_CACHE_DIR", str(tmp_path))
    assert cache.default_cache_dir() == tmp_path / "cuda"
    assert cache.KernelCache(FakeCompiler(), fake_load).cache_dir == tmp_path / "cuda"
    monkeypatch.delenv("DOMRAND_CACHE_DIR")
    assert cache.default_cache_dir() == Path.home() / ".cache" / "domrand" / "cuda"


def test_nvcc_compile_reports_the_compiler_log():
    if cache.find_nvcc() is None:
        pytest.skip("nvcc not found")
    spec = cache.BuildSpec(source="__global__ void k() { undefined_thing(); }\n", arch="sm_80",
                           cuda_version=cache.nvcc_version())
    with pytest.raises(cache.CompileError) as err:
        cache.nvcc_compile(spec)
    assert "undefined_thing" in err.value.log and "nvcc" in err.value.command


# --------------------------------------------------------------------------------------------
# PyCudaRunner's context and stream handling, with fakes


class FakeFunction:
    def __init__(self, log):
        self.log = log

    def prepare(self, sig):
        self.log.append(("prepare", sig))

    def prepared_call(self, grid, block, *args):
        self.log.append(("launch_default_stream", grid, block, args))

    def prepared_async_call(self, grid, block, stream, *args):
        self.log.append(("launch_side_stream", grid, block, stream.handle, args))


class FakeDrv:
    def __init__(self, log):
        self.log = log
        drv = self

        class Context:
            @staticmethod
            def pop():
                drv.log.append("pop")

        class Stream:
            handle = 0x5EED

        self.Context = Context
        self.Stream = Stream


class FakeContext:
    def __init__(self, log):
        self.log = log

    def push(self):
        self.log.append("push")


class FakeTorchStream:
    def __init__(self, handle, log, name):
        self.cuda_stream = handle
        self.log = log
        self.name = name

    def wait_stream(self, other):
        self.log.append(f"{self.name} waits for {other.name}")


def _runner_with_fakes(monkeypatch, current_handle):
    log = []

    class Module:
        def get_function(self, name):
            log.append(("get_function", name))
            return FakeFunction(log)

    current = FakeTorchStream(current_handle, log, "torch")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "ExternalStream",
                        lambda handle, device=None: FakeTorchStream(handle, log, f"side{handle:#x}"))
    runner = launch.PyCudaRunner(0, Module(), FakeContext(log), FakeDrv(log))
    return runner, log


def test_runner_on_default_stream_launches_in_order_in_the_primary_context(monkeypatch):
    runner, log = _runner_with_fakes(monkeypatch, current_handle=0)
    runner.run("bias_act_fwd_f32", 1000, (1, 0, 2, 1000, 4, 250, 2, 0.2, 1.4, -1.0))
    runner.run("bias_act_fwd_f32", 10, (1, 0, 2, 10, 1, 10, 0, 0.0, 1.0, -1.0))
    assert log[0] == "push" and log[-1] == "pop"
    assert ("prepare", launch.SIGNATURES["bias_act_fwd"]) in log
    assert sum(1 for e in log if e[0] == "get_function") == 1  # looked up and prepared once
    launches = [e for e in log if e[0] == "launch_default_stream"]
    assert launches[0][1] == (4, 1) and launches[0][2] == (launch.BLOCK_SIZE, 1, 1)
    assert launches[1][1] == (1, 1)
    assert log.count("push") == log.count("pop") == 2


def test_runner_on_a_side_stream_brackets_the_launch_with_waits(monkeypatch):
    runner, log = _runner_with_fakes(monkeypatch, current_handle=0xABC)
    runner.run("upfirdn2d_f16", 10**9, tuple(range(16)))
    order = [e if isinstance(e, str) else e[0] for e in log]
    i_wait_in = order.index("side0x5eed waits for torch")
    i_launch = order.index("launch_side_stream")
    i_wait_out = order.index("torch waits for side0x5eed")
    assert i_wait_in < i_launch < i_wait_out
    launch_entry = log[i_launch]
    assert launch_entry[1] == (launch.MAX_BLOCKS, 1)  # grid capped; the kernel's grid-stride loop covers the rest
    assert order[0] == "push" and order[-1] == "pop"


def test_runner_pops_the_context_when_a_launch_fails(monkeypatch):
    runner, log = _runner_with_fakes(monkeypatch, current_handle=0)

    def boom(*a):
        raise RuntimeError("launch failed")

    runner._function("weight_sq_f32").prepared_call = boom
    with pytest.raises(RuntimeError):
        runner.run("weight_sq_f32", 10, (0, 0, 10, 9))
    assert log.count("push") == log.count("pop")
