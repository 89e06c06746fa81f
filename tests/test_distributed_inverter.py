"""Data-parallel inverter training on CPU with gloo (``torchrun ... -m domrand train-inverter``).

As for the generator (``tests/test_distributed.py``), a 2-rank run is not the same numbers as a
1-process run of the same global batch: each rank draws ``batch / world_size`` of every sub-batch
from its own RNG (seeded from ``(seed, rank)``) and its own shard of the target and sim images.
What is checked instead:

* a real 2-process gloo run under torchrun ends with the same E, to float tolerance, as a
  single-process reference running the two ranks in lock step (threads, in-memory all-reduce),
  and its logged losses and held-out metrics are the reference's (reduced over ranks);
* E is identical on the two (reference) ranks; the checkpoint holds both ranks' RNG states;
* exactly one set of files is written;
* the 2-rank checkpoint resumes on 1 process (RNG re-derived, deterministically);
* batch sizes that do not split over the ranks give a clear error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand import checkpoint
from domrand.config import load_config, replace
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.train.inverter import InverterConfig
from domrand.generator.train.inverter import CHECKPOINTS, InverterTrainer, train_inverter
from domrand.generator.nn.networks import Discriminator, Generator
from dist_helpers import ThreadGroup, free_port

STEPS = 4  # of 8 images: gen 4 + target 2 + sim 2 (per rank 2 + 1 + 1)
SETS = {"training.gen_batch": 4, "training.target_batch": 2, "training.sim_batch": 2, "training.eval_images": 8,
        "training.snapshot_kimg": 0.016, "training.metrics_kimg": 0.016}  # fmt: skip


def _setup(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    gcfg = load_config("tiny", GeneratorConfig).network
    G = Generator(gcfg).eval()
    D = Discriminator(gcfg)
    run = root / "grun"
    checkpoint.save_network(run / "G_ema.safetensors", G)
    checkpoint.save_network(run / "checkpoints" / "kimg-000001" / "D.safetensors", D)
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)  # 6 held out, 18 = 2 x 9 to train
    sim = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.save(root / "target.npy", target)
    np.save(root / "sim.npy", sim)
    return run, target, sim


def _cfg() -> InverterConfig:
    return replace(load_config("tiny", InverterConfig, kind="inverter"), **SETS)


def _lockstep_reference(grun: Path, target, sim, seed: int) -> list[tuple[InverterTrainer, list, dict]]:
    group = ThreadGroup(2)
    # Networks are built here, not in the threads: building one draws from torch's global RNG,
    # which would race with the other thread's seeded initialization of E.
    nets = [(checkpoint.load_network(grun / "G_ema.safetensors", "Generator"),
             checkpoint.load_network(grun / "checkpoints" / "kimg-000001" / "D.safetensors", "Discriminator"))
            for _ in range(2)]  # fmt: skip

    def fn(rank: int, reduce):
        G, D = nets[rank]
        tr = InverterTrainer(G, _cfg(), None, D=D, target_images=target, sim_images=sim, seed=seed,
                             rank=rank, world_size=2, reduce=reduce)  # fmt: skip
        logs = [tr.train_step() for _ in range(STEPS)]
        return tr, logs, tr.evaluate()

    return group.run(fn)


def test_torchrun_two_ranks_matches_lockstep_reference_and_resumes_on_one(tmp_path: Path, capsys) -> None:
    grun, target, sim = _setup(tmp_path)
    out = tmp_path / "run"
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "domrand", "train-inverter", "--generator", str(grun), "--config", "tiny", "--out", str(out),
        "--target-data", str(tmp_path / "target.npy"), "--sim-data", str(tmp_path / "sim.npy"),
        "--kimg", str(STEPS * 8 / 1000), "--seed", "3", "--device", "cpu", "--threads", "1", "--no-progress", *sets,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # while the two workers run, compute the single-process reference here
        ref = _lockstep_reference(grun, target, sim, seed=3)
    finally:
        log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log
    assert log.count("train-inverter: done") == 1 and "2 ranks" in log, log  # only rank 0 reports

    # The reference ranks agree with each other.
    (t0, logs0, ev0), (t1, logs1, ev1) = ref
    a, b = t0.E.state_dict(), t1.E.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), f"E.{key} differs between ranks"
    assert logs0 == logs1 and ev0 == ev1
    assert not torch.equal(t0.rng.get_state(), t1.rng.get_state())  # but they drew different samples

    # The torchrun run ends where the reference does.
    shipped = checkpoint.load_network(out / "E.safetensors", "Inverter").state_dict()
    diff = max(float((shipped[k] - v).abs().max()) for k, v in a.items())
    print(f"torchrun vs lock-step reference: max |E difference| = {diff:.3g}")
    assert diff <= 1e-5, diff
    last = out / CHECKPOINTS / "kimg-000000.032"
    tensors, meta = checkpoint.load_tensors(last / "train_state.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == STEPS and meta["images_seen"] == STEPS * 8
    assert torch.equal(tensors["rng_state"], t0.rng.get_state())
    assert torch.equal(tensors["rng_state/rank1"], t1.rng.get_state())

    # One set of files; the logged values are the ranks' means (those of the reference).
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == ["kimg-000000.016", "kimg-000000.032"]
    assert len(list(out.glob("recon_*.png"))) == 2
    assert len((out / "command.txt").read_text().splitlines()) == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    mean_total = (logs0[2]["loss/total"] + logs0[3]["loss/total"]) / 2
    assert records[-1]["loss/total"] == pytest.approx(mean_total, rel=1e-5)
    for key in ("psnr/gen", "ssim/gen", "psnr/target", "ssim/target"):
        assert records[-1][key] == pytest.approx(ev0[key], rel=1e-5, abs=1e-6), key
    assert not list(tmp_path.glob("**/*.tmp*"))

    # The 2-rank checkpoint resumes on 1 process: RNG re-derived, deterministic, training goes on.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    kw = dict(target_data=tmp_path / "target.npy", sim_data=tmp_path / "sim.npy", kimg=(STEPS + 2) * 8 / 1000,
              resume=True, seed=3, device="cpu", progress=False)  # fmt: skip
    capsys.readouterr()
    r1 = train_inverter(grun, None, out, **kw)
    assert "re-derived" in capsys.readouterr().err
    r2 = train_inverter(grun, None, copy, **kw)
    assert r1["step"] == r2["step"] == STEPS + 2 and r1["loss/total"] == r2["loss/total"]
    e1 = checkpoint.load_network(out / "E.safetensors", "Inverter").state_dict()
    e2 = checkpoint.load_network(copy / "E.safetensors", "Inverter").state_dict()
    assert all(torch.equal(e1[k], e2[k]) for k in e1)
    assert any(not torch.equal(e1[k], shipped[k]) for k in e1)  # the two extra steps trained E
    _, meta = checkpoint.load_tensors(out / CHECKPOINTS / "kimg-000000.048" / "train_state.safetensors")
    assert meta["world_size"] == 1 and meta["step"] == STEPS + 2


def test_batches_must_split_evenly(tmp_path: Path) -> None:
    grun, target, sim = _setup(tmp_path)
    G = checkpoint.load_network(grun / "G_ema.safetensors", "Generator")
    with pytest.raises(ValueError, match=r"training.gen_batch=4 must be divisible by world_size=3"):
        InverterTrainer(G, _cfg(), None, seed=0, rank=0, world_size=3, reduce=lambda t: t)
    cfg = replace(_cfg(), **{"training.gen_batch": 6})  # target_batch=2 only matters with target images
    InverterTrainer(G, cfg, None, seed=0, rank=1, world_size=3, reduce=lambda t: t)
    with pytest.raises(ValueError, match=r"training.target_batch=2 must be divisible by world_size=3"):
        InverterTrainer(G, cfg, None, target_images=target, seed=0, rank=1, world_size=3, reduce=lambda t: t)


def test_two_rank_resume_on_two_ranks_is_exact(tmp_path: Path) -> None:
    """2 ranks x 4 steps == 2 ranks x 2 steps + resume + 2 more (ranks as threads, same code path)."""
    grun, _, _ = _setup(tmp_path)
    data = dict(target_data=tmp_path / "target.npy", sim_data=tmp_path / "sim.npy")

    def train_ranks(out: Path, steps: int, resume: bool) -> list[dict]:
        group = ThreadGroup(2)

        def fn(rank: int, reduce):
            return train_inverter(grun, None if resume else _cfg(), out, kimg=steps * 8 / 1000, resume=resume, seed=1,
                                  device="cpu", progress=False, rank=rank, world_size=2, reduce=reduce, **data)  # fmt: skip

        return group.run(fn)

    a = train_ranks(tmp_path / "a", 4, resume=False)
    train_ranks(tmp_path / "b", 2, resume=False)
    b = train_ranks(tmp_path / "b", 4, resume=True)
    for r in a + b:
        r.pop("sec")  # wall time, per rank
    assert a[0] == a[1] and b[0] == b[1]  # reduced logs and metrics: the same on every rank
    assert a[0]["loss/total"] == pytest.approx(b[0]["loss/total"], rel=1e-6)
    ea = checkpoint.load_network(tmp_path / "a" / "E.safetensors", "Inverter").state_dict()
    eb = checkpoint.load_network(tmp_path / "b" / "E.safetensors", "Inverter").state_dict()
    for key in ea:
        assert torch.allclose(ea[key], eb[key], rtol=0, atol=1e-6), key
    ta, _ = checkpoint.load_tensors(tmp_path / "a" / CHECKPOINTS / "kimg-000000.032" / "train_state.safetensors")
    tb, _ = checkpoint.load_tensors(tmp_path / "b" / CHECKPOINTS / "kimg-000000.032" / "train_state.safetensors")
    assert torch.equal(ta["rng_state/rank1"], tb["rng_state/rank1"])  # rank 1's RNG was restored, not re-derived
