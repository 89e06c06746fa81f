"""Data-parallel generator training (issue 10) on CPU with gloo.

Why a 2-rank run is not compared with a plain 1-process run of the same global batch: each rank
draws its ``batch / world_size`` samples from its own random streams (seeded from ``seed`` and
its rank) and from its own data shard (images ``rank::world_size``), and the discriminator's
minibatch-std groups are formed within a rank's local batch. A 2-rank run is therefore another
(equally valid) sample of the same training distribution, not the same numbers as 1 rank.

What is checked instead:
* the real thing (``torchrun`` = ``python -m torch.distributed.run``, 2 processes, gloo on
  127.0.0.1) ends with the same G_ema, to float tolerance, as a single-process reference that
  runs the two ranks' streams in lock step (two threads, an in-memory all-reduce); so the engine
  adds exactly the averaging and nothing else;
* parameters and buffers are identical on every rank after training;
* one set of files is written (one log record per logging step, one checkpoint per snapshot);
* a 2-rank checkpoint resumes on 1 process (streams re-derived, deterministic), and resuming on the
  same number of ranks is exact;
* the global-batch check (batch % world_size) gives a clear error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand.checkpoint import load_network, load_tensors
from domrand.config import dump_yaml, replace
from domrand.generator.train import runs
from domrand.generator.train.stylegan import Trainer, resolve_config, train
from dist_helpers import ThreadGroup, free_port

sys.path.insert(0, str(Path(__file__).parent))
from test_train import shapes_dataset  # noqa: E402

STEPS = 6


def _cfg():
    """tiny with R1, path length and the ADA update all firing within a few steps (p grows)."""
    changes = {
        "training.r1_interval": 2,
        "training.pl_interval": 2,
        "training.ada_interval": 2,
        "training.ada_target": -1.0,
        "training.ada_kimg": 0.5,
        "training.snapshot_kimg": 100.0,
        "training.metrics_kimg": 100.0,
        "training.swd_images": 40,  # 2 chunks of 32: one per rank
        "training.log_steps": 2,
    }
    return replace(resolve_config("tiny"), **changes)


def _lockstep_reference(cfg, data: np.ndarray, steps: int, seed: int) -> list[Trainer]:
    group = ThreadGroup(2)

    def fn(rank: int, reduce) -> Trainer:
        trainer = Trainer(cfg, data, device="cpu", seed=seed, rank=rank, world_size=2, reduce=reduce)
        for _ in range(steps):
            trainer.train_step()
        return trainer

    return group.run(fn)


def test_torchrun_two_ranks_gloo_matches_lockstep_reference(tmp_path: Path) -> None:
    cfg = _cfg()
    data = shapes_dataset(32)
    np.save(tmp_path / "data.npy", data)
    (tmp_path / "cfg.yaml").write_text(dump_yaml(cfg))
    out = tmp_path / "run"
    kimg = STEPS * cfg.training.batch / 1000
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "domrand", "train-generator", "--data", str(tmp_path / "data.npy"), "--config", str(tmp_path / "cfg.yaml"),
        "--out", str(out), "--kimg", str(kimg), "--seed", "5", "--device", "cpu", "--threads", "1", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # While the two workers run, compute the single-process reference here.
    ref = _lockstep_reference(cfg, data, STEPS, seed=5)
    log, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, log
    assert "2 ranks" in log and log.count("trained to kimg") == 1, log  # only rank 0 reports

    # Identical weights and buffers on both (reference) ranks.
    for name in ("G", "D", "G_ema"):
        a, b = getattr(ref[0], name).state_dict(), getattr(ref[1], name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs between ranks"
    assert torch.equal(ref[0].pl.pl_mean, ref[1].pl.pl_mean) and float(ref[0].augment.p) > 0

    # The torchrun run ends where the reference does.
    shipped = load_network(out / runs.G_EMA, "Generator").state_dict()
    diff = max(float((shipped[k] - v).abs().max()) for k, v in ref[0].G_ema.state_dict().items())
    print(f"torchrun vs lock-step reference: max |G_ema difference| = {diff:.3g}")
    assert diff <= 1e-5, diff
    tensors, meta = load_tensors(out / runs.CHECKPOINTS / "kimg-000000.048" / "train_state.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == STEPS
    assert torch.equal(tensors["ada_p"], ref[0].augment.p.detach())
    for name, gen in ref[1].gens.items():  # rank 1's streams are in the checkpoint too
        assert torch.equal(tensors[f"gen/rank1/{name}"], gen.get_state())

    # One set of files: one checkpoint, one record per logging step, one command line.
    assert [p.name for p in (out / runs.CHECKPOINTS).iterdir()] == ["kimg-000000.048"]
    records = [json.loads(line) for line in (out / runs.METRICS).read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == [2, 4, 6]
    # SWD: the ranks rendered half the fakes each; the score is the one a single process computes.
    swd_final = [r for r in records if r["kind"] == "swd"][-1]
    assert swd_final["step"] == STEPS
    assert swd_final["swd_mean"] == pytest.approx(ref[0].evaluate_swd()["mean"], rel=1e-6)
    assert len((out / runs.COMMAND).read_text().splitlines()) == 1
    assert not list(tmp_path.glob("**/*.tmp*"))

    # Resume the 2-rank checkpoint on 1 process: streams re-derived, deterministic, training goes on.
    more = (STEPS + 2) * cfg.training.batch / 1000
    kw = dict(device="cpu", seed=5, progress=False, tensorboard=False)
    r1 = train(None, None, out, kimg=more, resume=True, **kw)
    assert r1.step == STEPS + 2 and r1.trainer.resumed_streams == "rederived"
    # Same again from the same checkpoint (a copy of the run): the same result.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / runs.CHECKPOINTS / "kimg-000000.064")
    r2 = train(None, None, copy, kimg=more, resume=True, **kw)
    for key, value in r1.trainer.G_ema.state_dict().items():
        assert torch.equal(value, r2.trainer.G_ema.state_dict()[key])


def _train_ranks(cfg, data, out: Path, steps: int, resume: bool) -> list:
    group = ThreadGroup(2)
    kimg = steps * cfg.training.batch / 1000

    def fn(rank: int, reduce):
        return train(
            None if resume else cfg, data, out, kimg=kimg, resume=resume, device="cpu", seed=2, progress=False,
            eval_at_start=False, tensorboard=False, rank=rank, world_size=2, reduce=reduce,
        )  # fmt: skip

    return group.run(fn)


@pytest.mark.parametrize("progressive", [False, True])
def test_two_rank_resume_on_two_ranks_is_exact(tmp_path: Path, progressive: bool) -> None:
    """2 ranks x 4 steps == 2 ranks x 2 steps + resume + 2 more (ranks as threads, same code path).

    Progressive: 8 px for 1 step, fading to 16 px over 2 steps (layers unused, then used), then 16 px.
    """
    changes = {"training.snapshot_kimg": 0.016, "training.progressive": progressive,
               "training.stabilize_kimg": 0.008, "training.fade_kimg": 0.016}  # fmt: skip
    cfg = replace(_cfg(), **changes)
    data = shapes_dataset(32)
    a = _train_ranks(cfg, data, tmp_path / "a", 4, resume=False)
    _train_ranks(cfg, data, tmp_path / "b", 2, resume=False)
    b = _train_ranks(cfg, data, tmp_path / "b", 4, resume=True)
    assert all(r.trainer.resumed_streams == "restored" for r in b)
    for rank in range(2):
        ta, tb = a[rank].trainer, b[rank].trainer
        for name in ("G_ema", "G", "D"):
            sa, sb = getattr(ta, name).state_dict(), getattr(tb, name).state_dict()
            for key in sa:
                assert torch.allclose(sa[key], sb[key], rtol=0, atol=1e-6), f"rank {rank} {name}.{key}"
        assert torch.equal(ta.augment.p, tb.augment.p) and torch.equal(ta.pl.pl_mean, tb.pl.pl_mean)
    assert a[1].swd == [] and a[0].run_dir == tmp_path / "a"  # rank 1 evaluates and writes nothing


def test_global_batch_must_split_evenly() -> None:
    with pytest.raises(ValueError, match="divisible by world_size=3"):
        resolve_config("tiny", world_size=3)


def test_distributed_context_without_torchrun(monkeypatch) -> None:
    from domrand import distributed

    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.backend) == (0, 1, True, None)
    t = torch.arange(3.0)
    assert torch.equal(ctx.reduce(t), t) and ctx.reduce(t) is not t and ctx.agree(True) and not ctx.agree(False)
    assert [g.tolist() for g in ctx.all_gather(t)] == [[0.0, 1.0, 2.0]]
    ctx.barrier()
    ctx.shutdown()
    assert distributed.choose_backend(torch.device("cpu")) == "gloo"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        distributed.init("cpu")
