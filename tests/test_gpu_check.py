"""The prepared GPU check (scripts/gpu_check.sh -> domrand.gpu_check) in its CPU dry mode: every step
runs at toy size, the report is complete, and the packed bundle comes back intact and loads."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from domrand import gpu_check

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, GPU_CHECK_MINUTES="6", OMP_NUM_THREADS="1", GPU_CHECK_WORK=str(tmp_path / "work"))
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--dry"], env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dry"] is True
    assert report["summary"] == {k: "ok" for k in
                                 ("environment", "pytest_gpu", "bench_randomizer", "precision", "train", "pack")}
    steps = report["steps"]
    assert steps["pytest_gpu"]["counts"].get("skipped", 0) > 0  # the GPU tests were collected, and skip on CPU
    assert {r["batch"] for r in steps["bench_randomizer"]["rows"]} == {1.0, 2.0}
    rows = {r["dtype"]: r for r in steps["precision"]["rows"]}
    assert rows["float32"]["psnr_vs_float32_db"] == 99.0 and rows["bfloat16"]["psnr_vs_float32_db"] < 99.0
    gen = steps["train"]["generator"]
    assert gen["kimg"] > 0 and len(gen["swd_curve"]) >= 2

    # Only small files come back: report, log, tar parts, checksum.
    names = sorted(p.name for p in out.iterdir())
    assert names == ["artifacts.tar.part00", "artifacts.tar.sha256", "gpu_check.log", "report.json"]
    data = b"".join(p.read_bytes() for p in sorted(out.glob("artifacts.tar.part*")))
    assert hashlib.sha256(data).hexdigest() == (out / "artifacts.tar.sha256").read_text().split()[0]
    (tmp_path / "a.tar").write_bytes(data)
    with tarfile.open(tmp_path / "a.tar") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    from domrand.randomizer import StyleRandomizer

    R = StyleRandomizer.from_bundle(tmp_path / "unpacked" / "artifacts" / "bundle", device="cpu", seed=0)
    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert R.randomize(frame).shape == (16, 16, 3)
    assert (tmp_path / "unpacked" / "logs" / "train_inverter.log").is_file()


def test_a_failing_step_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    report = gpu_check.Report(tmp_path, dry=True, deadline=1e12)

    def broken() -> dict:
        raise RuntimeError("kernel exploded")

    rec = report.step("broken", broken)
    assert rec["status"] == "failed" and "kernel exploded" in rec["error"]
    assert report.step("fine", lambda: {"x": 1})["status"] == "ok"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["steps"]["broken"]["status"] == "failed" and saved["steps"]["fine"]["x"] == 1


def test_a_step_without_time_left_is_skipped(tmp_path):
    import time

    report = gpu_check.Report(tmp_path, dry=True, deadline=time.monotonic() + 5)
    rec = report.step("slow", lambda: {"ran": True}, min_seconds=60)
    assert rec["status"] == "skipped" and "ran" not in rec


def test_pack_splits_into_parts_that_reassemble(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "PART_BYTES", 1000)
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "artifacts").mkdir(parents=True)
    out.mkdir()
    payload = np.random.default_rng(1).bytes(3500)
    (work / "artifacts" / "blob.bin").write_bytes(payload)
    info = gpu_check.pack(work, out)
    assert len(info["parts"]) >= 4 and all(size <= 1000 for size in info["parts"].values())
    data = b"".join((out / name).read_bytes() for name in sorted(info["parts"]))
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    (tmp_path / "x.tar").write_bytes(data)
    with tarfile.open(tmp_path / "x.tar") as tar:
        assert tar.extractfile("artifacts/blob.bin").read() == payload
