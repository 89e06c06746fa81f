"""Markdown A/B table of ``domrand eval-bundle`` results, with the aligned-pair bars beside them.

    python scripts/ab_table.py "today (target-a)=eval_a.json" "candidate=eval_b.json" ...

Each argument is ``LABEL=FILE``. Rows: the bars of issue 16 (oracle probe, cube IoU, mIoU,
sim reconstruction PSNR, SWD, diversity ratio) and the references (target ceiling, raw sim floor).
"""

from __future__ import annotations

import json
import sys

BARS = {
    "oracle probe (cm)": "<= 2.0",
    "cube IoU": ">= 0.5",
    "mIoU": ">= 0.75",
    "sim reconstruction PSNR (dB)": ">= 32",
    "SWD to target (x1e3)": "<= today's",
    "diversity (styles / target spread)": "0.7 - 1.5",
}


def figures(r: dict) -> dict[str, str]:
    geo = r["geometry"]["randomized"]
    return {
        "oracle probe (cm)": f"{r['oracle_probe_cm']['randomized']:.2f}",
        "cube IoU": f"{geo['per_class'].get('object', float('nan')):.3f}",
        "mIoU": f"{geo['miou']:.3f}",
        "sim reconstruction PSNR (dB)": f"{r['reconstruction']['psnr']:.2f} (cube {r['reconstruction'].get('object_psnr', float('nan')):.1f})",
        "SWD to target (x1e3)": f"{r['swd']['randomized']:.0f}",
        "diversity (styles / target spread)": f"{r['diversity']['ratio']:.2f} ({r['diversity']['styles_spread']:.1f} / {r['diversity']['target_spread']:.1f})",
    }


def main(argv: list[str]) -> int:
    runs = []
    for arg in argv:
        label, sep, path = arg.partition("=")
        if not sep:
            print(f"expected LABEL=FILE, got {arg!r}", file=sys.stderr)
            return 2
        with open(path) as f:
            runs.append((label, json.load(f)))
    print("| figure | bar | " + " | ".join(label for label, _ in runs) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in runs) + " |")
    cols = [figures(r) for _, r in runs]
    for name, bar in BARS.items():
        print(f"| {name} | {bar} | " + " | ".join(c[name] for c in cols) + " |")
    r = runs[0][1]
    print(f"\nReferences (same sets): target frames probe {r['oracle_probe_cm']['target']:.2f} cm, cube IoU "
          f"{r['geometry']['target']['per_class'].get('object', float('nan')):.3f}, mIoU {r['geometry']['target']['miou']:.3f}; "
          f"raw sim frames probe {r['oracle_probe_cm']['sim']:.2f} cm, cube IoU "
          f"{r['geometry']['sim']['per_class'].get('object', float('nan')):.3f}, mIoU {r['geometry']['sim']['miou']:.3f}, "
          f"SWD {r['swd']['sim']:.0f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
