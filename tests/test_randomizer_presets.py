"""Randomizer presets (``configs/randomizer/``, ``RandomizerOptions``): each is valid, ``from_bundle``
and the wrappers apply them between the bundle's defaults and explicit options, bad ones are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from domrand.bundle import validate_options
from domrand.cli import main as cli_main
from domrand.config import ConfigError, load_config, preset_names
from domrand.randomizer import StyleRandomizer
from domrand.randomizer_options import OPTION_NAMES, RandomizerOptions
from domrand.transfer import make_untrained_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_untrained_bundle(tmp_path_factory.mktemp("b") / "b", seed=2, student=True)


def test_every_preset_loads_and_holds_valid_options():
    names = preset_names("randomizer")
    assert {"default", "student", "reconstruct", "wide"} <= set(names)
    for name in names:
        opts = load_config(name, RandomizerOptions, kind="randomizer").as_options()
        assert validate_options(opts, name, ConfigError) == opts and set(opts) <= set(OPTION_NAMES)
    assert load_config("default", RandomizerOptions, kind="randomizer").as_options() == {}


def test_presets_sit_between_the_bundle_defaults_and_explicit_options(bundle, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    plain = StyleRandomizer.from_bundle(bundle, device="cpu", seed=1)
    assert plain.model == "teacher" and plain.noise == "random"
    student = StyleRandomizer.from_bundle(bundle, device="cpu", preset="student", seed=1)
    direct = StyleRandomizer.from_bundle(bundle, device="cpu", model="student", seed=1)
    assert student.model == "student" and np.array_equal(student.randomize(frames), direct.randomize(frames))
    recon = StyleRandomizer.from_bundle(bundle, device="cpu", preset="reconstruct")
    assert (recon.mix, recon.noise) == (0.0, "const")
    assert StyleRandomizer.from_bundle(bundle, device="cpu", preset="reconstruct", mix=0.5).mix == 0.5  # explicit wins
    own = tmp_path / "mine.yaml"
    own.write_text("psi: 0.3\n")
    assert StyleRandomizer.from_bundle(bundle, device="cpu", preset=str(own)).psi == pytest.approx(0.3)
    own.write_text("noise: sometimes\n")
    with pytest.raises(ConfigError, match="randomizer option 'noise' = 'sometimes' is invalid; accepted"):
        StyleRandomizer.from_bundle(bundle, device="cpu", preset=str(own))
    own.write_text("sharpness: 2\n")
    with pytest.raises(ConfigError, match="unknown key.*sharpness"):
        StyleRandomizer.from_bundle(bundle, device="cpu", preset=str(own))
    with pytest.raises(ConfigError, match="no bundled randomizer preset named 'fast'"):
        StyleRandomizer.from_bundle(bundle, device="cpu", preset="fast")


def test_the_wrapper_and_the_cli_take_a_preset(bundle, tmp_path, capsys):
    import gymnasium as gym

    from domrand.wrappers import StyleRandomizationObservation

    env = StyleRandomizationObservation(gym.make("domrand/Reach-v0", obs_mode="pixels", image_size=16), str(bundle),
                                        device="cpu", preset="student")  # fmt: skip
    assert env.randomizer.model == "student"
    env.close()
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "a.png")
    args = ["randomize", "--input", str(tmp_path / "a.png"), "--bundle", str(bundle), "--n", "1"]
    assert cli_main([*args, "--out", str(tmp_path / "o"), "--preset", "student"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--out", str(tmp_path / "p"), "--preset", "fast"])
    assert exit_info.value.code == 2
    assert "unknown randomizer preset 'fast'; accepted: default, reconstruct, student, wide" in capsys.readouterr().err
