"""Checkpoints: bit-identical round trip, atomic writes, clear errors, pickle refused."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from domrand.checkpoint import (
    CHECKSUM_KEY,
    FORMAT_VERSION,
    CheckpointError,
    content_checksum,
    load_network,
    load_tensors,
    read_network_info,
    save_network,
    save_tensors,
    weights_hash,
)
from domrand.config import load_config, replace
from domrand.generator.train.stylegan_config import GeneratorConfig
from domrand.generator.nn.networks import Discriminator, Generator


@pytest.fixture()
def G():
    torch.manual_seed(0)
    g = Generator(load_config("tiny", GeneratorConfig).network).eval()
    with torch.no_grad():
        g.mapping.w_avg.normal_()
    return g


def test_round_trip_gives_bit_identical_outputs(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G, extra={"kimg": 1.5})
    G2 = load_network(path, expected_class="Generator")
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const", psi=0.7), G2(z, noise_mode="const", psi=0.7))
    assert torch.equal(G2.mapping.w_avg, G.mapping.w_avg)  # buffers travel too
    assert weights_hash(G) == weights_hash(G2)
    info = read_network_info(path)
    assert info["class"] == "Generator" and info["extra"] == {"kimg": 1.5}
    assert info["config"]["network"]["resolution"] == 16
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_discriminator_round_trip(tmp_path):
    cfg = load_config("tiny", GeneratorConfig).network
    D = Discriminator(cfg, progressive=True).eval()
    save_network(tmp_path / "D.safetensors", D)
    D2 = load_network(tmp_path / "D.safetensors", Discriminator)
    x = torch.randn(4, 3, 16, 16)
    assert D2.progressive and torch.equal(D(x), D2(x))


def test_truncated_file_is_a_clear_error(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"G\.safetensors.*truncated or corrupt"):
        load_network(path)


def test_corrupted_header_is_a_clear_error(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    data = bytearray(path.read_bytes())
    data[10:40] = b"#" * 30
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="G.safetensors"):
        load_network(path)


def test_wrong_version_and_wrong_class_are_refused(tmp_path, G):
    path = tmp_path / "old.safetensors"
    tensors = {k: v.contiguous().clone() for k, v in G.state_dict().items()}
    save_file(tensors, str(path), metadata={"domrand_format": "0", "class": "Generator", "config": "{}"})
    with pytest.raises(CheckpointError, match="format version '0' is not supported \\(metadata key 'domrand_format'"):
        load_network(path)
    good = tmp_path / "G.safetensors"
    save_network(good, G)
    with pytest.raises(CheckpointError, match="holds a Generator, expected a Discriminator"):
        load_network(good, expected_class="Discriminator")


def _rewrite(path, tensors, meta):
    """Write ``tensors`` + ``meta`` with a fresh, valid checksum (a consistent but different file)."""
    meta = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    meta["domrand_format"] = FORMAT_VERSION
    meta[CHECKSUM_KEY] = content_checksum(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


def _read(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def test_mismatched_weights_are_refused(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    tensors, meta = _read(path)
    # a consistent file whose stored config rebuilds a network of other shapes
    net = json.loads(meta["config"])["network"]
    _rewrite(path, tensors, meta | {"config": json.dumps({"network": net | {"z_dim": net["z_dim"] // 2}})})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_network(path)
    del tensors["mapping.w_avg"]
    _rewrite(path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"missing: \['mapping.w_avg'\]"):
        load_network(path)


def test_config_implying_more_weights_than_the_file_holds_is_refused_before_building(tmp_path, G, monkeypatch):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    tensors, meta = _read(path)
    net = json.loads(meta["config"])["network"]
    _rewrite(path, tensors, meta | {"config": json.dumps({"network": net | {"channel_max": 1024, "channel_base": 65536}})})
    built = []
    monkeypatch.setattr(Generator, "__init__", lambda self, *a, **k: built.append(1) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(CheckpointError, match="implies at least .* parameters but the file holds"):
        load_network(path)
    assert built == []


@pytest.mark.parametrize(
    "key, value, form",
    [
        ("mapping_layers", 200000, "an integer in [1, 32]"),
        ("channel_base", 2**40, "an integer in [1, 65536]"),
        ("resolution", 48, "a power of two in [16, 512]"),
        ("conv_clamp", "big", "a finite number"),
        ("mapping_lr_mult", True, "a finite number"),
        ("fir_kernel", [1] * 1000, "a list of 1 to 16 integers"),
        ("colour", 1, "one of the keys"),
    ],
)
def test_config_fields_are_bounded(tmp_path, G, key, value, form):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    tensors, meta = _read(path)
    net = json.loads(meta["config"])["network"]
    _rewrite(path, tensors, meta | {"config": json.dumps({"network": net | {key: value}})})
    with pytest.raises(CheckpointError) as exc:
        load_network(path)
    assert f"'network.{key}'" in str(exc.value) and form in str(exc.value) and str(path) in str(exc.value)


def test_checksum_covers_config_extra_and_tensors(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G, extra={"kimg": 1})
    tensors, meta = _read(path)
    assert meta[CHECKSUM_KEY].startswith("sha256:")
    net = json.loads(meta["config"])["network"]
    edits = [
        ("config", json.dumps({"network": net | {"conv_clamp": 128.0}})),
        ("extra", json.dumps({"kimg": 2})),
        ("class", "Discriminator"),
    ]
    for key, value in edits:
        save_file(tensors, str(path), metadata=meta | {key: value})
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            load_network(path)
    changed = dict(tensors)
    changed["mapping.w_avg"] = tensors["mapping.w_avg"] + 1
    save_file(changed, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_network(path)
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if k != CHECKSUM_KEY})
    with pytest.raises(CheckpointError, match="'checksum' is missing"):
        load_network(path)


def test_version_1_files_without_a_checksum_still_load(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    tensors, meta = _read(path)
    legacy = {k: v for k, v in meta.items() if k != CHECKSUM_KEY} | {"domrand_format": "1"}
    save_file(tensors, str(path), metadata=legacy)
    assert weights_hash(load_network(path)) == weights_hash(G)
    save_file(tensors, str(path), metadata=meta | {"domrand_format": "1", "extra": '{"x": 1}'})
    with pytest.raises(CheckpointError, match="checksum mismatch"):  # a checksum found is verified
        load_network(path)


def test_huge_header_length_is_refused_before_reading(tmp_path, G):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    data = bytearray(path.read_bytes())
    data[:8] = (2**62).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="header length 4611686018427387904 exceeds"):
        load_network(path)


_PICKLE_MSG = r"looks like a pickle / torch\.save file; domrand loads only \.safetensors"


def test_pickle_is_refused(tmp_path, G):
    pt = tmp_path / "G.pt"
    torch.save(G.state_dict(), pt)
    with pytest.raises(CheckpointError, match=_PICKLE_MSG):
        load_network(pt)
    disguised = tmp_path / "G.safetensors"
    disguised.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=_PICKLE_MSG):
        load_network(disguised)
    zipped = tmp_path / "Z.safetensors"
    zipped.write_bytes(pt.read_bytes())  # torch.save's zip archive under another name
    with pytest.raises(CheckpointError, match=_PICKLE_MSG):
        load_network(zipped)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_network(tmp_path / "nope.safetensors")


def test_tensor_state_round_trip(tmp_path):
    state = {"rng": torch.get_rng_state(), "adam.0.exp_avg": torch.randn(3, 4)}
    save_tensors(tmp_path / "s.safetensors", state, {"step": 12, "p": 0.25})
    back, meta = load_tensors(tmp_path / "s.safetensors")
    assert meta == {"step": 12, "p": 0.25}
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_failed_write_keeps_the_old_file(tmp_path, G, monkeypatch):
    path = tmp_path / "G.safetensors"
    save_network(path, G)
    before = path.read_bytes()
    import domrand.utils as utils

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(utils.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_network(path, G, extra={"new": True})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["G.safetensors"]


def test_a_safetensors_file_whose_first_byte_is_0x80_is_not_mistaken_for_pickle(tmp_path, G):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 happens."""
    path = tmp_path / "G.safetensors"
    for pad in range(300):
        save_network(path, G, extra={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("could not produce a header length with low byte 0x80")
    assert load_network(path).extra == {"pad": "x" * pad}
