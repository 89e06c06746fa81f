#!/usr/bin/env bash
# The prepared GPU check (see domrand/gpu_check.py for the steps). One command, one output folder:
#
#   scripts/gpu_check.sh OUT_DIR [--dry] [options of domrand gpu-check]
#
# Before the Python steps it makes the machine ready, offline:
#   * Python packages missing there are installed from wheels in .whl/ (if that folder exists);
#   * domrand is installed in editable mode without dependencies if it does not import;
#   * PyCUDA is built from its source distribution (.whl/pycuda-*.tar.gz or $PYCUDA_SDIST) with all
#     cores, against the CUDA toolkit that nvcc belongs to, unless it already imports.
# GPU_CHECK_SKIP_PYCUDA=1 skips the build (e.g. a rerun of the training step alone).
# --dry skips the PyCUDA build and runs every step on the CPU at toy size (the test suite does this).
# The whole run keeps to $GPU_CHECK_MINUTES (default 9.5) minutes; report.json is written as it goes.
set -uo pipefail

out=${1:?usage: scripts/gpu_check.sh OUT_DIR [--dry] [options]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
start=$(date +%s)
budget_s=$(python3 -c "print(int(float('${GPU_CHECK_MINUTES:-9.5}') * 60))")
dry=0
for a in "$@"; do [ "$a" = "--dry" ] && dry=1; done
work=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
[ "$dry" = 1 ] && work=${GPU_CHECK_WORK:-$out/work}
mkdir -p "$work"
setup_log="$work/setup.log"
: > "$setup_log"
say() { echo "[gpu_check.sh $(( $(date +%s) - start ))s] $*" | tee -a "$setup_log"; }

# 1. Wheels for packages the machine lacks (no network there).
if [ "$dry" = 0 ] && compgen -G ".whl/*.whl" > /dev/null; then
    say "installing wheels from .whl/ into /tmp/gpu_check_site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu_check_site .whl/*.whl >> "$setup_log" 2>&1 || say "wheel install failed (see setup.log)"
    export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. domrand itself.
if ! python3 -c "import domrand" >> "$setup_log" 2>&1; then
    say "installing domrand (editable, no dependencies)"
    if ! python3 -m pip install -q --no-deps --no-build-isolation -e . >> "$setup_log" 2>&1; then
        # Fallback: the layout an install makes (envs/ and configs/ inside the package), by links.
        say "editable install failed; linking domrand/envs and domrand/configs and using PYTHONPATH"
        ln -sfn ../envs domrand/envs && ln -sfn ../configs domrand/configs
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
    python3 -c "import domrand" >> "$setup_log" 2>&1 || say "domrand still does not import (see setup.log)"
fi

# 3. PyCUDA from source.
build_pycuda() {
    local sdist=${PYCUDA_SDIST:-$(ls .whl/pycuda-*.tar.gz 2>/dev/null | head -n 1)}
    if [ -z "$sdist" ]; then say "no PyCUDA source distribution (.whl/pycuda-*.tar.gz or PYCUDA_SDIST)"; return 1; fi
    local nvcc_path cuda_root libdir src=/tmp/gpu_check_pycuda
    nvcc_path=$(readlink -f "$(command -v nvcc)") || { say "nvcc not found"; return 1; }
    cuda_root=$(dirname "$(dirname "$nvcc_path")")
    # The linker wants an unversioned libcuda.so; the driver often ships only libcuda.so.1.
    libdir=/tmp/gpu_check_libcuda
    mkdir -p "$libdir"
    local real
    real=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so/ {print $NF; exit}')
    [ -z "$real" ] && real=$(ls /usr/local/nvidia/lib64/libcuda.so* /usr/lib/x86_64-linux-gnu/libcuda.so* \
        "$cuda_root"/lib64/stubs/libcuda.so "$cuda_root"/targets/x86_64-linux/lib/stubs/libcuda.so 2>/dev/null | head -n 1)
    [ -n "$real" ] && ln -sf "$real" "$libdir/libcuda.so"
    say "building PyCUDA from $sdist (CUDA root $cuda_root, libcuda $real, $(nproc) jobs)"
    rm -rf "$src" && mkdir -p "$src" && tar xzf "$sdist" -C "$src" --strip-components 1 || return 1
    (cd "$src" && python3 configure.py --cuda-root="$cuda_root" --cudadrv-lib-dir="$libdir,$cuda_root/lib64" --no-cuda-enable-curand \
        && python3 setup.py build_ext --inplace -j "$(nproc)") >> "$work/pycuda_build.log" 2>&1 || return 1
    export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c "import pycuda.driver as d; d.init(); print('pycuda', d.get_version(), d.Device(0).name())" >> "$setup_log" 2>&1
}
if [ "$dry" = 0 ] && [ "${GPU_CHECK_SKIP_PYCUDA:-0}" = 1 ]; then
    say "GPU_CHECK_SKIP_PYCUDA=1: no PyCUDA build (the kernels stay unavailable; torch ops run)"
elif [ "$dry" = 0 ]; then
    if python3 -c "import pycuda.driver" > /dev/null 2>&1; then
        say "PyCUDA already importable"
    elif build_pycuda; then
        say "PyCUDA built"
    else
        say "PyCUDA build FAILED (see pycuda_build.log); the kernel steps will report why"
    fi
fi

left_min=$(python3 -c "print(max(0.5, ($budget_s - ($(date +%s) - $start)) / 60))")
say "running domrand gpu-check with $left_min minutes left"
python3 -m domrand gpu-check --out "$out" --work "$work" --minutes "$left_min" "$@" 2>&1 | tee "$out/gpu_check.log"
code=${PIPESTATUS[0]}
say "done (exit $code)"
exit "$code"
