"""Presets load into frozen dataclasses; bad keys and values are clear errors."""

import dataclasses

import pytest

from domrand.config import ConfigError, dump_yaml, load_config, preset_names, replace

from domrand.generator.train.stylegan_config import GeneratorConfig


def test_bundled_presets_load_by_name_and_path():
    assert {"tiny", "small64", "mid64", "base64", "base128"} <= set(preset_names("generator"))
    by_name = load_config("small64", GeneratorConfig)
    by_path = load_config("configs/generator/small64.yaml", GeneratorConfig)
    assert by_name == by_path
    assert by_name.network.resolution == 64 and by_name.network.channel_base == 2048
    mid = load_config("mid64", GeneratorConfig).network  # the earlier small64 definition
    assert (mid.resolution, mid.channel_base, mid.channel_max) == (64, 4096, 256)
    assert load_config("base128", GeneratorConfig).network.resolution == 128
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_name.name = "x"  # type: ignore[misc]


def test_unknown_keys_list_the_valid_ones(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork:\n  resolutoin: 64\n")
    with pytest.raises(ConfigError, match=r"network: unknown key\(s\) 'resolutoin'; valid keys: resolution, z_dim"):
        load_config(bad, GeneratorConfig)
    bad.write_text("trainig: {}\n")
    with pytest.raises(ConfigError, match="valid keys: name, network, training"):
        load_config(bad, GeneratorConfig)


def test_wrong_types_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  resolution: sixty-four\n")
    with pytest.raises(ConfigError, match="network.resolution: expected an integer"):
        load_config(bad, GeneratorConfig)
    bad.write_text("training:\n  xflip: 1\n")
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config(bad, GeneratorConfig)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(bad, GeneratorConfig)


def test_missing_preset_and_file():
    with pytest.raises(ConfigError, match="no bundled generator preset named 'huge'; available: .*small64"):
        load_config("huge", GeneratorConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/x.yaml", GeneratorConfig)


def test_replace_with_dotted_keys_and_yaml_round_trip(tmp_path):
    cfg = replace(load_config("tiny", GeneratorConfig), **{"training.batch": 4, "name": "t2"})
    assert cfg.training.batch == 4 and cfg.name == "t2"
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path, GeneratorConfig) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        replace(cfg, **{"training.batchsize": 4})
