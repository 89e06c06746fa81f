"""``domrand generate``: seeds are reproducible, truncation pulls toward the average image, and the
style-mixing figure's cells combine their row's coarse and their column's fine styles."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest
import torch

from domrand.cli import main as cli_main
from domrand.commands.generate import parse_seeds
from domrand.generate import load_generator, mixing_figure, render, seed_ws


def test_seeds_parse_and_reproduce(tiny_bundle, tmp_path):
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(argparse.ArgumentTypeError, match="0-7,12"):
        parse_seeds("a-b")
    assert cli_main(["generate", "--generator", str(tiny_bundle), "--seeds", "3,5", "--out", str(tmp_path / "a")]) == 0
    assert cli_main(["generate", "--generator", str(tiny_bundle), "--seeds", "5", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "seed0005.png").read_bytes() == (tmp_path / "b" / "seed0005.png").read_bytes()
    assert cv2.imread(str(tmp_path / "a" / "grid.png")) is not None


def test_truncation_zero_gives_the_average_image_for_every_seed(tiny_bundle):
    G = load_generator(tiny_bundle)
    a, b = render(G, seed_ws(G, [1, 2], 0.0), "const")
    assert np.array_equal(a, b)
    c, d = render(G, seed_ws(G, [1, 2], 1.0), "const")
    assert not np.array_equal(c, d)


def test_mixing_cells_take_coarse_from_the_row_and_fine_from_the_column(tiny_bundle):
    G = load_generator(tiny_bundle)
    ws = seed_ws(G, [4, 9], 1.0)
    k = G.synthesis.num_ws_up_to(16)
    expected = render(G, torch.cat([ws[:1, :k], ws[1:, k:]], 1), "const")[0]
    fig = mixing_figure(G, [4], [9], 1.0, 16, "const")
    r = G.img_resolution * 2
    cell = fig[r + 14 : 2 * r + 14, r : 2 * r]  # row 1 (after the header row + its label strip), column 1
    assert np.array_equal(cell, cv2.resize(expected, (r, r), interpolation=cv2.INTER_NEAREST))
