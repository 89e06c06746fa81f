"""The prepared GPU check: everything domrand wants to know from a GPU, in one run, one folder.

``domrand gpu-check --out DIR`` (``scripts/gpu_check.sh`` builds PyCUDA first, then runs
this) performs these steps, each bounded in time, recording each in ``DIR/report.json`` as it goes
(so a run cut short still reports what it finished):

1. ``environment``: torch, CUDA device, nvcc, PyCUDA, whether the kernels build, and each kernel's
   first-use self-check verdict against its reference (``domrand.cuda.selfcheck``).
2. ``pytest_gpu``: ``pytest -m gpu tests/test_cuda_kernels.py`` (kernels vs reference, fp32/fp16,
   forward/backward, streams, compile cache).
3. ``bench_randomizer``: ``domrand speed randomizer --device cuda --ops torch,cuda --batch
   1,16,64,256 --preset small64,base64``.
4. ``precision``: the bundled model's randomizer in bfloat16 and float16 vs float32 (frames/s, PSNR
   of the uint8 output; the bar is >= 40 dB).
5. ``train``: the bundled model's training pipeline (``train-generator`` on the target frames,
   ``train-inverter`` with target and sim frames, ``bundle``) within the time left, the generator
   sized by a short calibration run; the bundle and sample sheets are kept.
6. ``pack``: ``DIR/artifacts/`` into ``artifacts.tar.partNN`` files under 15 MiB each (with SHA-256
   sums), so every file that comes back is small.

``--dry`` runs the same steps on the CPU at toy size (tiny presets, a few images, no kernels): the
test suite runs it, so the script cannot rot between GPU sessions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

PART_BYTES = 15 * 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


class Report:
    """``report.json`` kept on disk after every step (atomic writes)."""

    def __init__(self, out: Path, dry: bool, deadline: float):
        self.path = out / "report.json"
        self.deadline = deadline
        self.data: dict[str, Any] = {"dry": dry, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "steps": {}}
        self.save()

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.monotonic()

    def save(self) -> None:
        from domrand.utils import atomic_write_text

        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str, allow_nan=True) + "\n")

    def step(self, name: str, fn: Callable[[], dict[str, Any]], min_seconds: float = 0.0) -> dict[str, Any]:
        """Run one step, record ``status`` (ok | failed | skipped), seconds and its result."""
        record: dict[str, Any] = {"status": "running"}
        self.data["steps"][name] = record
        if self.left() < min_seconds:
            record.update(status="skipped", reason=f"{self.left():.0f} s left, the step needs {min_seconds:.0f} s")
            self.save()
            return record
        self.save()
        print(f"== {name} ({self.left():.0f} s left)", flush=True)
        start = time.monotonic()
        try:
            result = fn()
            record.update(result)
            if "status" not in result:
                record["status"] = "ok"
        except Exception as exc:  # a failed step is recorded and the next one still runs
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        record["seconds"] = round(time.monotonic() - start, 1)
        print(f"   {name}: {record['status']} in {record['seconds']} s", flush=True)
        self.save()
        return record


def _run(cmd: list[str], log: Path, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` from the repo root, its output to ``log`` (and returned); -9 on a timeout."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            code = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=max(timeout, 1)).returncode
        except subprocess.TimeoutExpired:
            code = -9
            fh.write(f"\n[gpu_check: killed after {timeout:.0f} s]\n")
    return code, log.read_text(encoding="utf-8", errors="replace")


def _domrand(*args: str) -> list[str]:
    return [sys.executable, "-m", "domrand", *args]


# --------------------------------------------------------------------------------------------
# Steps


def environment(device: str) -> dict[str, Any]:
    """Versions, the device, whether the kernels build, and their self-check verdicts."""
    import torch

    from domrand import cuda
    from domrand.cuda import cache, dispatch
    from domrand.generator.nn import ops

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "nvcc": cache.nvcc_version() if cache.find_nvcc() else None,
    }
    try:
        import pycuda

        info["pycuda"] = getattr(pycuda, "VERSION_TEXT", "installed")
    except Exception as exc:
        info["pycuda"] = f"not importable: {type(exc).__name__}: {exc}"
    if device != "cuda" or not torch.cuda.is_available():
        info["kernels"] = cuda.unavailable_reason()
        return info
    props = torch.cuda.get_device_properties(0)
    info["device"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count}
    info["kernels"] = cuda.unavailable_reason() or "available"
    if info["kernels"] == "available":
        dev = torch.device("cuda")
        x = torch.randn(2, 4, 8, 8, device=dev)
        f = ops.setup_filter([1, 3, 3, 1], device=dev)
        w = torch.randn(6, 4, 3, 3, device=dev)
        s = torch.randn(2, 4, device=dev)
        noise = torch.randn(2, 1, 8, 8, device=dev)
        for op, tensors in (("bias_act", (x, None)), ("upfirdn2d", (x, f)),
                            ("noise_bias_act", (x, noise, None, None)), ("modulation_coefficients", (w, s))):
            dispatch.maybe_cuda(op, *tensors)  # runs the first-use self-check
        info["selfcheck"] = {f"{dev_name} {op}": (verdict or "passed")
                             for (dev_name, op), verdict in dispatch.get_backend().verdicts().items()}
        info["selfcheck_all_passed"] = all(v is None for v in dispatch.get_backend().verdicts().values())
    return info


def pytest_gpu(work: Path, timeout: float) -> dict[str, Any]:
    code, text = _run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_cuda_kernels.py", "-rsf",
                       "-p", "no:cacheprovider"], work / "pytest_gpu.log", timeout)
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected).* in [\d.]+s", line)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary[-1] if summary else "")}
    return {"status": "ok" if code == 0 else "failed", "exit_code": code, "counts": counts, "log": "pytest_gpu.log"}


def _parse_table(text: str, columns: list[str], text_columns: int) -> list[dict[str, Any]]:
    """Rows of a printed benchmark table whose fields are ``columns``: the first ``text_columns``
    stay strings, the rest must be numbers (they become floats)."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != len(columns):
            continue
        try:
            values = parts[:text_columns] + [float(p) for p in parts[text_columns:]]
        except ValueError:
            continue
        rows.append(dict(zip(columns, values)))
    return rows


