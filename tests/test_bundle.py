"""Bundles (folder and single file), the pairing check, and the bundle / randomize commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from domrand import bundle as bundle_mod
from domrand import checkpoint
from domrand.checkpoint import CheckpointError, weights_hash
from domrand.cli import main as cli_main
from domrand.config import load_config
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.networks import Generator
from domrand.randomizer import StyleRandomizer
from standins import StandInEncoder


class Inverter(StandInEncoder):
    """Stand-in for domrand.generator.nn.inverter.Inverter (same class name, checkpoint protocol and
    interface); registered for the duration of each test only."""

    def export_config(self) -> dict:
        return {"num_ws": self.num_ws, "w_dim": self.w_dim, "keep_resolution": self.keep_resolution, "generator_hash": self.generator_hash}

    @classmethod
    def from_exported_config(cls, data: dict) -> "Inverter":
        return cls(**data)


@pytest.fixture()
def standin_inverter(monkeypatch):
    monkeypatch.setitem(checkpoint._NETWORKS, "Inverter", Inverter.from_exported_config)


def _gen(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(load_config("tiny", GeneratorConfig).network).eval()


@pytest.fixture()
def pair(standin_inverter):
    G = _gen()
    torch.manual_seed(1)
    return G, Inverter.for_generator(G)


def _frames(n=2, h=20, w=28) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("out_name", ["bundle_dir", "bundle.safetensors"])
def test_roundtrip_and_from_bundle(tmp_path, pair, out_name) -> None:
    G, E = pair
    out = bundle_mod.save_bundle(tmp_path / out_name, G, E, options={"keep_resolution": 8, "psi": 0.5})
    assert out.is_dir() == (out_name == "bundle_dir")
    b = bundle_mod.load_bundle(out, device="cpu")
    assert weights_hash(b.G) == weights_hash(G) and weights_hash(b.E) == weights_hash(E)
    assert b.info["generator_hash"] == weights_hash(G) and b.options == {"keep_resolution": 8, "psi": 0.5}
    r = StyleRandomizer.from_bundle(out, device="cpu", seed=0, mix=0.5)
    assert (r.keep_resolution, r.psi, r.mix) == (8, 0.5, 0.5)
    ref = StyleRandomizer(G, E, keep_resolution=8, psi=0.5, mix=0.5, seed=0)
    f = _frames()
    assert np.array_equal(r.randomize(f), ref.randomize(f))
    with pytest.raises(TypeError, match="unknown option"):
        StyleRandomizer.from_bundle(out, device="cpu", colour=1)


def test_mismatched_pair_is_refused(tmp_path, pair) -> None:
    G, E = pair
    other = _gen(5)
    with pytest.raises(CheckpointError, match="mismatch"):
        bundle_mod.save_bundle(tmp_path / "x", other, E)
    out = bundle_mod.save_bundle(tmp_path / "b", G, E)
    checkpoint.save_network(out / bundle_mod.GENERATOR_FILE, other)  # swap the generator file
    with pytest.raises(CheckpointError, match="its checksum differs from bundle.json key 'generator.checksum'"):
        bundle_mod.load_bundle(out, device="cpu")
    info = json.loads((out / bundle_mod.INFO_FILE).read_text())
    legacy = {k: v for k, v in info.items() if k != "checksum"}  # a bundle written before checksums
    legacy["generator"] = {k: v for k, v in info["generator"].items() if k != "checksum"}
    (out / bundle_mod.INFO_FILE).write_text(json.dumps(legacy))
    with pytest.raises(CheckpointError, match="generator's weights hash"):
        bundle_mod.load_bundle(out, device="cpu")
    info = legacy | {"generator_hash": weights_hash(other)}  # hash patched too: the inverter still disagrees
    (out / bundle_mod.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="inverter/generator mismatch"):
        bundle_mod.load_bundle(out, device="cpu")
    info["format"] = 99
    (out / bundle_mod.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="bundle format 99 is not supported"):
        bundle_mod.load_bundle(out, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        bundle_mod.load_bundle(tmp_path / "nothing", device="cpu")
    with pytest.raises(CheckpointError, match="not a domrand bundle"):
        bundle_mod.load_bundle(tmp_path, device="cpu")


def test_real_inverter_bundle(tmp_path) -> None:
    from domrand.generator.nn.inverter import Inverter
    from domrand.generator.train.inverter import InverterConfig

    G = _gen()
    cfg = load_config("tiny", InverterConfig, kind="inverter")
    E = Inverter.for_generator(G, cfg.network, samples=32)
    out = bundle_mod.save_bundle(tmp_path / "real.safetensors", G, E, options={"psi": 0.8})
    r = StyleRandomizer.from_bundle(out, device="cpu", seed=0)
    assert r.keep_resolution == E.keep_resolution == 8
    f = _frames(3, 64, 64)
    out_frames = r.randomize(f)
    assert out_frames.shape == f.shape and out_frames.dtype == np.uint8
    lat = r.latents(f)
    k = r.num_coarse
    assert lat["features"] is not None and torch.equal(lat["ws"][:, :k], lat["frame_ws"][:, :k])
    r.resample([0, 1, 2])
    assert not torch.allclose(r.latents(f)["ws"][:, k:], lat["ws"][:, k:])


def test_bundle_command_from_run_dirs(tmp_path, pair, capsys) -> None:
    G, E = pair
    g_run, e_run = tmp_path / "gen_run", tmp_path / "inv_run"
    g_run.mkdir()
    e_run.mkdir()
    checkpoint.save_network(g_run / "G_ema.safetensors", G)
    checkpoint.save_network(e_run / "E.safetensors", E)
    out = tmp_path / "bundle"
    rc = cli_main(["bundle", "--generator", str(g_run), "--inverter", str(e_run / "E.safetensors"), "--out", str(out), "--psi", "0.6"])
    assert rc == 0 and "wrote bundle" in capsys.readouterr().out
    assert bundle_mod.load_bundle(out, device="cpu").options == {"psi": 0.6}
    # measured scores and a note travel with the bundle (bundle.json "about")
    (tmp_path / "eval.json").write_text(json.dumps({"geometry_miou": {"sim_frames (floor)": 0.4}}))
    argv = ["bundle", "--generator", str(g_run), "--inverter", str(e_run), "--out", str(tmp_path / "b_eval")]
    assert cli_main(argv + ["--eval", str(tmp_path / "eval.json"), "--note", "trained on target-a"]) == 0
    about = bundle_mod.load_bundle(tmp_path / "b_eval", device="cpu").info["about"]
    assert about == {"evaluation": {"geometry_miou": {"sim_frames (floor)": 0.4}}, "note": "trained on target-a"}
    assert cli_main(argv + ["--eval", str(tmp_path / "missing.json")]) == 2
    assert "eval-inverter --out" in capsys.readouterr().err
    checkpoint.save_network(g_run / "G_ema.safetensors", _gen(7))
    rc = cli_main(["bundle", "--generator", str(g_run), "--inverter", str(e_run), "--out", str(tmp_path / "b2")])
    assert rc == 2 and "mismatch" in capsys.readouterr().err
    rc = cli_main(["bundle", "--generator", str(tmp_path / "empty"), "--inverter", str(e_run), "--out", str(tmp_path / "b3")])
    assert rc == 2 and "neither a run directory" in capsys.readouterr().err


def test_randomize_command(tmp_path, pair, monkeypatch, capsys) -> None:
    G, E = pair
    bdir = bundle_mod.save_bundle(tmp_path / "bundle", G, E, options={"keep_resolution": 8})
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(_frames(1, 30, 45)[0]).save(inp / "a.png")
    Image.fromarray(_frames(1, 16, 16)[0]).save(inp / "b.jpg")
    out = tmp_path / "out"
    assert cli_main(["randomize", "--input", str(inp), "--out", str(out), "--bundle", str(bdir), "--n", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_0.png", "a_1.png", "b_0.png", "b_1.png"]
    assert Image.open(out / "a_0.png").size == (45, 30)
    assert not np.array_equal(np.asarray(Image.open(out / "a_0.png")), np.asarray(Image.open(out / "a_1.png")))
    monkeypatch.setattr(bundle_mod, "DEFAULT_BUNDLE", tmp_path / "not_installed")
    assert cli_main(["randomize", "--input", str(inp / "a.png"), "--out", str(out)]) == 2
    assert "no bundle is installed" in capsys.readouterr().err


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity (non-standard JSON)."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _legacy(info: dict) -> dict:
    """bundle.json as written before checksums (no 'checksum' keys): its options are still validated."""
    out = {k: v for k, v in info.items() if k != "checksum"}
    for key in ("generator", "inverter"):
        out[key] = {k: v for k, v in info[key].items() if k != "checksum"}
    return out


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda i: [i], "holds a JSON list; accepted: a JSON object"),
        (lambda i: "bundle", "holds a JSON str; accepted: a JSON object"),
        (lambda i: {k: v for k, v in i.items() if k != "generator"}, "lacks 'generator'"),
        (lambda i: i | {"generator_hash": 12}, "key 'generator_hash' = 12 is invalid; accepted: a 16-character"),
        (lambda i: i | {"inverter": [1, 2]}, "key 'inverter' holds a list; accepted: a JSON object"),
        (lambda i: i | {"format": "1"}, "bundle format '1' is not supported"),
        (lambda i: i | {"randomizer": {"psi": "x"}}, "option 'psi' = 'x' is invalid; accepted: a finite number"),
        (lambda i: i | {"randomizer": {"mix": 2}}, "option 'mix' = 2 is invalid; accepted: a number in [0, 1]"),
        (lambda i: i | {"randomizer": {"keep_resolution": 3}}, "option 'keep_resolution' = 3 is invalid; accepted: a power of two"),
        (lambda i: i | {"randomizer": {"noise": "loud"}}, "option 'noise' = 'loud' is invalid; accepted: one of random"),
        (lambda i: i | {"randomizer": {"colour": 1}}, "unknown randomizer option 'colour'; accepted keys"),
        (lambda i: i | {"randomizer": "psi=0.5"}, "key 'randomizer' holds a str; accepted: a JSON object"),
        (lambda i: i | {"inverter": i["inverter"] | {"weights_hash": "zz"}}, "key 'inverter.weights_hash' = 'zz' is invalid"),
    ],
)
def test_malformed_bundle_json_is_a_checkpoint_error_naming_file_and_key(tmp_path, pair, edit, words) -> None:
    G, E = pair
    out = bundle_mod.save_bundle(tmp_path / "b", G, E)
    info_path = out / bundle_mod.INFO_FILE
    info_path.write_text(json.dumps(edit(_legacy(json.loads(info_path.read_text())))))
    with pytest.raises(CheckpointError) as exc:
        bundle_mod.load_bundle(out, device="cpu")
    assert str(info_path) in str(exc.value)
    assert words in str(exc.value)


def test_edited_settings_fail_the_bundle_checksum(tmp_path, pair) -> None:
    G, E = pair
    out = bundle_mod.save_bundle(tmp_path / "b", G, E, options={"psi": 0.5})
    info_path = out / bundle_mod.INFO_FILE
    info = json.loads(info_path.read_text())
    info["randomizer"]["psi"] = 0.9  # a valid value, but not what was packaged
    info_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="checksum mismatch: key 'checksum' does not match the bundle's settings"):
        bundle_mod.load_bundle(out, device="cpu")
    info["randomizer"]["psi"] = 0.5
    info["about"] = {"note": "provenance may be edited"}
    info_path.write_text(json.dumps(info))
    assert bundle_mod.load_bundle(out, device="cpu").options == {"psi": 0.5}


def _flip_tensor_byte(path, offset_from_end: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def test_inverter_weights_are_verified_on_every_load(tmp_path, pair) -> None:
    G, E = pair
    out = bundle_mod.save_bundle(tmp_path / "b", G, E)
    inv = out / bundle_mod.INVERTER_FILE
    clean = inv.read_bytes()
    _flip_tensor_byte(inv)
    with pytest.raises(CheckpointError, match="checksum mismatch: the file's weights or metadata were altered") as exc:
        bundle_mod.load_bundle(out, device="cpu")
    assert str(inv) in str(exc.value)
    # a bundle of version-1 files (no checksums anywhere): bundle.json's inverter.weights_hash still catches it
    inv.write_bytes(clean)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(inv), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    tensors = dict(tensors)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 1
    save_file(tensors, str(inv), metadata={k: v for k, v in meta.items() if k != "checksum"} | {"domrand_format": "1"})
    info_path = out / bundle_mod.INFO_FILE
    info_path.write_text(json.dumps(_legacy(json.loads(info_path.read_text()))))
    with pytest.raises(CheckpointError, match="the inverter's weights hash is .* but key 'inverter.weights_hash' records"):
        bundle_mod.load_bundle(out, device="cpu")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--keep-resolution", "3"], "argument --keep-resolution: must be a power of two in [4, 1024]"),
        (["--mix", "2"], "argument --mix: must be a number in [0, 1], got 2"),
        (["--psi", "nan"], "argument --psi: 'nan' is not a finite number"),
        (["--keep-resolution", "64"], "keep_resolution 64 does not fit this pair; accepted: a power of two in [8, 16]"),
    ],
)
def test_bundle_command_refuses_invalid_options(tmp_path, pair, capsys, args, words) -> None:
    G, E = pair
    checkpoint.save_network(tmp_path / "G_ema.safetensors", G)
    checkpoint.save_network(tmp_path / "E.safetensors", E)
    argv = ["bundle", "--generator", str(tmp_path / "G_ema.safetensors"), "--inverter", str(tmp_path / "E.safetensors")]
    try:
        code = cli_main(argv + ["--out", str(tmp_path / "out")] + args)
    except SystemExit as exc:  # argparse refuses the value itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bundle_command_refuses_a_file_failing_its_checksum_and_writes_standard_json(tmp_path, pair, capsys) -> None:
    G, E = pair
    checkpoint.save_network(tmp_path / "G_ema.safetensors", G)
    checkpoint.save_network(tmp_path / "E.safetensors", E)
    (tmp_path / "eval.json").write_text('{"psnr": NaN, "ssim": 0.5}')
    argv = ["bundle", "--generator", str(tmp_path / "G_ema.safetensors"), "--inverter", str(tmp_path / "E.safetensors")]
    assert cli_main(argv + ["--out", str(tmp_path / "ok"), "--eval", str(tmp_path / "eval.json")]) == 0
    info = _strict_json((tmp_path / "ok" / bundle_mod.INFO_FILE).read_text())
    assert info["about"]["evaluation"] == {"psnr": None, "ssim": 0.5}
    _flip_tensor_byte(tmp_path / "E.safetensors")
    capsys.readouterr()
    assert cli_main(argv + ["--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "refusing to package" in err and "checksum mismatch" in err and str(tmp_path / "E.safetensors") in err
    assert not (tmp_path / "bad").exists()


def test_randomize_recursive_and_no_silent_overwrite(tmp_path, pair, capsys) -> None:
    G, E = pair
    bdir = bundle_mod.save_bundle(tmp_path / "bundle", G, E, options={"keep_resolution": 8})
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    (inp / ".hidden").mkdir()
    Image.fromarray(_frames(1, 16, 16)[0]).save(inp / "a.png")
    Image.fromarray(_frames(1, 16, 16)[0]).save(inp / "sub" / "b.png")
    Image.fromarray(_frames(1, 16, 16)[0]).save(inp / ".hidden" / "c.png")
    out = tmp_path / "out"
    base = ["randomize", "--input", str(inp), "--out", str(out), "--bundle", str(bdir), "--n", "1", "--no-progress"]
    assert cli_main(base) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a_0.png"]
    assert cli_main(base + ["--recursive"]) == 2  # a_0.png is there already
    assert "output file(s) exist already" in capsys.readouterr().err
    before = (out / "a_0.png").read_bytes()
    assert cli_main(base + ["--recursive", "--overwrite"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a_0.png", "sub/b_0.png"]
    assert (out / "a_0.png").read_bytes() == before  # same seed, same style: the same frame again
