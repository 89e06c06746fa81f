"""On-disk cache of compiled kernels (cubins).

An entry is keyed by ``sha256(source + compile options)``, the GPU architecture (``sm_90``) and the
CUDA toolkit version, so editing a ``.cu`` file, changing options, moving to another GPU or
upgrading the toolkit each builds anew. Entries are written atomically
(``domrand.utils.atomic_write_bytes``) with a header holding the payload's sha256; an entry that is
truncated, corrupt or that the driver refuses to load is deleted and rebuilt, never fatal.

Compiling and loading are injected functions, so the cache logic is unit-tested on a CPU with fakes:

* ``compile_fn(spec) -> bytes`` (default ``nvcc_compile``: runs ``nvcc --cubin``; raises
  ``CompileError`` carrying the compiler log);
* ``load_fn(payload) -> module`` (on the GPU: ``pycuda.driver.module_from_buffer``).

The directory is ``$DOMRAND_CACHE_DIR/cuda`` if that variable is set, else ``~/.cache/domrand/cuda``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from domrand.utils import atomic_write_bytes

MAGIC = b"DOMRAND-CUBIN-1\n"
_DIGEST = 32  # sha256 bytes after the magic


class CompileError(RuntimeError):
    """A kernel build failed; ``log`` holds the compiler's output and ``command`` what ran."""

    def __init__(self, message: str, log: str = "", command: str = ""):
        super().__init__(message)
        self.log = log
        self.command = command


class LoadError(RuntimeError):
    """A freshly compiled kernel image could not be loaded."""


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """What determines a compiled kernel image."""

    source: str  # CUDA C source text
    arch: str  # GPU architecture, e.g. "sm_90"
    cuda_version: str  # CUDA toolkit version, e.g. "12.4"
    options: tuple[str, ...] = ()  # extra nvcc options
    name: str = "kernels"  # file-name prefix (readability only)

    def source_hash(self) -> str:
        h = hashlib.sha256()
        h.update(self.source.encode("utf-8"))
        h.update(b"\0")
        h.update("\0".join(self.options).encode("utf-8"))
        return h.hexdigest()

    def key(self) -> str:
        """Cache key: ``<name>-<arch>-cuda<version>-<sha256(source + options + arch + version)[:32]>``."""
        h = hashlib.sha256()
        h.update(self.source_hash().encode())
        h.update(f"\0{self.arch}\0{self.cuda_version}".encode())
        version = re.sub(r"[^0-9A-Za-z.]", "_", self.cuda_version)
        arch = re.sub(r"[^0-9A-Za-z_]", "_", self.arch)
        return f"{self.name}-{arch}-cuda{version}-{h.hexdigest()[:32]}"


def default_cache_dir() -> Path:
    """``$DOMRAND_CACHE_DIR/cuda`` if set, else ``~/.cache/domrand/cuda``."""
    env = os.environ.get("DOMRAND_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "cuda"
    return Path.home() / ".cache" / "domrand" / "cuda"


def pack_entry(payload: bytes) -> bytes:
    return MAGIC + hashlib.sha256(payload).digest() + payload


def unpack_entry(data: bytes) -> bytes | None:
    """The payload of a cache file, or ``None`` if it is not an intact entry."""
    head = len(MAGIC) + _DIGEST
    if len(data) < head or not data.startswith(MAGIC):
        return None
    digest, payload = data[len(MAGIC):head], data[head:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload


class KernelCache:
    """Load-or-build compiled kernels through an on-disk cache.

    ``stats`` counts ``hits`` (loaded from disk), ``compiles`` and ``rebuilt`` (corrupt or
    unloadable entries replaced).
    """

    def __init__(
        self,
        compile_fn: Callable[[BuildSpec], bytes],  # source -> cubin bytes; raises CompileError
        load_fn: Callable[[bytes], Any],  # cubin bytes -> loaded module; raises on a bad image
        cache_dir: str | os.PathLike | None = None,  # default: default_cache_dir()
    ):
        self.compile_fn = compile_fn
        self.load_fn = load_fn
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.stats = {"hits": 0, "compiles": 0, "rebuilt": 0}

    def path_for(self, spec: BuildSpec) -> Path:
        return self.cache_dir / f"{spec.key()}.cubin"

    def get(self, spec: BuildSpec) -> Any:
        """The loaded module for ``spec``, from the cache if possible, else compiled and stored."""
        path = self.path_for(spec)
        payload = self._read(path)
        if payload is not None:
            try:
                module = self.load_fn(payload)
            except Exception:  # unloadable entry (another driver, corrupt image): rebuild it
                self._discard(path)
                self.stats["rebuilt"] += 1
            else:
                self.stats["hits"] += 1
                return module
        payload = self.compile_fn(spec)
        self.stats["compiles"] += 1
        try:
            atomic_write_bytes(path, pack_entry(payload))
        except OSError:
            pass  # a read-only or full cache directory only costs a rebuild next time
        try:
            return self.load_fn(payload)
        except Exception as exc:
            self._discard(path)
            raise LoadError(f"compiled kernel image for {spec.arch} (CUDA {spec.cuda_version}) failed to load: {exc}") from exc

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        payload = unpack_entry(data)
        if payload is None:  # truncated or corrupt: delete, rebuild
            self._discard(path)
            self.stats["rebuilt"] += 1
        return payload

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The real compiler: nvcc (the compiler PyCUDA's SourceModule drives), called directly so the
# compiler log and command are kept for the one-time failure report.

DEFAULT_OPTIONS: tuple[str, ...] = ("-O3", "-std=c++17")


def find_nvcc() -> str | None:
    """Path of nvcc: ``$CUDA_HOME/bin/nvcc`` or ``$CUDA_PATH/bin/nvcc`` if present, else ``PATH``."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return shutil.which("nvcc")


_nvcc_versions: dict[str, str] = {}


def nvcc_version(nvcc: str | None = None) -> str:
    """CUDA toolkit version reported by ``nvcc --version`` (e.g. ``"12.4"``)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise CompileError("nvcc was not found (install the CUDA toolkit or set CUDA_HOME)")
    if nvcc not in _nvcc_versions:
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise CompileError(f"could not run {nvcc} --version: {exc}") from exc
        m = re.search(r"release (\d+\.\d+)", out)
        if not m:
            raise CompileError(f"could not read the CUDA version from `{nvcc} --version`", log=out)
        _nvcc_versions[nvcc] = m.group(1)
    return _nvcc_versions[nvcc]


def nvcc_compile(spec: BuildSpec, nvcc: str | None = None, timeout: float = 600) -> bytes:
    """Compile ``spec.source`` to a cubin for ``spec.arch``; raises ``CompileError`` with the log."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise CompileError("nvcc was not found (install the CUDA toolkit or set CUDA_HOME)")
    with tempfile.TemporaryDirectory(prefix="domrand-nvcc-") as tmp:
        src = Path(tmp) / f"{spec.name}.cu"
        out = Path(tmp) / f"{spec.name}.cubin"
        src.write_text(spec.source, encoding="utf-8")
        cmd = [nvcc, "--cubin", f"-arch={spec.arch}", *spec.options, "-o", str(out), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CompileError(f"could not run nvcc: {exc}", command=" ".join(cmd)) from exc
        log = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or not out.is_file():
            raise CompileError(f"nvcc failed with exit status {proc.returncode}", log=log, command=" ".join(cmd))
        return out.read_bytes()