def bench_randomizer(work: Path, dry: bool, timeout: float) -> dict[str, Any]:
    if dry:
        args = ["--device", "cpu", "--ops", "torch", "--batch", "1,2", "--preset", "tiny", "--repeats", "1", "--warmup", "0"]
    else:
        args = ["--device", "cuda", "--ops", "torch,cuda", "--batch", "1,16,64,256", "--preset", "small64,base64"]
    code, text = _run(_domrand("bench", "randomizer", *args), work / "bench_randomizer.log", timeout)
    rows = _parse_table(text, ["model", "path", "dtype", "ops", "batch", "frames_per_s", "ms_per_batch", "ms_per_frame"],
                        text_columns=4)
    return {"status": "ok" if code == 0 else "failed", "exit_code": code, "rows": rows, "log": "bench_randomizer.log"}


def precision(dry: bool, device: str, frames: str | None) -> dict[str, Any]:
    import torch

    from domrand.speed.precision import measure

    batch, repeats = (4, 1) if dry else (64, 5)
    rows = measure(None, torch.device(device), ["float32", "bfloat16", "float16"], batch,
                   frames_source=frames, repeats=repeats, warmup=0 if dry else 2)
    worst = min(r["psnr_vs_float32_db"] for r in rows)
    return {"rows": rows, "bar_40db_met": bool(worst >= 40.0)}


