"""``domrand demo`` end to end with a small untrained bundle (the bundled model is not shipped yet)."""

import numpy as np
import pytest
import torch
from PIL import Image

from domrand.cli import main


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from domrand.bundle import save_bundle
    from domrand.config import GeneratorConfig, load_config
    from domrand.generator.inverter import Inverter, InverterConfig
    from domrand.generator.networks import Generator

    torch.manual_seed(0)
    G = Generator(load_config("tiny", GeneratorConfig).network)
    with torch.no_grad():
        E = Inverter.for_generator(G, load_config("tiny", InverterConfig, kind="inverter").network)
    path = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(path, G, E)
    return path


def test_demo_writes_grid_and_gif(tmp_path, tiny_bundle, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--bundle", str(tiny_bundle), "--out", str(out), "--steps", "12", "--styles", "2", "--columns", "3", "--device", "cpu"]) == 0
    grid = np.asarray(Image.open(out / "grid.png"))
    # rows: sim, reconstruction, 2 styles; 64x64 frames shown at 2x with 2-pixel gaps and a label column
    assert grid.shape[0] == 4 * 128 + 3 * 2
    assert grid.shape[1] == 92 + 3 * 128 + 2 * 2
    gif = Image.open(out / "episode.gif")
    assert gif.n_frames == 12 and gif.size == (2 * 128 + 2, 128)
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "StyleRandomizationObservation" in printed


def test_demo_without_a_bundle_says_what_is_missing(tmp_path, capsys, monkeypatch):
    import domrand.bundle as bundle

    monkeypatch.setattr(bundle, "DEFAULT_BUNDLE", tmp_path / "none")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no bundle is installed" in err and "domrand bundle" in err
