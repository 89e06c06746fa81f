"""The inverter: shapes and init, pairing, training and refinement, layout vs noise, run dir + resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from domrand import checkpoint
from domrand.config import load_config, replace
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.inverter import Inverter, layout_noise, render, save_inverter
from domrand.generator.train.inverter import InverterConfig
from domrand.generator.train.inverter_losses import delta_penalty, edge_tensor_loss, norm_penalty, structure_loss
from domrand.generator.train.inverter import InverterTrainer, list_checkpoints
from domrand.generator.nn.networks import Discriminator, Generator
from domrand.metrics import psnr


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _tiny_g(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(load_config("tiny", GeneratorConfig).network).eval()


def _cfg(**changes) -> InverterConfig:
    return replace(load_config("tiny", InverterConfig, kind="inverter"), **changes)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [True, False])
def test_untrained_inverter_answers_the_average_image(spatial):
    G = _tiny_g()
    E = Inverter.for_generator(G, _cfg(**{"network.spatial_latent": spatial}).network)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out = E(x)
    assert out["ws"].shape == (3, G.num_ws, G.w_dim)
    assert torch.allclose(out["ws"], E.w_avg.expand(3, G.num_ws, -1))
    if spatial:
        assert set(out["features"]) == {8} and out["features"][8].shape == (3, G.synthesis.channels[8], 8, 8)
        assert torch.allclose(out["features"][8], E.feat_avg.expand(3, -1, -1, -1))
    else:
        assert out["features"] is None
    assert E.keep_resolution == 8 and E.num_coarse_ws == G.synthesis.num_ws_up_to(8)
    with pytest.raises(ValueError, match="images"):
        E(torch.zeros(1, 3, 32, 32))


def test_keep_resolution_must_leave_fine_layers():
    with pytest.raises(ValueError, match="keep_resolution"):
        Inverter.for_generator(_tiny_g(), _cfg(**{"network.keep_resolution": 16}).network)


def test_checkpoint_roundtrip_and_mismatched_generator_is_refused(tmp_path):
    G = _tiny_g(0)
    E = Inverter.for_generator(G, _cfg().network)
    with torch.no_grad():
        for p in E.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "E.safetensors"
    save_inverter(path, E, {"kimg": 0})
    E2 = checkpoint.load_network(path, "Inverter")
    assert E2.generator_hash == checkpoint.weights_hash(G) == E.generator_hash
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    a, b = E(x), E2(x)
    assert torch.allclose(a["ws"], b["ws"]) and torch.allclose(a["features"][8], b["features"][8])
    E2.check_pairing(G)  # the right generator passes
    other = _tiny_g(1)
    with pytest.raises(ValueError, match="mismatch"):
        E2.check_pairing(other)
    with pytest.raises(ValueError, match="mismatch"):
        E2.invert(x, other, steps=0)
    with torch.no_grad():  # the same generator object, changed in place, is refused too
        G.synthesis.blocks["b16"].torgb.bias.add_(0.1)
    with pytest.raises(ValueError, match="mismatch"):
        E2.check_pairing(G)
    bigger = Generator(load_config("small64", GeneratorConfig).network)
    with pytest.raises(ValueError):
        E2.check_pairing(bigger)


def test_regularizers_and_structure_loss():
    w_avg = torch.zeros(4)
    flat = torch.ones(2, 3, 4)
    assert torch.allclose(delta_penalty(flat), torch.zeros(2))
    assert (delta_penalty(torch.randn(2, 3, 4)) > 0).all()
    assert torch.allclose(norm_penalty(flat * 0.1, w_avg, 1.0), torch.zeros(2))
    assert (norm_penalty(flat * 3, w_avg, 1.0) > 0).all()
    # structure loss ignores a colour change but sees a moved edge
    x = torch.full((1, 3, 16, 16), -0.5)
    x[:, :, :, 8:] = 0.5
    recolored = x.clone()
    recolored[:, 0] = recolored[:, 0] * 0.5 + 0.3
    moved = torch.roll(x, 4, dims=3)
    assert structure_loss(x, recolored) < 0.3 * structure_loss(x, moved)


def _two_colour_image(left: tuple[float, float, float], right: tuple[float, float, float], split: int = 8) -> torch.Tensor:
    x = torch.empty(1, 3, 16, 16)
    x[0, :, :, :split] = torch.tensor(left).reshape(3, 1, 1)
    x[0, :, :, split:] = torch.tensor(right).reshape(3, 1, 1)
    return x


def test_edge_tensor_loss_sees_colour_edges_and_ignores_polarity():
    # a light-blue wall next to a beige table of the same luminance (Rec. 601): a clear colour edge
    blue, beige = (0.3, 0.55, 0.991), (0.7, 0.5, 0.2)
    flat = torch.full((1, 3, 16, 16), 0.5256)
    iso = _two_colour_image(blue, beige)
    assert structure_loss(flat, iso) < 0.05  # the luminance loss hardly sees the edge
    assert edge_tensor_loss(flat, iso) > 0.1  # the colour structure tensor does
    # the same edge, darker on the other side (a dark target wall where the sim wall is bright):
    # the same structure, while a moved edge is not
    bright_left = _two_colour_image((0.8, 0.8, 0.8), (-0.2, -0.2, -0.2))
    dark_left = _two_colour_image((-0.9, -0.8, -0.7), (0.1, 0.0, -0.1))
    moved = _two_colour_image((0.8, 0.8, 0.8), (-0.2, -0.2, -0.2), split=4)
    assert edge_tensor_loss(bright_left, dark_left) < 0.02
    assert edge_tensor_loss(bright_left, moved) > 10 * edge_tensor_loss(bright_left, dark_left) + 0.05
    assert structure_loss(bright_left, dark_left) > 0.3  # polarity and brightness layout count there


@pytest.mark.parametrize("spatial", [True, False])
def test_training_lowers_error_and_refinement_lowers_it_further(spatial):
    G = _tiny_g()
    D = Discriminator(load_config("tiny", GeneratorConfig).network)
    cfg = _cfg(**{"network.spatial_latent": spatial, "training.gen_batch": 16})
    tr = InverterTrainer(G, cfg, None, D=D, seed=0)
    rng = torch.Generator().manual_seed(99)
    x, _, _ = tr.generator_samples(32, rng)

    def err(steps: int) -> float:
        out = tr.E.invert(x, G, steps=steps)
        return float(psnr(render(G, out, 8).clamp(-1, 1), x.clamp(-1, 1)).mean())

    before = err(0)
    for _ in range(90):  # ~6 s of CPU time
        tr.train_step()
    tr.E.eval()
    after = err(0)
    refined = err(15)
    assert after > before + 2.0, (before, after)  # clearly lower error (PSNR up by > 2 dB)
    assert refined > after + 0.5, (after, refined)


def _edge_frames(n: int, seed: int) -> np.ndarray:
    """uint8 [n, 16, 16, 3] two-colour frames with a vertical edge at a random column."""
    rng = np.random.default_rng(seed)
    frames = np.empty((n, 16, 16, 3), np.uint8)
    for i in range(n):
        a, b = rng.integers(0, 256, (2, 3))
        split = int(rng.integers(3, 13))
        frames[i, :, :split], frames[i, :, split:] = a, b
    return frames


def test_tensor_structure_kind_learns_sim_edges():
    G = _tiny_g()
    cfg = _cfg(**{"training.structure_kind": "tensor", "training.gen_batch": 0, "training.sim_batch": 16})
    tr = InverterTrainer(G, cfg, None, sim_images=_edge_frames(256, 0), seed=0)
    held = torch.from_numpy(_edge_frames(32, 1)).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    def loss() -> float:
        tr.E.eval()
        with torch.no_grad():
            value = float(edge_tensor_loss(render(G, tr.E(held), 8), held).mean())
        tr.E.train()
        return value

    before = loss()
    for _ in range(60):
        logs = tr.train_step()
    assert "loss/structure" in logs
    after = loss()
    assert after < 0.85 * before, (before, after)
    with pytest.raises(ValueError, match="structure_kind='edges' is not one of"):
        InverterTrainer(G, _cfg(**{"training.structure_kind": "edges"}), None)


def test_resampling_fine_noise_does_not_move_layout():
    G = _tiny_g()
    with torch.no_grad():  # make noise matter (an untrained G starts with zero noise strength;
        for name, r in G.synthesis.noise_layers:  # trained ones end near 0.05-0.2)
            dict(G.synthesis.blocks[f"b{r}"].conv_layers())[name].noise_strength.fill_(0.3)
    E = Inverter.for_generator(G, _cfg().network)
    keep = E.keep_resolution
    n = 16
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(3))
    ws = G.mapping(z).detach()
    const = G.synthesis.sample_noise(n, noise_mode="const")
    # the convention: coarse layers always carry G's const noise, whatever fine mode is asked
    for mode in ("random", "none", "const"):
        noise = layout_noise(G, n, keep, mode, generator=torch.Generator().manual_seed(1))
        for name, r in G.synthesis.noise_layers:
            if r <= keep:
                assert torch.equal(noise[name], const[name])

    def layout(img: torch.Tensor) -> torch.Tensor:  # low-pass luminance at keep_resolution / 2
        lum = img.mean(1, keepdim=True)
        return torch.nn.functional.adaptive_avg_pool2d(lum, keep // 2)

    def synth(w, seed, coarse_random=False):
        g = torch.Generator().manual_seed(seed)
        noise = layout_noise(G, n, keep, "random", generator=g)
        if coarse_random:  # what the convention forbids: resampling coarse noise too
            noise = G.synthesis.sample_noise(n, generator=g)
        return G.synthesis(w, noise=noise)

    with torch.no_grad():
        a, b = layout(synth(ws, 1)), layout(synth(ws, 2))
        k = G.synthesis.num_ws_up_to(keep)
        swapped = torch.cat([ws.roll(1, 0)[:, :k], ws[:, k:]], 1)  # other frames' coarse styles
        c = layout(synth(swapped, 1))
        d = layout(synth(ws, 2, coarse_random=True))
    noise_move = (a - b).abs().mean()
    coarse_move = (a - c).abs().mean()
    assert noise_move < 0.25 * coarse_move, (noise_move, coarse_move)
    assert (a - d).abs().mean() > 3 * noise_move  # coarse noise would have moved layout


def _write_generator_run(root: Path) -> Path:
    G = _tiny_g()
    D = Discriminator(load_config("tiny", GeneratorConfig).network)
    run = root / "grun"
    checkpoint.save_network(run / "G_ema.safetensors", G)
    checkpoint.save_network(run / "checkpoints" / "kimg-000001" / "D.safetensors", D)
    return run


def _cli(argv: list[str]) -> int:
    from domrand.commands import train_inverter as inverter_cli

    parser = argparse.ArgumentParser()
    inverter_cli.add_arguments(parser)
    return inverter_cli.main(parser.parse_args(argv))


def test_run_directory_and_exact_resume(tmp_path):
    grun = _write_generator_run(tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "target.npy", rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    np.save(tmp_path / "sim.npy", rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
    common = ["--generator", str(grun), "--target-data", str(tmp_path / "target.npy"), "--sim-data",
              str(tmp_path / "sim.npy"), "--no-progress", "--device", "cpu"]
    sets = ["--set", "training.gen_batch=4", "--set", "training.target_batch=2", "--set", "training.sim_batch=2",
            "--set", "training.eval_images=8", "--set", "training.snapshot_kimg=0.016"]
    # 6 steps of 8 images in one go ...
    assert _cli(common + ["--config", "tiny", "--out", str(tmp_path / "a"), "--kimg", "0.048"] + sets) == 0
    # ... versus 3 steps, then a resume for 3 more
    assert _cli(common + ["--config", "tiny", "--out", str(tmp_path / "b"), "--kimg", "0.024"] + sets) == 0
    assert _cli(common + ["--out", str(tmp_path / "b"), "--kimg", "0.048", "--resume"]) == 0
    a = checkpoint.load_network(tmp_path / "a" / "E.safetensors", "Inverter").state_dict()
    b = checkpoint.load_network(tmp_path / "b" / "E.safetensors", "Inverter").state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    run = tmp_path / "b"
    for name in ("config.yaml", "command.txt", "metrics.jsonl", "E.safetensors"):
        assert (run / name).is_file(), name
    assert len((run / "command.txt").read_text().splitlines()) == 2
    assert list(run.glob("recon_*.png"))
    kimgs = [k for k, _ in list_checkpoints(run)]
    assert kimgs[-1] == pytest.approx(0.048) and len(kimgs) <= 2  # keep_snapshots: 2
    for _, d in list_checkpoints(run):
        assert sorted(p.name for p in d.iterdir()) == ["E.safetensors", "train_state.safetensors"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("psnr/gen" in r for r in records) and "psnr/target" in records[-1] and "loss/structure" in records[-1]
    info = checkpoint.read_network_info(run / "E.safetensors")
    assert info["extra"]["generator_source"].endswith("G_ema.safetensors")
    # a new run in an existing run dir is refused, a wrong generator on resume too
    with pytest.raises(ValueError, match="--resume"):
        _cli(common + ["--config", "tiny", "--out", str(run)])
    other = tmp_path / "other.safetensors"
    checkpoint.save_network(other, _tiny_g(5))
    with pytest.raises(ValueError, match="mismatch"):
        _cli(["--generator", str(other), "--out", str(run), "--resume", "--kimg", "0.1", "--no-progress"])


def test_eval_inverter_cli_end_to_end(tmp_path, capsys):
    import cv2

    from domrand.commands import eval_inverter as inverter_eval

    grun = _write_generator_run(tmp_path)
    G = checkpoint.load_network(grun / "G_ema.safetensors", "Generator")
    E = Inverter.for_generator(G, _cfg().network)
    save_inverter(tmp_path / "E.safetensors", E, {"generator_source": str(grun / "G_ema.safetensors")})
    rng = np.random.default_rng(0)
    for name in ("target", "sim"):
        for sub in ("frames", "masks"):
            (tmp_path / name / sub).mkdir(parents=True)
        for i in range(10):
            img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            mask = np.zeros((16, 16), np.uint8)
            mask[4:10, 4:10] = 1
            img[mask == 1] = (250, 20, 20)
            cv2.imwrite(str(tmp_path / name / "frames" / f"{i:06d}.png"), img)
            cv2.imwrite(str(tmp_path / name / "masks" / f"{i:06d}.png"), mask)
    parser = argparse.ArgumentParser()
    inverter_eval.add_arguments(parser)
    args = parser.parse_args([
        "--inverter", str(tmp_path / "E.safetensors"), "--target-data", str(tmp_path / "target" / "frames"),
        "--target-frames", str(tmp_path / "target"), "--sim-frames", str(tmp_path / "sim"), "--n-gen", "8",
        "--refine-steps", "2", "--seg-steps", "3", "--latency-repeats", "1", "--out", str(tmp_path / "eval.json"),
    ])
    assert inverter_eval.main(args) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    rec = res["reconstruction"]
    assert set(rec) == {"generator_samples", "target_images", "sim_frames"} and "refined2" in rec["target_images"]
    assert set(rec["sim_frames"]["encoder"]["per_class_psnr"]) == {"0", "1"}  # no meta.json: ids as names
    geo = res["geometry_miou"]
    for key in ("target_frames (ceiling)", "sim_frames (floor)", "randomized_sim (encoder)", "randomized_sim (refined2)"):
        assert 0.0 <= geo[key] <= 1.0
    assert {"encoder_b1", "encoder_b64", "encoder+refine2_b64"} <= set(res["latency_ms_per_frame"])
    # another generator is refused with a clear error
    other = tmp_path / "other.safetensors"
    checkpoint.save_network(other, _tiny_g(3))
    args.generator = str(other)
    with pytest.raises(ValueError, match="mismatch"):
        inverter_eval.main(args)