def _tiny_images(path: Path, n: int, resolution: int, seed: int) -> str:
    """Smooth random images (a dry run's stand-in data set) as ``.npy``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    up = np.repeat(np.repeat(base, resolution // 4, axis=1), resolution // 4, axis=2)
    np.save(path, up.astype(np.uint8))
    return str(path)


def _materialize(source: str | None, work: Path) -> str | None:
    """``source`` as a path ``load_images`` reads: an ``.npy.xz`` (how data travels compactly) is unpacked."""
    if source is None or not source.endswith(".xz"):
        return source
    import lzma

    target = work / Path(source).name[: -len(".xz")]
    if not target.exists():
        with lzma.open(source) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return str(target)


def _generator_config(path: Path, preset: str, batch: int | None, every_kimg: float) -> str:
    """A copy of ``preset`` with checkpoints and SWD every ``every_kimg`` (fast devices finish kimg quickly)."""
    from domrand.config import dump_yaml, load_config, replace
    from domrand.generator.train.stylegan_config import GeneratorConfig

    cfg = load_config(preset, GeneratorConfig, kind="generator")
    t = replace(cfg.training, snapshot_kimg=every_kimg, metrics_kimg=every_kimg,
                **({"batch": batch} if batch else {}))
    path.write_text(dump_yaml(replace(cfg, training=t)), encoding="utf-8")
    return str(path)


def train(work: Path, report: Report, dry: bool, device: str, target: str | None, sim: str | None,
          batch: int | None, inverter_batch_scale: int, calibration_kimg: float | None = None) -> dict[str, Any]:
    """Generator (calibrated to the time left), inverter, bundle; artifacts kept under ``work/artifacts``."""
    runs = work / "runs"
    art = work / "artifacts"
    art.mkdir(exist_ok=True)
    if dry:
        target = target or _tiny_images(work / "target_tiny.npy", 32, 16, 1)
        sim = sim or _tiny_images(work / "sim_tiny.npy", 32, 16, 2)
    if not target or not sim:
        return {"status": "skipped", "reason": "no --target-data/--sim-data given"}
    target, sim = _materialize(target, work), _materialize(sim, work)
    preset = "tiny" if dry else "small64"
    g_cfg = _generator_config(work / "generator_config.yaml", preset, batch, 0.25 if dry else 25)
    g_run, e_run, bundle = runs / "G", runs / "E", art / "bundle"
    result: dict[str, Any] = {"preset": preset, "target_data": target, "sim_data": sim}
    budget = report.left() - (20 if dry else 45)  # leave time to pack
    g_seconds = 0.6 * budget
    started = time.monotonic()
    calib_kimg = calibration_kimg or (0.25 if dry else 4.0)
    common = ["--device", device, "--seed", "0", "--no-progress"]
    code, text = _run(_domrand("train-generator", "--data", target, "--config", g_cfg, "--out", str(g_run),
                               "--kimg", str(calib_kimg), *common), work / "train_generator_calibration.log", g_seconds)
    if code != 0:
        raise RuntimeError(f"train-generator calibration failed (exit {code}); see train_generator_calibration.log")
    rate = float(re.findall(r"at ([\d.]+) img/s", text)[-1])
    result["inverter_smoke"] = _inverter_smoke(work, g_run, preset, target, sim, device)
    left = g_seconds - (time.monotonic() - started)
    kimg = 0.5 if dry else max(calib_kimg, round(calib_kimg + 0.75 * rate * left / 1000.0, 1))
    result["generator"] = {"calibration_img_per_s": rate, "planned_kimg": kimg}
    if kimg > calib_kimg:
        code, text = _run(_domrand("train-generator", "--out", str(g_run), "--resume", "--kimg", str(kimg), *common),
                          work / "train_generator.log", left + 60)
        if code != 0:  # cut short (e.g. the plan overshot): its newest snapshot still makes a bundle
            result["generator"]["note"] = f"train-generator exit {code}; the newest snapshot is used"
            if not (g_run / "G_ema.safetensors").is_file():
                raise RuntimeError(f"train-generator failed (exit {code}); see train_generator.log")
    result["generator"].update(_generator_summary(g_run, text))
    _keep_run_files(g_run, "G", art)
    shutil.copy(g_run / "G_ema.safetensors", art / "G_ema.safetensors")
    if result["inverter_smoke"]["exit_code"] != 0:
        raise RuntimeError("the inverter smoke run failed (see train_inverter_smoke.log); generator kept in artifacts/")
    e_minutes = max(0.1, (report.left() - (15 if dry else 40)) / 60.0)
    sets = ["training.metrics_kimg=0.5", "training.snapshot_kimg=0.5"] if dry else [
        "training.metrics_kimg=10", "training.snapshot_kimg=10",
        f"training.gen_batch={16 * inverter_batch_scale}", f"training.target_batch={8 * inverter_batch_scale}",
        f"training.sim_batch={8 * inverter_batch_scale}"]
    e_args = ["train-inverter", "--generator", str(g_run), "--config", preset, "--out", str(e_run),
              "--target-data", target, "--sim-data", sim, "--kimg", "0.5" if dry else "1000",
              "--max-minutes", f"{e_minutes:.2f}", "--device", device, "--seed", "0", "--no-progress"]
    for s in sets:
        e_args += ["--set", s]
    code, text = _run(_domrand(*e_args), work / "train_inverter.log", e_minutes * 60 + 90)
    if code != 0:
        raise RuntimeError(f"train-inverter failed (exit {code}); see train_inverter.log")
    result["inverter"] = {"minutes": round(e_minutes, 2), "last_lines": text.strip().splitlines()[-3:]}
    code, text = _run(_domrand("bundle", "--generator", str(g_run), "--inverter", str(e_run), "--out", str(bundle),
                               "--note", f"gpu_check {'dry run' if dry else 'on ' + device}: {json.dumps(result['generator'])}"),
                      work / "bundle.log", 120)
    if code != 0:
        raise RuntimeError(f"bundle failed (exit {code}); see bundle.log")
    _keep_run_files(e_run, "E", art)
    (art / "G_ema.safetensors").unlink()  # the bundle holds it now
    result["bundle_files"] = {p.name: p.stat().st_size for p in sorted(bundle.iterdir())}
    return result


def _inverter_smoke(work: Path, g_run: Path, preset: str, target: str, sim: str, device: str) -> dict[str, Any]:
    """A few inverter steps on the calibration generator: finds device-specific failures early."""
    code, text = _run(_domrand("train-inverter", "--generator", str(g_run), "--config", preset,
                               "--out", str(work / "runs" / "E_smoke"), "--target-data", target, "--sim-data", sim,
                               "--kimg", "0.1", "--max-minutes", "0.5", "--device", device, "--seed", "0",
                               "--no-progress", "--set", "training.metrics_kimg=0.1", "--set", "training.snapshot_kimg=0.1"),
                      work / "train_inverter_smoke.log", 120)
    return {"exit_code": code, "last_lines": text.strip().splitlines()[-2:]}


def _keep_run_files(run: Path, label: str, art: Path) -> None:
    """Copy a run's metrics, config, command and newest sample sheets into the artifacts."""
    for name in ("metrics.jsonl", "config.yaml", "command.txt"):
        if (run / name).is_file():
            shutil.copy(run / name, art / f"{label}_{name}")
    for png in sorted(run.glob("*.png"))[-3:]:
        shutil.copy(png, art / f"{label}_{png.name}")


