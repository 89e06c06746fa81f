"""Training runs survive corruption and kills: checksummed checkpoints, resume falls back to the
newest intact one (saying so), a killed run's temporary files are removed, metrics.jsonl has no
duplicates after a resume, a changed data set-up is refused, garbage datasets are clear errors."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand import checkpoint
from domrand.config import load_config, replace
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.train import runs
from domrand.generator.nn.networks import Discriminator, Generator
from domrand.generator.train.stylegan import resolve_config, train

BATCH = 8  # the tiny preset's batch


def _cfg(**changes):
    """tiny, a checkpoint every 2 steps (all kept), a log record every step, a 16-image SWD."""
    base = {
        "training.snapshot_kimg": 2 * BATCH / 1000,
        "training.metrics_kimg": 100.0,
        "training.keep_snapshots": 10,
        "training.swd_images": 16,
        "training.log_steps": 1,
    }
    return replace(resolve_config("tiny"), **(base | changes))


def _data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)


_KW = dict(device="cpu", seed=0, progress=False, eval_at_start=False, tensorboard=False)


def _flip(path: Path, at: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / runs.METRICS).read_text().splitlines()]


def _assert_no_duplicate_records(run: Path) -> None:
    keys = [(r.get("kind"), r["step"]) for r in _records(run)]
    assert len(keys) == len(set(keys)), keys


def test_training_checkpoints_carry_checksums(tmp_path: Path) -> None:
    data_file = tmp_path / "data.npy"
    np.save(data_file, _data())
    train(_cfg(), str(data_file), tmp_path / "run", kimg=2 * BATCH / 1000, **_KW)
    ckpt = runs.latest_checkpoint(tmp_path / "run")
    for name in runs.CHECKPOINT_FILES:
        assert checkpoint.file_checksum(ckpt / name).startswith("sha256:")
    _, meta = checkpoint.load_tensors(ckpt / "train_state.safetensors")
    assert meta["data"] == str(data_file.resolve())  # stored resolved


def test_corrupt_newest_checkpoint_falls_back_and_metrics_have_no_duplicates(tmp_path: Path, capsys) -> None:
    run, data = tmp_path / "run", _data()
    train(_cfg(), data, run, kimg=4 * BATCH / 1000, **_KW)
    found = runs.list_checkpoints(run)
    assert [round(k * 1000) for k, _ in found] == [16, 32]
    _flip(found[-1][1] / "D.safetensors")
    # what a kill inside a checkpoint write leaves: a .tmp-* dir holding a half-written file
    half = run / runs.CHECKPOINTS / ".tmp-kimg-000000.048-x1y2" / ".G.safetensors.abc123.tmp"
    half.parent.mkdir()
    half.write_bytes(b"partial")
    assert runs.verify_checkpoint(found[-1][1]) is not None and runs.verify_checkpoint(found[0][1]) is None
    capsys.readouterr()
    result = train(None, data, run, kimg=6 * BATCH / 1000, resume=True, **_KW)
    err = capsys.readouterr().err
    assert f"checkpoint {found[-1][1]} is corrupt" in err and "falling back to the newest intact checkpoint" in err
    assert f"resumed {found[0][1]} (step 2," in err
    assert f"removed {half.parent}, left by an interrupted run" in err and not half.parent.exists()
    assert result.step == 6
    _assert_no_duplicate_records(run)
    assert [r["step"] for r in _records(run) if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_every_checkpoint_corrupt_is_a_clear_error(tmp_path: Path) -> None:
    run, data = tmp_path / "run", _data()
    train(_cfg(), data, run, kimg=2 * BATCH / 1000, **_KW)
    for _, d in runs.list_checkpoints(run):
        _flip(d / "G.safetensors")
    with pytest.raises(ValueError, match="--resume: no intact checkpoint in"):
        train(None, data, run, kimg=4 * BATCH / 1000, resume=True, **_KW)


def test_resume_refuses_other_data_unless_allowed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_cfg(), _data(0), run, kimg=2 * BATCH / 1000, **_KW)
    with pytest.raises(ValueError, match="differs from the one .* was trained on .*--allow-changes"):
        train(None, _data(1), run, kimg=4 * BATCH / 1000, resume=True, **_KW)
    result = train(None, _data(1), run, kimg=4 * BATCH / 1000, resume=True, allow_changes=True, **_KW)
    assert result.step == 4


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import torch
    from domrand import checkpoint, utils
    from domrand.config import replace
    from domrand.generator.train.stylegan import resolve_config, train

    torch.set_num_threads(1)
    calls = [0]
    real = checkpoint.atomic_write_bytes

    def dying(path, data):  # the KILL_AT-th atomic write dies half-way, like SIGKILL
        calls[0] += 1
        if calls[0] == int(sys.argv[2]):
            with utils.atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data)

    checkpoint.atomic_write_bytes = dying
    cfg = replace(resolve_config("tiny"), **{
        "training.snapshot_kimg": 0.016, "training.metrics_kimg": 100.0, "training.keep_snapshots": 10,
        "training.swd_images": 16, "training.log_steps": 1})
    data = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    train(cfg, data, sys.argv[1], kimg=0.048, device="cpu", seed=0, progress=False, eval_at_start=False,
          tensorboard=False)
    """
)


