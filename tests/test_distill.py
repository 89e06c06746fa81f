"""The distilled student (``domrand distill``): the network, its losses, that it learns, resume, bundles, the randomizer path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand import checkpoint
from domrand.bundle import STUDENT_FILE, load_bundle, save_bundle
from domrand.checkpoint import CheckpointError
from domrand.cli import main as cli_main
from domrand.config import from_dict, load_config
from domrand.generator.train.distill import DistillConfig, DistillTrainer, distill_losses, learning_rate, log_spectrum, sobel
from domrand.generator.nn.student import StudentConfig, StudentNet
from domrand.randomizer import StyleRandomizer
from domrand.transfer import make_untrained_bundle

torch.set_num_threads(1)
TINY = Path(__file__).resolve().parents[1] / "configs" / "distill" / "tiny.yaml"


def _frames(n: int = 64, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Toy sim frames: a grey table, a red 3x3 'cube' and a blue square at random places; the cube's mask."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, size, size, 3), 110, np.uint8)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size - 4, 2)
        frames[i, y : y + 4, x : x + 4] = (40, 60, 200)
        y, x = rng.integers(0, size - 3, 2)
        frames[i, y : y + 3, x : x + 3] = (220, 30, 30)
        masks[i, y : y + 3, x : x + 3] = True
    return frames, masks


@pytest.fixture(scope="module")
def teacher_bundle(tmp_path_factory):
    path = make_untrained_bundle(tmp_path_factory.mktemp("teacher") / "b", seed=3)
    return load_bundle(path, device="cpu"), path


def _config() -> DistillConfig:
    return load_config(TINY, DistillConfig, kind="distill")


def test_student_shapes_round_trip_and_bounds(tmp_path):
    S = StudentNet(StudentConfig(resolution=16, w_dim=32, channels=(8, 16), res_blocks=1))
    out = S(torch.zeros(2, 3, 16, 16), torch.zeros(2, 32))
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="style: expected shape"):
        S(torch.zeros(2, 3, 16, 16), torch.zeros(2, 31))
    checkpoint.save_network(tmp_path / "s.safetensors", S)
    S2 = checkpoint.load_network(tmp_path / "s.safetensors", "StudentNet")
    assert checkpoint.weights_hash(S2) == checkpoint.weights_hash(S)
    # A stored config asking for an absurd network is refused before anything is allocated.
    info = S.export_config()
    info["student"]["channels"] = [8, 100000]
    from domrand.checkpoint_bounds import ConfigBoundsError, check_student

    with pytest.raises(ConfigBoundsError, match="channels"):
        check_student(info)


def test_noise_maps_are_the_teachers_constant_noise_and_shape_the_output(teacher_bundle, tmp_path):
    bundle, _ = teacher_bundle
    frames, masks = _frames(24, seed=6)
    cfg = _config()
    cfg = replace(cfg, student=replace(cfg.student, noise_maps=2, channels=(8, 16, 16)))
    trainer = DistillTrainer(cfg, bundle, frames, masks, run_dir=None, seed=0, progress=False)
    S = trainer.student
    assert S.noise_resolutions() == [16, 8]
    const = bundle.G.synthesis.sample_noise(1, "cpu", noise_mode="const")
    for level, r in enumerate(S.noise_resolutions()):
        want = torch.stack([const[n][0, 0] for n, res in bundle.G.synthesis.noise_layers if res == r])
        assert torch.equal(getattr(S, f"noise{level}"), want)
    # The maps are part of the network: they travel with its file and change what it renders.
    checkpoint.save_network(tmp_path / "s.safetensors", S)
    S2 = checkpoint.load_network(tmp_path / "s.safetensors", "StudentNet")
    assert torch.equal(S2.noise0, S.noise0)
    x, style = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, int(bundle.G.w_dim))
    with torch.no_grad():
        for conv in S2.dec:
            torch.nn.init.normal_(conv.weight, std=0.2)  # a student that uses its inputs
        before = S2(x, style)
        S2.load_teacher_noise([torch.zeros(2, 16, 16), torch.zeros(2, 8, 8)])
        assert not torch.allclose(S2(x, style), before)
    with pytest.raises(ValueError, match="needs \\[>= 2, 8, 8\\]"):
        S2.load_teacher_noise([torch.zeros(2, 16, 16), torch.zeros(1, 8, 8)])
    with pytest.raises(ValueError, match="takes no noise maps"):
        StudentNet(StudentConfig(resolution=16, w_dim=32, channels=(8, 16))).load_teacher_noise([])


def test_cosine_learning_rate_falls_to_zero_and_unknown_schedules_are_refused():
    tc = replace(_config().training, lr=0.01, kimg=2.0, lr_schedule="cosine")
    assert learning_rate(tc, 0) == pytest.approx(0.01)
    assert learning_rate(tc, 1000) == pytest.approx(0.005)
    assert learning_rate(tc, 2000) == pytest.approx(0.0, abs=1e-12) and learning_rate(tc, 5000) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(replace(tc, lr_schedule="constant"), 1500) == 0.01
    with pytest.raises(ValueError, match="lr_schedule: one of constant, cosine"):
        replace(tc, lr_schedule="step")  # refused when the config is made, before any work
    with pytest.raises(ValueError, match="lr_schedule: one of constant, cosine"):
        from_dict(DistillConfig, {"training": {"lr_schedule": "step"}}, "distill config")


def test_losses_are_zero_for_equal_frames_and_see_edges_and_texture():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    tc = _config().training
    losses = distill_losses(x, x.clone(), torch.ones(2, 1, 16, 16), tc)
    assert all(float(v) == 0.0 for v in losses.values())
    assert float(sobel(torch.ones(1, 3, 8, 8)).abs().max()) == 0.0  # no edges in a flat image
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    # A blur keeps the mean colour but loses edges and high frequencies: both terms see it.
    assert float((sobel(blurred) - sobel(x)).abs().mean()) > 0.05
    assert float((log_spectrum(blurred) - log_spectrum(x)).abs().mean()) > 0.01


def test_the_student_learns_the_teacher(teacher_bundle, tmp_path):
    bundle, _ = teacher_bundle
    frames, masks = _frames(96)
    trainer = DistillTrainer(_config(), bundle, frames, masks, run_dir=tmp_path / "run", seed=0, progress=False)
    before = trainer.evaluate()["psnr/teacher"]
    first = trainer.train_step()["loss/total"]
    trainer.run(kimg=2.0, progress=False)
    after = trainer.evaluate()
    losses = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last_loss = [r for r in losses if r["kind"] == "train"][-1]["loss/total"]
    assert last_loss < 0.6 * first, (first, last_loss)
    assert after["psnr/teacher"] > before + 2.5, (before, after)  # 9.8 -> 13.4 dB in 125 steps
    assert "psnr/teacher_object" in after
    assert list((tmp_path / "run").glob("samples_*.png")) and (tmp_path / "run" / "teacher_pairs.npz").is_file()


def test_resume_continues_exactly(teacher_bundle, tmp_path):
    bundle, _ = teacher_bundle
    frames, masks = _frames(48, seed=1)
    cfg = _config()  # with the teacher's noise and a cosine schedule (its rate depends on the step)
    cfg = replace(cfg, student=replace(cfg.student, noise_maps=1), training=replace(cfg.training, lr_schedule="cosine", kimg=1.0))
    straight = DistillTrainer(cfg, bundle, frames, masks, run_dir=tmp_path / "a", seed=5, progress=False)
    straight.run(kimg=1.0, progress=False)
    half = DistillTrainer(cfg, bundle, frames, masks, run_dir=tmp_path / "b", seed=5, progress=False)
    half.run(kimg=0.5, progress=False)  # a snapshot at 0.5 kimg
    resumed = DistillTrainer(cfg, bundle, frames, masks, run_dir=tmp_path / "b", seed=5, progress=False)
    from domrand.generator.train import runs
    from domrand.generator.train.distill import CHECKPOINT_FILES

    resumed.load_checkpoint(runs.resume_checkpoint(tmp_path / "b", CHECKPOINT_FILES))
    resumed.run(kimg=1.0, progress=False)
    assert resumed.step == straight.step
    for a, b in zip(straight.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)


def test_bundle_carries_the_student_and_the_randomizer_runs_it(teacher_bundle, tmp_path):
    bundle, path = teacher_bundle
    frames, _ = _frames(8, seed=2)
    S = StudentNet(StudentConfig(resolution=16, w_dim=int(bundle.G.w_dim), channels=(8, 16), res_blocks=1)).eval()
    out = save_bundle(tmp_path / "with_student", bundle.G, bundle.E, student=S, student_about={"note": "t"})
    loaded = load_bundle(out, device="cpu")
    assert loaded.student is not None and loaded.info["student"]["about"]["note"] == "t"
    fast = StyleRandomizer.from_bundle(out, device="cpu", model="student", seed=0)
    slow = StyleRandomizer.from_bundle(out, device="cpu", seed=0)
    y_fast, y_slow = fast.randomize(frames), slow.randomize(frames)
    assert y_fast.shape == frames.shape and y_fast.dtype == np.uint8
    # The student path is the student's own output for the env styles (truncated fine ws, averaged).
    style = fast.G.mapping.w_avg.lerp(fast._effective(list(range(8)))[0], fast.psi).mean(1)
    with torch.no_grad():
        direct = S(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1, style)
    want = ((direct.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(y_fast.astype(int) - want.astype(int)).max() <= 1
    assert not np.array_equal(y_fast, y_slow)  # the teacher still renders the teacher
    with pytest.raises(ValueError, match="carries none.*domrand distill"):
        StyleRandomizer.from_bundle(path, device="cpu", model="student")
    # A student from another teacher, or a replaced student file, is refused on load.
    info = json.loads((out / "bundle.json").read_text())
    checkpoint.save_network(out / STUDENT_FILE, StudentNet(S.config))
    with pytest.raises(CheckpointError, match="student.checksum"):
        load_bundle(out, device="cpu")
    other = make_untrained_bundle(tmp_path / "other", seed=9)
    b2 = load_bundle(other, device="cpu")
    assert info["student"]["generator_hash"] != b2.info["generator_hash"]
    # add_student puts a student into a bundle in place, refusing one distilled from another teacher.
    from domrand.bundle import add_student

    with pytest.raises(CheckpointError, match="distilled from generator"):
        add_student(out, S, {"teacher_generator_hash": b2.info["generator_hash"]})
    add_student(out, S, {"teacher_generator_hash": bundle.info["generator_hash"]})
    assert load_bundle(out, device="cpu").student is not None
    # Re-packaging without a student removes the old student file.
    save_bundle(out, bundle.G, bundle.E)
    assert not (out / STUDENT_FILE).exists() and load_bundle(out, device="cpu").student is None


def test_cli_distills_into_a_bundle_and_errors_are_one_line(teacher_bundle, tmp_path, capsys):
    _, path = teacher_bundle
    frames, _ = _frames(40, seed=4)
    np.save(tmp_path / "sim.npy", frames)
    run, out = tmp_path / "run", tmp_path / "fast"
    code = cli_main(["distill", "--config", str(TINY), "--bundle", str(path), "--sim-data", str(tmp_path / "sim.npy"),
                     "--out", str(run), "--kimg", "0.3", "--no-progress", "--bundle-out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert load_bundle(out, device="cpu").student is not None
    assert cli_main(["distill", "--config", str(TINY), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "--bundle" in err and "--sim-data" in err and "Traceback" not in err
    assert cli_main(["distill", "--out", str(run), "--resume", "--kimg", "0.4", "--no-progress"]) == 0


def test_randomize_command_runs_the_student(teacher_bundle, tmp_path, capsys):
    from PIL import Image

    _, path = teacher_bundle
    bundle = make_untrained_bundle(tmp_path / "b", seed=3, student=True)
    frame = _frames(1, seed=7)[0][0]
    Image.fromarray(frame).save(tmp_path / "a.png")
    args = ["randomize", "--input", str(tmp_path / "a.png"), "--bundle", str(bundle), "--n", "2"]
    assert cli_main([*args, "--out", str(tmp_path / "s"), "--model", "student"]) == 0
    assert cli_main([*args, "--out", str(tmp_path / "t")]) == 0
    got = [np.asarray(Image.open(tmp_path / "s" / f"a_{k}.png")) for k in range(2)]
    rand = StyleRandomizer.from_bundle(bundle, device="cpu", model="student", seed=0)
    rand.resample([0, 1], seed=[0, 1], immediate=True)
    want = rand.randomize(np.stack([frame, frame]), [0, 1])
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert not np.array_equal(got[0], np.asarray(Image.open(tmp_path / "t" / "a_0.png")))  # the teacher renders otherwise
    assert cli_main([*args, "--out", str(tmp_path / "m"), "--model", "student", "--mix", "0.5"]) == 2
    assert "--mix only apply to --model teacher" in capsys.readouterr().err
    assert cli_main(["randomize", "--input", str(tmp_path / "a.png"), "--bundle", str(path), "--out", str(tmp_path / "n"),
                     "--model", "student"]) == 2  # fmt: skip
    assert "carries none" in capsys.readouterr().err
