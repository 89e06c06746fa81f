"""The generator training system: it learns, resume is exact, runs are laid out as documented,
and the CLI gives clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from domrand import cli
from domrand.checkpoint import load_network, load_tensors, read_network_info
from domrand.config import replace
from domrand.generator.train import runs
from domrand.generator.train.stylegan import progressive_schedule, resolve_config, train


def shapes_dataset(n: int = 64, res: int = 16, seed: int = 0) -> np.ndarray:
    """Coloured discs and squares on checkered/striped noisy backgrounds: uint8 [n, res, res, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32)
    out = np.empty((n, res, res, 3), np.uint8)
    for i in range(n):
        c1, c2 = rng.uniform(0.0, 0.35, 3), rng.uniform(0.0, 0.35, 3)
        period = rng.integers(3, 6)
        if rng.random() < 0.5:
            mask = ((xx + yy) // period) % 2
        else:
            mask = ((xx // period) + (yy // period)) % 2
        img = np.where(mask[..., None] > 0, c1, c2) + rng.normal(0, 0.03, (res, res, 3))
        colour = np.zeros(3)
        colour[rng.integers(3)] = 1.0
        colour = 0.6 * colour + rng.uniform(0.3, 0.4, 3)
        cx, cy = rng.uniform(4, res - 4, 2)
        r = rng.uniform(2.5, 4.5)
        if rng.random() < 0.5:
            shape = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            shape = (abs(xx - cx) < r) & (abs(yy - cy) < r)
        img[shape] = colour
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def _write_folder(root: Path, images: np.ndarray) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        assert cv2.imwrite(str(root / f"img{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


def _fast_cfg(**changes):
    """tiny with every lazy regularizer and the ADA update firing within a few steps, p growing."""
    base = {
        "training.r1_interval": 2,
        "training.pl_interval": 2,
        "training.ada_interval": 2,
        "training.ada_target": -1.0,  # r_t > target always: p grows, so augmentation runs
        "training.ada_kimg": 0.5,
        "training.snapshot_kimg": 100.0,
        "training.metrics_kimg": 100.0,
        "training.swd_images": 16,
        "training.log_steps": 2,
    }
    base.update(changes)
    return replace(resolve_config("tiny"), **base)


# --------------------------------------------------------------------------------------------


def test_learning_tiny_swd_falls_well_below_init() -> None:
    """tiny preset, 64 synthetic 16x16 images, 64 CPU steps: SWD at least 40% below its init value."""
    cfg = replace(resolve_config("tiny"), **{"training.snapshot_kimg": 100.0, "training.metrics_kimg": 100.0})
    result = train(cfg, shapes_dataset(), None, kimg=0.512, device="cpu", seed=0, progress=False)
    (k0, swd0), (k1, swd1) = result.swd[0], result.swd[-1]
    assert k0 == 0 and k1 == pytest.approx(0.512)
    assert swd1 < 0.6 * swd0, result.swd


@pytest.mark.parametrize("progressive", [False, True])
def test_resume_is_exact(tmp_path: Path, progressive: bool) -> None:
    """train(12 steps) == train(6 steps) + resume + train(6 more) on CPU, same seed."""
    changes = {"training.progressive": progressive, "training.stabilize_kimg": 0.024, "training.fade_kimg": 0.048}
    cfg = _fast_cfg(**changes)
    data = shapes_dataset(32)
    step_kimg = cfg.training.batch / 1000
    kw = dict(device="cpu", seed=3, progress=False, eval_at_start=False, tensorboard=False)
    a = train(cfg, data, tmp_path / "a", kimg=12 * step_kimg, **kw)
    b1 = train(cfg, data, tmp_path / "b", kimg=6 * step_kimg, **kw)
    assert b1.step == 6 and runs.latest_checkpoint(tmp_path / "b").name == "kimg-000000.048"
    b2 = train(None, data, tmp_path / "b", kimg=12 * step_kimg, resume=True, **kw)
    assert a.step == b2.step == 12
    ta, tb = a.trainer, b2.trainer
    assert float(ta.augment.p) > 0  # augmentation really ran
    for name in ("G_ema", "G", "D"):
        sa, sb = getattr(ta, name).state_dict(), getattr(tb, name).state_dict()
        for key in sa:
            assert torch.allclose(sa[key], sb[key], rtol=0, atol=1e-6), f"{name}.{key}"
    assert torch.equal(ta.pl.pl_mean, tb.pl.pl_mean) and torch.equal(ta.augment.p, tb.augment.p)
    # The shipped file equals the in-memory EMA generator.
    shipped = load_network(tmp_path / "b" / runs.G_EMA, "Generator")
    for key, value in shipped.state_dict().items():
        assert torch.equal(value, tb.G_ema.state_dict()[key])
    assert read_network_info(tmp_path / "b" / runs.G_EMA)["extra"]["kimg"] == pytest.approx(12 * step_kimg)


def test_progressive_schedule() -> None:
    cfg = replace(resolve_config("tiny"), **{"training.progressive": True})  # 8 -> 16, 0.5 kimg phases
    assert progressive_schedule(0, cfg) == (8, 1.0)
    assert progressive_schedule(499, cfg) == (8, 1.0)
    assert progressive_schedule(500, cfg) == (16, 0.0)
    res, alpha = progressive_schedule(750, cfg)
    assert res == 16 and alpha == pytest.approx(0.5)
    assert progressive_schedule(5000, cfg) == (16, 1.0)
    assert progressive_schedule(0, resolve_config("tiny")) == (16, 1.0)


def test_resolve_config_auto_r1_and_validation() -> None:
    cfg = resolve_config("small64", batch=8)
    assert cfg.training.r1_gamma == pytest.approx(0.0002 * 64 * 64 / 8)
    with pytest.raises(ValueError, match="divisible"):
        resolve_config("tiny", batch=6, world_size=4)
    with pytest.raises(ValueError, match="start_resolution"):
        resolve_config(replace(resolve_config("tiny"), **{"training.start_resolution": 4}), progressive=True)


def test_runs_prune_keeps_last_k_and_best(tmp_path: Path) -> None:
    from domrand.checkpoint import save_network
    from domrand.generator.nn.networks import NetworkConfig
    from domrand.generator.nn.networks import Generator

    G = Generator(NetworkConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8))
    swds = {1: 50.0, 2: 10.0, 3: 40.0, 4: 30.0, 5: 35.0}
    for kimg, s in swds.items():

        def write(d: Path, s=s, kimg=kimg) -> None:
            for f in runs.CHECKPOINT_FILES:
                save_network(d / f, G, {"kimg": kimg, "swd": s})

        runs.write_checkpoint_dir(tmp_path, kimg, write)
    (tmp_path / "checkpoints" / "kimg-000009").mkdir()  # incomplete: ignored
    assert [k for k, _ in runs.list_checkpoints(tmp_path)] == [1, 2, 3, 4, 5]
    runs.prune_checkpoints(tmp_path, keep_last=2)
    assert [k for k, _ in runs.list_checkpoints(tmp_path)] == [2, 4, 5]
    assert runs.resolve_run_file(tmp_path) == runs.checkpoint_dir(tmp_path, 5) / runs.G_EMA
    with pytest.raises(FileNotFoundError, match="holds no generator"):
        runs.resolve_run_file(tmp_path / "checkpoints" / "kimg-000009")
    assert runs.format_kimg(0.512) == "000000.512" and runs.format_kimg(12.0) == "000012"


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_end_to_end(tmp_path: Path, capsys) -> None:
    data = _write_folder(tmp_path / "photos", shapes_dataset(16, seed=1))
    out = tmp_path / "runs" / "r1"
    common = ["--data", str(data), "--config", "configs/generator/tiny.yaml", "--device", "cpu", "--no-progress"]
    cache = ["--cache-dir", str(tmp_path / "cache")]

    assert cli.main(["train-generator", *common, *cache, "--out", str(out), "--dry-run", "--kimg", "0.5", "--progressive"]) == 0
    text = capsys.readouterr().out
    assert "kimg: 0.5" in text and "progressive: true" in text and "images: 16 x 16x16" in text
    assert not out.exists()  # dry run writes nothing

    argv = ["train-generator", *common, *cache, "--out", str(out), "--kimg", "0.016", "--batch", "4", "--seed", "2"]
    assert cli.main(argv) == 0
    assert "trained to kimg 0.016" in capsys.readouterr().out
    for name in ("config.yaml", "command.txt", "metrics.jsonl", "reals.png", "samples_000000.png",
                 "samples_000000.016.png", "swd.png", runs.G_EMA, runs.G_EMA_BEST):
        assert (out / name).is_file(), name
    ck = runs.latest_checkpoint(out)
    assert ck is not None and sorted(p.name for p in ck.iterdir()) == sorted(runs.CHECKPOINT_FILES)
    assert "--batch 4" in (out / "command.txt").read_text()
    assert "batch: 4" in (out / "config.yaml").read_text()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"train", "swd"} <= kinds
    train_rec = next(r for r in records if r["kind"] == "train")
    assert {"loss_G", "loss_D", "p", "img_per_s"} <= set(train_rec)
    tensors, meta = load_tensors(ck / "train_state.safetensors")
    assert meta["step"] == 4 and "ada_p" in tensors and "gen/z" in tensors and "rng/torch" in tensors
    assert meta["data"] == str(data.resolve())

    # Resume (data and config come from the run) to a longer total.
    assert cli.main(["train-generator", "--out", str(out), "--resume", "--kimg", "0.032", "--device", "cpu", "--no-progress", *cache]) == 0
    assert runs.latest_checkpoint(out).name == "kimg-000000.032"
    assert len((out / "command.txt").read_text().splitlines()) == 2

    # eval-generator on the run: SWD as JSON, appended to metrics.jsonl.
    capsys.readouterr()
    assert cli.main(["eval-generator", "--run", str(out), "--num-images", "16", "--device", "cpu", "--no-progress", *cache]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["kimg"] == pytest.approx(0.032) and result["swd_mean"] > 0 and "fid" not in result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated upstream
def test_eval_fid_with_a_local_torchscript_file(tmp_path: Path, capsys) -> None:
    from domrand.checkpoint import save_network
    from domrand.generator.nn.networks import NetworkConfig
    from domrand.generator.nn.networks import Generator

    class Feats(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    model = tmp_path / "fake_inception.pt"
    torch.jit.script(Feats()).save(str(model))
    gen = tmp_path / "g.safetensors"
    save_network(gen, Generator(NetworkConfig(resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8)))
    np.save(tmp_path / "data.npy", shapes_dataset(20))
    argv = ["eval-generator", "--run", str(gen), "--data", str(tmp_path / "data.npy"), "--num-images", "20", "--device", "cpu"]
    assert cli.main([*argv, "--inception", str(model), "--cache-dir", str(tmp_path / "c")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(result["fid"]) and result["fid"] > 0
    assert cli.main([*argv, "--inception", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_clear_errors(tmp_path: Path, capsys) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    base = ["train-generator", "--config", "tiny", "--device", "cpu", "--no-progress", *cache]

    assert cli.main([*base, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o1")]) == 2
    assert "does not exist" in capsys.readouterr().err

    few = _write_folder(tmp_path / "few", shapes_dataset(3))
    assert cli.main([*base, "--data", str(few), "--out", str(tmp_path / "o2")]) == 2
    assert "need at least 8" in capsys.readouterr().err

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something.txt").write_text("x")
    assert cli.main([*base, "--data", str(few), "--out", str(busy)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main([*base, "--out", str(empty), "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err

    assert cli.main(["eval-generator", "--run", str(empty)]) == 2
    assert "holds no generator" in capsys.readouterr().err

    if not torch.cuda.is_available():
        assert cli.main([*base, "--data", str(few), "--out", str(tmp_path / "o3"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_cli_progressive_run_writes_a_progressive_checkpoint(tmp_path: Path) -> None:
    np.save(tmp_path / "data.npy", shapes_dataset(16))
    out = tmp_path / "prog"
    argv = ["train-generator", "--data", str(tmp_path / "data.npy"), "--config", "tiny", "--out", str(out),
            "--kimg", "0.008", "--batch", "4", "--progressive", "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 0
    info = read_network_info(runs.latest_checkpoint(out) / "D.safetensors")
    assert info["config"]["progressive"] is True and info["extra"]["active_resolution"] == 8
    assert "progressive: true" in (out / "config.yaml").read_text()
