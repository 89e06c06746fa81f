"""Make ``docs/envs.png``: the same states rendered in sim, two target presets and randomized.

Run ``python scripts/env_figures.py [--out docs/envs.png] [--size 128]``.
``python scripts/env_figures.py --target-lab [--out docs/target_lab.png]`` makes the
``target-lab`` grid instead: 8 x 4 episodes, one look each, 64x64 frames shown at 2x.
``python scripts/env_figures.py --baselines [--out docs/baselines.png]`` shows the training
frames of the ``classic`` and ``augment`` baselines (and each augmentation kind) for 8 states.
"""

from __future__ import annotations

import argparse

import numpy as np

ROWS = (("sim", None), ("target", "target-a"), ("target", "target-b"), ("randomized", None))


def figure(
    env_id: str = "domrand/Push-v0",
    n_states: int = 5,
    size: int = 128,
    seed: int = 0,
    steps_between: int = 6,
) -> np.ndarray:
    """A uint8 image grid: rows sim / target-a / target-b / randomized, columns = states.

    States come from the scripted expert; each column re-renders one state in every domain with
    ``render_as`` (the randomized row uses a fresh randomization per column).
    """
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)
    from domrand.envs.experts import expert_action

    env = gym.make(env_id, obs_mode="state", visual_domain="randomized", image_size=size, renderer="tiny")
    columns = []
    env.reset(seed=seed)
    for col in range(n_states):
        if col:
            env.reset(seed=seed + col)
        for _ in range(steps_between * (col % 3)):
            env.step(expert_action(env))
        base = env.unwrapped
        columns.append([base.render_as(domain, preset) for domain, preset in ROWS])
    env.close()
    import cv2

    gap, margin = 2, 96
    h = len(ROWS) * size + (len(ROWS) - 1) * gap
    w = margin + n_states * size + (n_states - 1) * gap
    grid = np.full((h, w, 3), 255, np.uint8)
    for r, (domain, preset) in enumerate(ROWS):
        y = r * (size + gap) + size // 2
        cv2.putText(grid, domain, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        if preset:
            cv2.putText(grid, preset, (4, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for c, col in enumerate(columns):
        x = margin + c * (size + gap)
        for r, img in enumerate(col):
            grid[r * (size + gap) : r * (size + gap) + size, x : x + size] = img
    return grid


def target_lab_grid(
    preset: str = "target-lab",
    env_id: str = "domrand/Push-v0",
    cols: int = 8,
    rows: int = 4,
    image_size: int = 64,
    scale: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """A uint8 grid of ``rows x cols`` episodes of ``preset`` (a new look each), first frame of each
    after a few expert steps, ``image_size`` frames enlarged ``scale`` x (nearest neighbour)."""
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)
    from domrand.envs.experts import expert_action

    env = gym.make(env_id, visual_domain="target", target_preset=preset, image_size=image_size, renderer="tiny")
    tiles = []
    try:
        for i in range(rows * cols):
            obs, _ = env.reset(seed=seed + i)
            for _ in range(i % 4):
                obs, *_ = env.step(expert_action(env))
            tiles.append(np.kron(obs, np.ones((scale, scale, 1), np.uint8)))
    finally:
        env.close()
    side, gap = image_size * scale, 2
    grid = np.full((rows * side + (rows - 1) * gap, cols * side + (cols - 1) * gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (side + gap) : r * (side + gap) + side, c * (side + gap) : c * (side + gap) + side] = tile
    return grid


BASELINE_ROWS = (
    ("sim", ()),
    ("classic", ()),
    ("classic", ()),
    ("classic", ()),
    ("augment", ("color_jitter", "random_conv", "random_shift")),
    ("augment", ("color_jitter", "random_conv", "random_shift")),
    ("augment", ("random_conv",)),
    ("augment", ("random_translate",)),
    ("augment", ("random_crop",)),
    ("augment", ("cutout",)),
    ("augment", ("grayscale",)),
)


def baseline_grid(
    env_id: str = "domrand/Localize-v0",
    cols: int = 8,
    image_size: int = 64,
    scale: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """A uint8 grid of the baselines' training frames: columns = states, rows = ``BASELINE_ROWS``
    (sim; three classic randomized draws; the benchmark's augment kinds twice; each other
    augmentation kind alone, with its probability forced to 1 so it shows), labelled on the left."""
    import cv2
    import gymnasium as gym

    import domrand  # noqa: F401  (registers the envs)
    from domrand.wrappers.augment import ImageAugmenter

    env = gym.make(env_id, visual_domain="sim", image_size=image_size, renderer="tiny", randomize_every=1)
    base = env.unwrapped
    sims, classic = [], []
    try:
        for i in range(cols):
            obs, _ = base.reset(seed=seed + i)
            sims.append(obs)
            draws = []
            for k in range(3):
                if k:
                    base.step(np.zeros(base.action_space.shape, np.float32))  # a new randomization draw
                draws.append(base.render_as("randomized"))
            classic.append(draws)
    finally:
        env.close()
    sim = np.stack(sims)
    rows: list[tuple[str, np.ndarray]] = []
    n_classic = 0
    for r, (name, kinds) in enumerate(BASELINE_ROWS):
        if name == "sim":
            rows.append(("sim", sim))
        elif name == "classic":
            rows.append((f"classic #{n_classic + 1}", np.stack([c[n_classic] for c in classic])))
            n_classic += 1
        else:
            forced = {"conv_prob": 1.0, "gray_prob": 1.0} if len(kinds) == 1 else {}
            aug = ImageAugmenter(kinds=kinds, **forced)
            aug.resample(list(range(cols)), seed=seed * 1000 + r)
            label = "augment" if len(kinds) > 1 else kinds[0].replace("random_", "rand ")
            rows.append((label, aug.randomize(sim)))
    side, gap, margin = image_size * scale, 2, 110
    grid = np.full((len(rows) * (side + gap) - gap, margin + cols * (side + gap) - gap, 3), 255, np.uint8)
    for r, (label, frames) in enumerate(rows):
        y = r * (side + gap)
        cv2.putText(grid, label, (4, y + side // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for c in range(cols):
            x = margin + c * (side + gap)
            grid[y : y + side, x : x + side] = np.kron(frames[c], np.ones((scale, scale, 1), np.uint8))
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/envs.png", help="output PNG")
    parser.add_argument("--env", default="domrand/Push-v0", help="env id")
    parser.add_argument("--states", type=int, default=5, help="number of states (columns)")
    parser.add_argument("--size", type=int, default=128, help="frame size in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-lab", action="store_true", help="make the target-lab grid (default out docs/target_lab.png)")
    parser.add_argument("--baselines", action="store_true", help="make the classic/augment frame grid (default out docs/baselines.png)")
    args = parser.parse_args(argv)
    from PIL import Image

    if args.baselines:
        out = "docs/baselines.png" if args.out == "docs/envs.png" else args.out
        env_id = "domrand/Localize-v0" if args.env == "domrand/Push-v0" else args.env
        Image.fromarray(baseline_grid(env_id=env_id, seed=args.seed)).save(out, optimize=True)
        print(f"wrote {out} (baselines: sim, classic x3, augment x2, each augment kind; 8 states of {env_id}, 64x64 at 2x)")
        return 0

    if args.target_lab:
        out = "docs/target_lab.png" if args.out == "docs/envs.png" else args.out
        env_id = args.env
        Image.fromarray(target_lab_grid(env_id=env_id, seed=args.seed)).save(out, optimize=True)
        print(f"wrote {out} (target-lab: 8 x 4 episodes of {env_id}, 64x64 at 2x)")
        return 0

    Image.fromarray(figure(args.env, args.states, args.size, args.seed)).save(args.out)
    print(f"wrote {args.out} (rows: {', '.join(p or d for d, p in ROWS)})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
