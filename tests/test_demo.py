"""``domrand demo`` end to end: the README's command with the bundled model, and with ``--bundle``."""

import numpy as np
from PIL import Image

from domrand.cli import main

FRAME = 2 * 64  # 64x64 frames shown at 2x
GAP = 2
LABEL = 92


def test_demo_with_the_bundled_model_and_default_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0  # the README's command: domrand/Reach-v0, demo/, 40 steps, 4 styles, 5 columns
    grid = np.asarray(Image.open(tmp_path / "demo" / "grid.png"))
    rows, cols = 2 + 4, 5  # sim, reconstruction, 4 styles
    assert grid.shape == (rows * FRAME + (rows - 1) * GAP, LABEL + cols * FRAME + (cols - 1) * GAP, 3)
    gif = Image.open(tmp_path / "demo" / "episode.gif")
    assert gif.n_frames == 40 and gif.size == (2 * FRAME + GAP, FRAME)
    # the styles differ from one another and from the sim row (the model does something)
    cells = [grid[r * (FRAME + GAP) : r * (FRAME + GAP) + FRAME, LABEL:].astype(float) for r in range(rows)]
    for a, b in [(0, 2), (2, 3), (3, 4)]:
        assert np.abs(cells[a] - cells[b]).mean() > 2.0
    printed = capsys.readouterr().out
    assert "frames/s" in printed
    assert "StyleRandomizationObservation(gym.make('domrand/Reach-v0', obs_mode='pixels'))" in printed


def test_demo_with_a_bundle_path(tmp_path, tiny_bundle, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--bundle", str(tiny_bundle), "--out", str(out), "--steps", "12", "--styles", "2", "--columns", "3", "--device", "cpu"]) == 0
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] == 4 * FRAME + 3 * GAP
    assert grid.shape[1] == LABEL + 3 * FRAME + 2 * GAP
    gif = Image.open(out / "episode.gif")
    assert gif.n_frames == 12 and gif.size == (2 * FRAME + GAP, FRAME)
    assert str(tiny_bundle) in capsys.readouterr().out


def test_demo_without_a_bundle_says_what_is_missing(tmp_path, capsys, monkeypatch):
    import domrand.bundle as bundle

    monkeypatch.setattr(bundle, "DEFAULT_BUNDLE", tmp_path / "none")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no bundle is installed" in err and "domrand bundle" in err
