"""How much each target domain's look varies across episodes: the frame-mean colour spread
(``domrand.envs.look_spread``), printed per preset and as JSON.

Run ``python scripts/look_spread.py --presets target-a target-lab --episodes 200``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from domrand.envs.look_spread import episode_frames, frame_mean_colour_spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["target-a", "target-lab"], help="target presets (or sim)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes (one reset frame each)")
    parser.add_argument("--env", default="domrand/Reach-v0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="first reset seed")
    args = parser.parse_args(argv)
    results = {}
    for preset in args.presets:
        frames = episode_frames(preset, args.episodes, args.env, args.image_size, args.seed)
        means = frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)
        results[preset] = {
            "spread_per255": round(frame_mean_colour_spread(frames), 2),
            "channel_std": [round(float(v), 2) for v in means.std(axis=0)],
            "mean_rgb": [round(float(v), 1) for v in means.mean(axis=0)],
        }
        print(f"{preset:16s} frame-mean colour spread {results[preset]['spread_per255']:6.2f} /255  "
              f"(R, G, B std {results[preset]['channel_std']}, mean {results[preset]['mean_rgb']})", flush=True)
    base = args.presets[0]
    for preset in args.presets[1:]:
        ratio = results[preset]["spread_per255"] / max(results[base]["spread_per255"], 1e-9)
        print(f"{preset} / {base}: {ratio:.1f}x")
    print(json.dumps({"episodes": args.episodes, "env": args.env, "image_size": args.image_size, "seed": args.seed, **results}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
