"""Fine-tuning a trained generator (``train-generator --init``; issue 16 step 2): it starts from the
given weights, resumes exactly, the alignment-keeping options do what they say, and the layout
agreement metric tells aligned generators from unrelated ones.

Every network is the ``tiny`` preset (16x16) at batch 4; the source generator trains 24 steps, each
fine-tuning variant 24 steps on a second toy data set (the shapes in other colours).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand import cli
from domrand.checkpoint import load_network, read_network_info, weights_hash
from domrand.config import load_config, replace
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.train import finetune
from domrand.generator.train import runs
from domrand.generator.nn.networks import Generator
from domrand.generator.train.stylegan import Trainer, fresh_config, resolve_config, train
from domrand.metrics import layout_agreement

from test_train import shapes_dataset

STEP_KIMG = 0.004  # batch 4
FAST = {
    "training.batch": 4,
    "training.r1_interval": 4,
    "training.pl_interval": 4,
    "training.snapshot_kimg": 100.0,
    "training.metrics_kimg": 100.0,
    "training.swd_images": 16,
    "training.log_steps": 100,
}
KW = dict(device="cpu", progress=False, eval_at_start=False, tensorboard=False)
FEATURE = {"training.init_feature_weight": 100.0, "training.keep_resolution": 8}


def second_domain(n: int = 32) -> np.ndarray:
    """The toy 'target domain': other shapes scenes with inverted, channel-swapped colours."""
    return np.ascontiguousarray(255 - shapes_dataset(n, seed=9)[..., ::-1])


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A tiny generator run trained 24 steps on the shapes (a checkpoint with G, G_ema, D)."""
    out = tmp_path_factory.mktemp("ft") / "source"
    cfg = replace(resolve_config("tiny"), **FAST)
    train(cfg, shapes_dataset(32), out, kimg=24 * STEP_KIMG, seed=3, **KW)
    return out


@pytest.fixture(scope="module")
def source(source_run) -> finetune.InitSource:
    return finetune.load_init(source_run)


@pytest.fixture(scope="module")
def finetuned(source_run) -> dict[str, Trainer]:
    """24 fine-tuning steps on the second domain per variant, same seed (trainers kept in memory)."""
    variants = {
        "free": {"training.mapping_lr_mult": 1.0, "training.freeze_d": 0},  # plain continued training
        "frozen": {"training.mapping_lr_mult": 0.0, "training.freeze_d": 1},  # today's fine-tuning defaults
        "frozen+feature": {"training.mapping_lr_mult": 0.0, "training.freeze_d": 1, **FEATURE},
    }
    out = {}
    for name, sets in variants.items():
        result = train(None, second_domain(), None, kimg=24 * STEP_KIMG, init=source_run, overrides=sets, seed=3, **KW)
        out[name] = result.trainer
    return out