def test_kill_during_write_then_resume(tmp_path: Path, capsys) -> None:
    """A run SIGKILLed while writing G_ema.safetensors (after its first checkpoint) leaves a
    ``.G_ema.safetensors.*.tmp``; the resume removes it, continues the newest intact checkpoint, and
    metrics.jsonl has no duplicates."""
    kill_at, where = 5, "writing G_ema.safetensors"  # writes 1-4: the first checkpoint's files
    run = tmp_path / "run"
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(run), str(kill_at)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    leftovers = [p for p in run.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    assert leftovers, f"the kill {where} left no temporary file"
    found = runs.list_checkpoints(run)
    assert [round(k * 1000) for k, _ in found] == [16]
    capsys.readouterr()
    data = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    result = train(None, data, run, kimg=6 * BATCH / 1000, resume=True, **_KW)
    err = capsys.readouterr().err
    assert "left by an interrupted run" in err and f"resumed {found[0][1]}" in err
    assert result.step == 6
    assert not [p for p in run.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    _assert_no_duplicate_records(run)
    checkpoint.load_network(run / runs.G_EMA, "Generator")  # the shipped file is intact


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage" * 20,
        pickle.dumps({"images": [1, 2, 3]}),
        b"\x93NUMPY\x01\x00\xff\xff{'descr': '<u1', 'fortran_order': False, 'shape': (10, 16, 16, 3), }",
    ],
    ids=["garbage", "pickle", "truncated-header"],
)
def test_garbage_npy_dataset_is_a_domrand_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    from domrand.generator.train.dataset import load_images

    path = tmp_path / "images.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        load_images(path, 16, cache_dir=tmp_path / "cache", min_images=1, progress=False)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "accepted:" in msg
    assert "allow_pickle" not in msg and "\n" not in msg


def test_object_array_npy_is_refused_without_numpys_pickle_advice(tmp_path: Path) -> None:
    from domrand.generator.train.dataset import load_images

    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="it holds Python objects \\(pickled data\\), which domrand refuses") as exc:
        load_images(path, 16, cache_dir=tmp_path / "cache", min_images=1, progress=False)
    assert "allow_pickle" not in str(exc.value)


# ---- the inverter's runs ------------------------------------------------------------------


def _generator_run(root: Path) -> Path:
    torch.manual_seed(0)
    net = load_config("tiny", GeneratorConfig).network
    run = root / "grun"
    checkpoint.save_network(run / "G_ema.safetensors", Generator(net).eval())
    checkpoint.save_network(run / "checkpoints" / "kimg-000001" / "D.safetensors", Discriminator(net))
    return run


def _inverter_cli(argv: list[str]) -> int:
    from domrand.commands import train_inverter as inverter_cli

    parser = argparse.ArgumentParser()
    inverter_cli.add_arguments(parser)
    return inverter_cli.main(parser.parse_args(argv))


def test_inverter_resume_keeps_its_data_setup(tmp_path: Path, capsys) -> None:
    grun = _generator_run(tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "target.npy", rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    np.save(tmp_path / "sim.npy", rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
    np.save(tmp_path / "other.npy", rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    run = tmp_path / "inv"
    sets = ["--set", "training.gen_batch=4", "--set", "training.target_batch=2", "--set", "training.sim_batch=2",
            "--set", "training.eval_images=8", "--set", "training.snapshot_kimg=0.008", "--set", "training.keep_snapshots=5"]
    base = ["--generator", str(grun), "--out", str(run), "--no-progress", "--device", "cpu"]
    data = ["--target-data", str(tmp_path / "target.npy"), "--sim-data", str(tmp_path / "sim.npy")]
    assert _inverter_cli(base + data + ["--config", "tiny", "--kimg", "0.016"] + sets) == 0
    info = checkpoint.read_network_info(run / "E.safetensors")
    assert info["extra"]["generator_source"] == str((grun / "G_ema.safetensors").resolve())
    # --resume without the data: the run's own data, said so
    capsys.readouterr()
    assert _inverter_cli(base + ["--kimg", "0.024", "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"--target-data not given; using the run's {(tmp_path / 'target.npy').resolve()}" in err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "loss/structure" in records[-1]  # the sim-frame losses are still on
    # other data: refused unless --allow-changes
    other = ["--target-data", str(tmp_path / "other.npy")]
    with pytest.raises(ValueError, match="--target-data .* differs from what .* was trained on; .*--allow-changes"):
        _inverter_cli(base + other + ["--kimg", "0.032", "--resume"])
    # a corrupt newest checkpoint: the resume falls back, and metrics.jsonl keeps one record per step
    newest = runs.list_checkpoints(run, ["E.safetensors", "train_state.safetensors"])[-1][1]
    _flip(newest / "train_state.safetensors")
    capsys.readouterr()
    assert _inverter_cli(base + other + ["--kimg", "0.032", "--resume", "--allow-changes"]) == 0
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is corrupt" in err and "changed (--allow-changes)" in err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)), steps
