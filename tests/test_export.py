"""``domrand export-frames``: writes the frames, labels and masks it says it does."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from PIL import Image

from domrand.cli import main as cli_main
from domrand.envs.scene import CLASS_IDS


def test_export_frames_writes_pngs_labels_and_masks(tmp_path):
    out = tmp_path / "frames_out"
    argv = ["export-frames", "--env", "domrand/Push-v0", "--visual-domain", "target", "--n", "12",
            "--out", str(out), "--policy", "expert", "--masks", "--seed", "4", "--image-size", "32",
            "--renderer", "tiny", "--no-progress"]
    assert cli_main(argv) == 0
    frames = sorted(os.listdir(out / "frames"))
    masks = sorted(os.listdir(out / "masks"))
    assert len(frames) == 12 and frames == masks
    with open(out / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    for col in ("frame", "episode", "step", "object_x", "object_y", "object_z", "goal_x", "goal_y",
                "tip_x", "tip_y", "tip_z", "joint0", "joint6", "is_success"):
        assert col in rows[0], col
    assert rows[0]["frame"] == "frames/" + frames[0] and rows[0]["step"] == "0"
    img = np.asarray(Image.open(out / rows[3]["frame"]))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    mask = np.asarray(Image.open(out / "masks" / frames[3]))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= set(CLASS_IDS.values())
    assert json.loads((out / "meta.json").read_text())["class_ids"] == CLASS_IDS
    # Same seed -> same first frame; an existing labels.csv is a clear one-line error (exit 2).
    assert cli_main(argv) == 2
    again = tmp_path / "again"
    argv2 = [a if a != str(out) else str(again) for a in argv]
    assert cli_main(argv2) == 0
    assert np.array_equal(np.asarray(Image.open(again / "frames" / frames[5])), np.asarray(Image.open(out / "frames" / frames[5])))


def test_export_localize_writes_one_frame_per_episode(tmp_path):
    from domrand.envs.export import export_frames

    path = export_frames("domrand/Localize-v0", str(tmp_path), 5, image_size=24, renderer="tiny", progress=False)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["episode"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert len({r["object_x"] for r in rows}) == 5