def _coarse_drift(G: Generator, ref: Generator, keep: int = 8) -> float:
    """Mean squared difference of synthesis features up to ``keep`` for 64 shared ws, const noise."""
    z = torch.randn(64, ref.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = ref.mapping(z)
        _, a = G.synthesis(ws, noise_mode="const", return_extras=True)
        _, b = ref.synthesis(ws, noise_mode="const", return_extras=True)
    return float(np.mean([float((a["features"][r] - b["features"][r]).square().mean()) for r in a["features"] if r <= keep]))


def _same(a: torch.nn.Module, b: torch.nn.Module, prefix: str = "") -> bool:
    """Parameters (not buffers such as w_avg) under ``prefix`` bit-equal."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert any(k.startswith(prefix) for k in pa), prefix
    return all(torch.equal(pa[k], pb[k]) for k in pa if k.startswith(prefix))


# --------------------------------------------------------------------------------------------
# --init


def test_init_starts_from_the_source_weights(source_run: Path, source: finetune.InitSource) -> None:
    """Before any step G and G_ema render exactly what the source's G_ema renders, D is the source's
    D, and the config records the source and its hash with the fine-tuning defaults."""
    assert source.kind == "run" and source.G is not None and source.D is not None
    cfg, src = fresh_config(None, init=source_run, overrides=FAST, log=None)
    t = cfg.training
    assert t.init == str(source_run.resolve()) and t.init_hash == weights_hash(src.G_ema) == source.hash
    assert (t.mapping_lr_mult, t.freeze_d, t.init_feature_weight) == (0.0, 1, 0.0)
    trainer = Trainer(cfg, second_domain(), seed=7)
    trainer.start_from(src)
    z = torch.randn(8, cfg.network.z_dim, generator=torch.Generator().manual_seed(0))
    src.G_ema.to(memory_format=torch.channels_last)  # as the Trainer holds its CPU networks: same kernels, same bits
    with torch.no_grad():
        want = src.G_ema(z, noise_mode="const")
        assert torch.equal(trainer.G_ema(z, noise_mode="const"), want)
        assert torch.equal(trainer.G(z, noise_mode="const"), want)  # init_from_ema
    assert _same(trainer.D, src.D) and trainer.G_init is not None
    assert all(torch.equal(v, src.G_ema.state_dict()[k]) for k, v in trainer.G_init.state_dict().items())
    # init_from_ema false: G is the source's raw G.
    cfg2, src2 = fresh_config(None, init=source_run, overrides={**FAST, "training.init_from_ema": False}, log=None)
    trainer2 = Trainer(cfg2, second_domain(), seed=7)
    trainer2.start_from(src2)
    assert _same(trainer2.G, src2.G) and _same(trainer2.G_ema, src2.G_ema)
    # A checkpoint's G_ema file finds G and D beside it; the run's top-level G_ema file has no D.
    ck = runs.latest_checkpoint(source_run)
    beside = finetune.load_init(ck / runs.G_EMA)
    assert beside.D is not None and beside.G is not None and beside.hash == source.hash
    top = finetune.load_init(source_run / runs.G_EMA)
    assert top.kind == "file" and top.D is None and "D from scratch" in top.describe()


def test_init_from_the_bundled_model_folder_and_single_file(tmp_path: Path) -> None:
    """A bundle's generator is the start (no D); the architecture check names the differing field."""
    from domrand import bundle as bundle_mod

    folder = bundle_mod.DEFAULT_BUNDLE
    info = json.loads((folder / bundle_mod.INFO_FILE).read_text())
    src = finetune.load_init(folder)
    assert src.kind == "bundle" and src.D is None and src.hash == info["generator_hash"]
    b = bundle_mod.load_bundle(folder, device="cpu")
    single = bundle_mod.save_bundle(tmp_path / "b.safetensors", b.G, b.E)
    one = finetune.load_init(single)
    assert one.kind == "bundle" and one.hash == src.hash
    cfg, _ = fresh_config(None, init=folder, log=None)  # default preset's training, the bundle's network
    assert cfg.network == src.G_ema.config and cfg.training.init_hash == src.hash
    with pytest.raises(ValueError, match=r"not the architecture .*network.channel_max"):
        fresh_config("small64", init=folder, overrides={"network.channel_max": 64}, log=None)


def test_resume_of_a_finetuning_run_is_exact(source_run: Path, tmp_path: Path) -> None:
    """fine-tune(4 steps) == fine-tune(2) + resume + 2 more, with the frozen mapping, FreezeD and
    the coarse-feature term on (whose reference comes back from G_init.safetensors, not --init)."""
    data = second_domain(16)
    a = train(None, data, tmp_path / "a", kimg=4 * STEP_KIMG, init=source_run, overrides=FEATURE, seed=1, **KW)
    train(None, data, tmp_path / "b", kimg=2 * STEP_KIMG, init=source_run, overrides=FEATURE, seed=1, **KW)
    stored = load_config(tmp_path / "b" / runs.CONFIG, GeneratorConfig).training
    src_hash = finetune.load_init(source_run).hash
    assert stored.init == str(source_run.resolve()) and stored.init_hash == src_hash
    assert weights_hash(load_network(tmp_path / "b" / runs.G_INIT, "Generator")) == src_hash
    assert read_network_info(tmp_path / "b" / runs.G_INIT)["extra"]["source"] == str(source_run.resolve())
    b = train(None, data, tmp_path / "b", kimg=4 * STEP_KIMG, resume=True, **KW)
    assert a.step == b.step == 4
    for name in ("G", "G_ema", "D"):
        sa, sb = getattr(a.trainer, name).state_dict(), getattr(b.trainer, name).state_dict()
        for key in sa:
            assert torch.allclose(sa[key], sb[key], rtol=0, atol=1e-6), f"{name}.{key}"
    assert _same(b.trainer.G_init, a.trainer.G_init)
    with pytest.raises(ValueError, match="cannot change"):
        train(None, data, tmp_path / "b", kimg=6 * STEP_KIMG, resume=True, init=tmp_path / "a", **KW)


# --------------------------------------------------------------------------------------------
# The alignment-keeping options


def test_frozen_mapping_and_freeze_d_leave_those_weights_unchanged(finetuned, source) -> None:
    trainer = finetuned["frozen"]
    assert trainer.t.mapping_lr_mult == 0.0 and trainer.t.freeze_d == 1 and trainer.step == 24
    assert _same(trainer.G, source.G_ema, "mapping.")  # G started from G_ema; mapping never moved
    assert not _same(trainer.G, source.G_ema, "synthesis.")
    assert _same(trainer.D, source.D, "blocks.b16.")  # the first (highest-resolution) block
    assert not _same(trainer.D, source.D, "blocks.b8.") and not _same(trainer.D, source.D, "fc.")
    in_opt = {id(p) for group in trainer.D_opt.param_groups for p in group["params"]}
    assert not in_opt & {id(p) for p in trainer.D.blocks["b16"].parameters()}
    # Unconstrained: every parameter moves and one optimizer group holds all of G (as before fine-tuning existed).
    free = finetuned["free"]
    assert not _same(free.G, source.G_ema, "mapping.") and not _same(free.D, source.D, "blocks.b16.")
    assert len(free.G_opt.param_groups) == 1
    # A fractional multiplier is a second Adam group at that fraction of the lr.
    cfg = resolve_config(replace(resolve_config("tiny"), **{"training.mapping_lr_mult": 0.25}))
    groups = Trainer(cfg, shapes_dataset(8)).G_opt.param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"])


def test_feature_matching_reduces_coarse_feature_drift(finetuned, source) -> None:
    """Same steps, seed and data: the coarse-feature term (weight 100, blocks <= 8) cuts the drift
    of G_ema's 4x4 and 8x8 features from the start's at least in half (measured at seed 3: about
    0.009 -> 0.001)."""
    without = _coarse_drift(finetuned["frozen"].G_ema, source.G_ema)
    with_term = _coarse_drift(finetuned["frozen+feature"].G_ema, source.G_ema)
    assert with_term < 0.5 * without, (with_term, without)


def test_constrained_finetuning_keeps_layout_agreement_higher(finetuned, source) -> None:
    """Frozen mapping + FreezeD + feature matching vs plain continued training on the second domain:
    the same w keeps more of the start's layout. A toy measured at one fixed seed (3); at seeds 3
    and 4 with a 24-step source the same-w agreement was 0.97 vs 0.90 and 0.75 vs 0.63, mismatched
    pairs about 0.2 for all, so the direction, not a margin, is asserted."""
    free = layout_agreement(source.G_ema, finetuned["free"].G_ema, 64)
    kept = layout_agreement(source.G_ema, finetuned["frozen+feature"].G_ema, 64)
    assert kept["same_w"] > free["same_w"], (kept, free)
    assert kept["gap"] > free["gap"] > 0


# --------------------------------------------------------------------------------------------
# The layout agreement metric


def test_layout_agreement_same_w_vs_mismatched() -> None:
    net = load_config("tiny", GeneratorConfig).network
    torch.manual_seed(0)
    A = Generator(net).eval()
    torch.manual_seed(1)
    B = Generator(net).eval()
    C = copy.deepcopy(A)
    with torch.no_grad():
        for p in C.synthesis.parameters():
            p.add_(0.05 * torch.randn_like(p))
    near = layout_agreement(A, C, 48)
    assert near["same_w"] > near["mismatched"] + 0.3 and near["ratio"] > 1.5
    unrelated = layout_agreement(A, B, 48)
    assert abs(unrelated["same_w"] - unrelated["mismatched"]) < 0.05, unrelated
    assert layout_agreement(A, A, 8)["same_w"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        layout_agreement(A, C, 1)
    other = Generator(replace(net, w_dim=16)).eval()
    with pytest.raises(ValueError, match="do not share a W"):
        layout_agreement(A, other, 4)


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_init_set_resume_align_and_errors(source_run: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "target.npy", second_domain(16))
    data = ["--data", str(tmp_path / "target.npy"), "--device", "cpu", "--no-progress", "--threads", "1"]
    out = tmp_path / "gt"
    sets = ["--set", "training.init_feature_weight=100", "--set", "training.keep_resolution=8", "--set", "training.batch=4"]

    assert cli.main(["train-generator", *data, "--init", str(source_run), "--out", str(out), "--dry-run", *sets]) == 0
    text = capsys.readouterr().out
    assert "init_feature_weight: 100.0" in text and "mapping_lr_mult: 0.0" in text and "init: run " in text
    assert not out.exists()

    assert cli.main(["train-generator", *data, "--init", str(source_run), "--out", str(out), "--kimg", "0.008", *sets]) == 0
    captured = capsys.readouterr()
    assert "fine-tuning from run" in captured.err and "D <- " in captured.err
    assert f"init: {source_run.resolve()}" in (out / runs.CONFIG).read_text()
    assert "--init" in (out / runs.COMMAND).read_text() and (out / runs.G_INIT).is_file()
    assert cli.main(["train-generator", "--out", str(out), "--resume", "--kimg", "0.012", "--device", "cpu", "--no-progress"]) == 0
    assert "fine-tuning from" not in capsys.readouterr().err  # resume: the run's own weights
    assert runs.latest_checkpoint(out).name == "kimg-000000.012"

    assert cli.main(["eval-generator", "--run", str(out), "--align", str(out / runs.G_INIT), "--num-images", "16", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["kind"] == "align" and record["same_w"] > record["mismatched"]
    assert record["other_hash"] == load_config(out / runs.CONFIG, GeneratorConfig).training.init_hash

    base = ["train-generator", *data, "--config", "tiny"]
    for extra, message in [
        (["--init", str(source_run), "--set", "network.channel_max=16"], "not the architecture"),
        (["--set", "training.init_feature_weight=1"], "needs a start generator"),
        (["--set", "training.freeze_d=3"], r"freeze_d must be in \[0, 2\]"),
        (["--set", "training.mapping_lr_mult=-1"], "mapping_lr_mult must be"),
        (["--set", "freeze_d"], "expects KEY=VALUE"),
        (["--set", "training.freez_d=1"], "unknown key"),
        (["--init", str(tmp_path / "missing")], "does not exist"),
    ]:
        assert cli.main([*base, *extra, "--out", str(tmp_path / "bad")]) == 2, extra
        err = capsys.readouterr().err
        assert re.search(message, err), (extra, err)


def test_two_rank_finetuning_keeps_ranks_identical(source_run: Path, source: finetune.InitSource) -> None:
    """Ranks as threads (in-memory all-reduce): every rank loads the start, the coarse-feature
    term's gradients are averaged like the others, and the ranks end with identical weights; the
    frozen parts are still the start's."""
    from dist_helpers import ThreadGroup

    group = ThreadGroup(2)
    sets = {"training.freeze_d": 1, **FEATURE}

    def fn(rank: int, reduce) -> Trainer:
        result = train(None, second_domain(16), None, kimg=2 * STEP_KIMG, init=source_run, overrides=sets, seed=2,
                       rank=rank, world_size=2, reduce=reduce, **KW)  # fmt: skip
        return result.trainer

    t0, t1 = group.run(fn)
    assert t0.step == t1.step == 2 and t0.local_batch == 2
    for name in ("G", "G_ema", "D"):
        s0, s1 = getattr(t0, name).state_dict(), getattr(t1, name).state_dict()
        assert all(torch.equal(s0[k], s1[k]) for k in s0), name
    assert _same(t0.G, source.G_ema, "mapping.") and _same(t0.D, source.D, "blocks.b16.")
    assert not _same(t0.G, source.G_ema, "synthesis.")
