"""Transfer benchmark outputs: ``results.json``, the printed table and ``results.png``.

A results dict (``domrand.transfer.run_benchmark``) holds ``sections``; each section (one task, one
env) has ``metric``, ``domains`` (``sim`` first, then one per target preset) and
``results[condition][domain]`` with ``<key>_mean``, ``<key>_std`` and ``per_seed`` rows, and (Task A)
``in_domain[condition]``: the same statistics on test states rendered like the condition's training
frames. The table has one row per condition, an ``in-domain`` column and one column per domain; the plot one panel per section, grouped bars
per domain, error bars = std over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from domrand.config import dump_yaml
from domrand.transfer.conditions import get_condition
from domrand.utils import atomic_write_text

def _bar_style(row: str) -> dict[str, Any]:
    """Plot colour of a row: its condition's; a labelled extra row (``"stylegan (old bundle)"``, from
    ``--add-to --label``) takes its base condition's colour, hatched."""
    base = row.split(" ", 1)[0]
    try:
        color = get_condition(base).color
    except KeyError:  # a row of a condition that is not registered
        return {}
    return {"color": color} if base == row else {"color": color, "alpha": 0.55, "hatch": "//", "edgecolor": "k"}


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results_json(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(_json_safe(results), indent=2) + "\n")
    return path


def _cell(section: dict[str, Any], stats: dict[str, Any]) -> str:
    if section["metric"] == "error_cm":
        return (
            f"{stats['error_cm_mean']:.2f} ± {stats['error_cm_std']:.2f}"
            f" ({100 * stats['within_mean']:.0f}%)"
        )
    return f"{stats['success_rate_mean']:.2f} ± {stats['success_rate_std']:.2f}"


IN_DOMAIN = "in-domain"  # the column of each condition's own-frames test error (section["in_domain"])


def _domain_header(d: str) -> str:
    return "in-domain (own frames)" if d == IN_DOMAIN else d


def _columns(section: dict[str, Any]) -> list[str]:
    """Table/plot columns: ``in-domain`` first when the section has it, then the test domains."""
    return ([IN_DOMAIN] if section.get("in_domain") else []) + list(section["domains"])


def _stats(section: dict[str, Any], cond: str, column: str) -> dict[str, Any] | None:
    if column == IN_DOMAIN:
        return (section.get("in_domain") or {}).get(cond)
    return section["results"][cond][column]