def _generator_summary(run: Path, text: str) -> dict[str, Any]:
    """Final kimg, img/s and the SWD curve of a generator run."""
    summary: dict[str, Any] = {}
    last = re.findall(r"trained to kimg ([\d.]+) \(step (\d+)\) at ([\d.]+) img/s", text)
    if last:
        summary.update(kimg=float(last[-1][0]), steps=int(last[-1][1]), img_per_s=float(last[-1][2]))
    curve = []
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") == "swd":
                curve.append([record.get("kimg"), record.get("swd_mean")])
    summary["swd_curve"] = curve
    return summary


def pack(work: Path, out: Path) -> dict[str, Any]:
    """``work/artifacts`` plus the step logs -> ``out/artifacts.tar.partNN`` (< 15 MiB each) + SHA-256 sum."""
    tar_path = work / "artifacts.tar"
    with tarfile.open(tar_path, "w") as tar:
        if (work / "artifacts").is_dir():
            tar.add(work / "artifacts", arcname="artifacts")
        for log in sorted(work.glob("*.log")) + sorted(work.glob("*.yaml")):
            tar.add(log, arcname=f"logs/{log.name}")
    data = tar_path.read_bytes()
    tar_path.unlink()
    parts = {}
    for i in range(0, max(len(data), 1), PART_BYTES):
        part = out / f"artifacts.tar.part{i // PART_BYTES:02d}"
        part.write_bytes(data[i : i + PART_BYTES])
        parts[part.name] = len(data[i : i + PART_BYTES])
    digest = hashlib.sha256(data).hexdigest()
    (out / "artifacts.tar.sha256").write_text(f"{digest}  artifacts.tar\n", encoding="utf-8")
    return {"parts": parts, "sha256": digest,
            "unpack": "cat artifacts.tar.part* > artifacts.tar && sha256sum -c artifacts.tar.sha256 && tar xf artifacts.tar"}


# --------------------------------------------------------------------------------------------


def run_gpu_check(
    out: str | Path,
    work: str | Path | None = None,
    *,
    dry: bool = False,
    minutes: float = 9.0,
    target_data: str | None = None,
    sim_data: str | None = None,
    batch: int = 64,
    inverter_batch_scale: int = 4,
    skip: tuple[str, ...] = (),
) -> int:
    """Run every step within ``minutes`` and write ``out/report.json`` and the packed artifacts;
    0 when every step passed or was skipped (``dry``: on the CPU at toy sizes)."""
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    out = Path(out).resolve()
    work = Path(work).resolve() if work else out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report = Report(out, dry, time.monotonic() + minutes * 60)
    device = "cpu" if dry else "cuda"
    skip_set = {s.strip() for s in skip if s.strip()}
    if not dry:
        os.environ.setdefault("DOMRAND_OPS", "auto")
    steps: list[tuple[str, Callable[[], dict[str, Any]], float]] = [
        ("environment", lambda: environment(device), 0),
        ("pytest_gpu", lambda: pytest_gpu(work, min(240.0, report.left() * 0.3)), 30),
        ("bench_randomizer", lambda: bench_randomizer(work, dry, min(150.0, report.left() * 0.25)), 20),
        ("precision", lambda: precision(dry, device, _materialize(sim_data, work)), 15),
        ("train", lambda: train(work, report, dry, device, target_data, sim_data,
                                None if dry else batch, inverter_batch_scale), 60 if not dry else 5),
        ("pack", lambda: pack(work, out), 0),
    ]
    for name, fn, need in steps:
        if name in skip_set:
            report.data["steps"][name] = {"status": "skipped", "reason": "--skip"}
            continue
        report.step(name, fn, min_seconds=need)
    statuses = {name: rec["status"] for name, rec in report.data["steps"].items()}
    report.data["summary"] = statuses
    report.save()
    print(json.dumps(statuses))
    return 0 if all(s in ("ok", "skipped") for s in statuses.values()) else 1


if __name__ == "__main__":  # pragma: no cover  (the old entry point: python -m domrand.gpu_check)
    from domrand.cli import main as cli_main

    sys.exit(cli_main(["gpu-check", *sys.argv[1:]]))
