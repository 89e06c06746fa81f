"""The few-shot curve: Task A ``stylegan`` error against the number of target photos a bundle saw.

    python scripts/few_shot_curve.py --out docs/few_shot.png "0=runs/fs0/results.json" "100=runs/fs100/results.json" ...

Each argument is ``PHOTOS=FILE`` or ``PHOTOS=FILE#ROW``: a ``domrand transfer`` results.json whose
localization section has a ``stylegan`` row (or the row named ``ROW``, e.g. one added with
``--add-to --label``); ``PHOTOS`` = how many target photos its bundle was fine-tuned on. ``--ref FILE``
adds the ``none`` / ``classic`` / ``augment`` / ``oracle`` rows of a full run as horizontal lines.
Prints a markdown table (mean ± std over seeds per target domain) and writes the plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def stylegan_rows(path: str, name: str = "stylegan") -> dict[str, tuple[float, float]]:
    """{domain: (mean, std)} of the row ``name`` (target domains only)."""
    section = json.loads(Path(path).read_text())["sections"]["localization"]
    row = section["results"][name]
    return {d: (row[d]["error_cm_mean"], row[d]["error_cm_std"]) for d in section["domains"] if d != "sim"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("points", nargs="+", metavar="PHOTOS=FILE")
    parser.add_argument("--ref", default=None, help="results.json of a full run: its other rows as lines")
    parser.add_argument("--out", default=None, help="PNG plot path")
    args = parser.parse_args(argv)
    points = []
    for item in args.points:
        n, _, path = item.partition("=")
        path, _, row = path.partition("#")
        points.append((int(n), stylegan_rows(path, row or "stylegan")))
    points.sort()
    domains = list(points[0][1])
    print("| target photos | " + " | ".join(domains) + " |")
    print("| --- |" + " --- |" * len(domains))
    for n, rows in points:
        print(f"| {n} | " + " | ".join(f"{rows[d][0]:.2f} ± {rows[d][1]:.2f}" for d in domains) + " |")
    refs: dict[str, dict[str, float]] = {}
    if args.ref:
        section = json.loads(Path(args.ref).read_text())["sections"]["localization"]
        refs = {c: {d: section["results"][c][d]["error_cm_mean"] for d in domains}
                for c in ("none", "classic", "augment", "oracle") if c in section["results"]}  # fmt: skip
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 3.8), squeeze=False)
        xs = [max(n, 1) for n, _ in points]  # 0 photos drawn at x = 1 on the log axis
        for ax, d in zip(axes[0], domains):
            ax.errorbar(xs, [r[d][0] for _, r in points], yerr=[r[d][1] for _, r in points], marker="o",
                        capsize=3, color="#2ca02c", label="stylegan")  # fmt: skip
            for (cond, vals), ls in zip(refs.items(), ("--", ":", "-.", "-")):
                ax.axhline(vals[d], color="k", ls=ls, lw=1, label=cond)
            ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([str(n) for n, _ in points])
            ax.set_xlabel("target photos the bundle was fine-tuned on")
            ax.set_ylabel("Task A error (cm)")
            ax.set_title(d)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