def format_section(name: str, section: dict[str, Any]) -> str:
    """One section as a plain-text table (rows: conditions, columns: domains)."""
    title = f"== {name}: {section.get('metric_label', section['metric'])}"
    if section.get("skipped"):
        return f"{title}\n   skipped: {section['skipped']}\n"
    domains = _columns(section)
    header = ["condition", *[_domain_header(d) for d in domains]]
    rows = [header]
    for cond in section["results"]:
        cells = [_stats(section, cond, d) for d in domains]
        rows.append([cond, *[("-" if st is None else _cell(section, st)) for st in cells]])
    if section["metric"] == "error_cm":
        base = section["baselines"]["predict_mean"]
        rows.append(["(predict mean)", *[f"{base['error_cm']:.2f} ({100 * base['within']:.0f}%)" for _ in domains]])
    elif "expert" in section.get("baselines", {}):
        rate = section["baselines"]["expert"]["success_rate"]
        rows.append(["(scripted expert)", *[f"{rate:.2f}" for _ in domains]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title]
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    seeds = section.get("seeds", [])
    if section["metric"] == "error_cm":
        lines.append(
            f"mean ± std over {len(seeds)} seed(s); (x%) = share of test frames within {section['within_cm']:g} cm; "
            f"{section['train_frames']} train states x {section['views']} view(s), {section['test_frames']} test states"
        )
    elif section.get("task") == "imitation":
        demos = section["demonstrations"]
        lines.append(
            f"success rate, mean ± std over {len(seeds)} seed(s); {section['eval_episodes']} closed-loop episodes per "
            f"model and domain; behaviour cloning on {demos['episodes']} noisy-expert episodes ({demos['steps']} steps)"
        )
    else:
        lines.append(
            f"success rate, mean ± std over {len(seeds)} seed(s); {section['eval_episodes']} episodes per model and "
            f"domain; {section['steps']} PPO steps"
        )
    if section.get("in_domain"):
        lines.append(f"in-domain: {section.get('in_domain_about', 'each model on test states rendered like its training frames')}")
    if section.get("bar"):
        word = {True: "met", False: "NOT met", None: "not checked (no baseline rows)"}
        verdicts = ", ".join(f"{d}: {word[v['met']]}" for d, v in section["bar"].items())
        rule = ("stylegan > none and >= classic" if section.get("task") == "imitation"
                else "stylegan <= none / 2 and below classic, augment")
        lines.append(f"bar ({rule}): {verdicts}")
    for name, diag in (section.get("diagnostics") or {}).items():
        lines.append(_format_matrix(f"diagnostic {name}: {diag['about']}", diag["results"]))
    return "\n".join(lines) + "\n"


def _format_matrix(title: str, table: dict[str, dict[str, float]]) -> str:
    """A small condition x column table of floats."""
    cols: list[str] = []
    for row in table.values():
        cols += [c for c in row if c not in cols]
    rows = [["condition", *cols]] + [[c, *[f"{r[k]:.2f}" if k in r else "-" for k in cols]] for c, r in table.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [title]
    for row in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def format_table(results: dict[str, Any]) -> str:
    """Every section's table, with the benchmark's name and bundle."""
    head = f"domrand transfer benchmark '{results.get('name', '?')}'"
    bundle = results.get("bundle") or {}
    if bundle.get("path"):
        head += f" - stylegan bundle: {bundle['path']}"
        if bundle.get("note"):
            head += f" ({bundle['note']})"
    parts = [head]
    for name, section in results.get("sections", {}).items():
        parts.append(format_section(name, section))
    return "\n".join(parts)


def plot_results(results: dict[str, Any], path: str | Path) -> Path:
    """Grouped bar chart (one panel per section; bars = conditions; error bars = std over seeds)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sections = [(n, s) for n, s in results.get("sections", {}).items() if not s.get("skipped")]
    path = Path(path)
    fig, axes = plt.subplots(1, max(1, len(sections)), figsize=(5.5 * max(1, len(sections)), 4.0), squeeze=False)
    if not sections:
        axes[0, 0].text(0.5, 0.5, "no results (all sections skipped)", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, (name, section) in zip(axes[0], sections):
        domains = _columns(section)
        conds = list(section["results"])
        key = section["metric"]
        width = 0.8 / max(1, len(conds))
        for i, cond in enumerate(conds):
            cells = [_stats(section, cond, d) for d in domains]
            means = [math.nan if st is None else st[f"{key}_mean"] for st in cells]
            stds = [0.0 if st is None else st[f"{key}_std"] for st in cells]
            xs = [j + (i - (len(conds) - 1) / 2) * width for j in range(len(domains))]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=cond, **_bar_style(cond))
        if key == "error_cm":
            ax.axhline(section["baselines"]["predict_mean"]["error_cm"], color="k", ls="--", lw=1, label="predict mean")
            ax.set_ylabel("mean error (cm), lower is better")
        else:
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("success rate, higher is better")
        ax.set_xticks(range(len(domains)))
        ax.set_xticklabels([_domain_header(d) for d in domains])
        ax.set_title(f"{name} ({len(section.get('seeds', []))} seeds)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"domrand transfer benchmark '{results.get('name', '?')}'")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], out: str | Path, cfg: Any = None) -> dict[str, Path]:
    """Write results.json, table.txt, results.png (and config.yaml when ``cfg`` is given) into ``out``.

    Without matplotlib the plot is skipped with a note; everything else is written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "results_json": out / "results.json",
        "table": out / "table.txt",
        "plot": out / "results.png",
    }
    if cfg is not None:
        files["config"] = out / "config.yaml"
        atomic_write_text(files["config"], dump_yaml(cfg))
    atomic_write_text(files["table"], format_table(results))
    try:
        plot_results(results, files["plot"])
    except ImportError:  # matplotlib is optional (the test extra has it; a plain install may not)
        del files["plot"]
        print(f"domrand transfer: {out / 'results.png'} not drawn: matplotlib is not installed "
              "(pip install matplotlib); results.json and table.txt are complete")
    results = {**results, "files": {k: str(v) for k, v in files.items()}}
    write_results_json(results, files["results_json"])
    return files
