"""``domrand transfer``: the transfer benchmark's command line (a thin layer over ``run_benchmark``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from domrand.commands import cli_args
from domrand.config import ConfigError, dump_yaml, parse_overrides, to_dict
from domrand.transfer.bundles import BUNDLED, UNTRAINED_BUNDLE
from domrand.transfer.config import CONDITIONS, TASKS, load_benchmark_config
from domrand.transfer.common import env_source_hash
from domrand.transfer.merge import check_compatible, load_results, merge_results
from domrand.transfer.report import format_table, write_report
from domrand.transfer.run import run_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="smoke", help="benchmark preset name or YAML path (configs/benchmark/<name>.yaml)")
    parser.add_argument("--conditions", nargs="+", default=None, metavar="C", help=f"subset of: {' '.join(CONDITIONS)}")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="T", help=f"subset of: {' '.join(TASKS)}")
    parser.add_argument("--seeds", type=cli_args.positive_int, default=None, metavar="N", help="number of seeds (overrides the config)")
    parser.add_argument("--targets", nargs="+", default=None, metavar="P", help="target presets (target-a target-b ... or seed:N)")
    parser.add_argument("--bundle", default=None, help=f"stylegan bundle path, {BUNDLED!r} (the packaged model) or {UNTRAINED_BUNDLE!r} (machinery check)")
    parser.add_argument("--out", default=None, help="output folder (default runs/benchmark/<config name>)")
    parser.add_argument("--cache", default=None, help="frame cache folder (default ~/.cache/domrand/transfer)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=cli_args.nonnegative_int, default=None, help="torch CPU threads (0 = default)")
    parser.add_argument("--set", nargs="+", action="extend", default=None, metavar="KEY=VALUE", help="override config values (dotted keys, YAML values), e.g. localization.epochs=5")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--add-to", default=None, metavar="RESULTS_JSON",
                        help="add this run's rows to an earlier run's results.json (same config but the conditions and bundle); "
                             "the joined table, bars and plot go to --out")  # fmt: skip
    parser.add_argument("--label", default=None, help="with --add-to: the name of the added row (one condition), e.g. 'stylegan (old bundle)'")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")


def main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "conditions": None if args.conditions is None else tuple(args.conditions),
        "tasks": None if args.tasks is None else tuple(args.tasks),
        "seeds": args.seeds,
        "target_presets": None if args.targets is None else tuple(args.targets),
        "bundle": args.bundle,
        "cache_dir": args.cache,
        "device": args.device,
        "threads": args.threads,
    }
    overrides.update(parse_overrides(args.set))
    cfg = load_benchmark_config(args.config, **overrides)
    if args.label is not None and args.add_to is None:
        raise ConfigError("--label names a row added with --add-to RESULTS_JSON")
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        return 0
    out = Path(args.out) if args.out else Path("runs") / "benchmark" / cfg.name
    if args.add_to is not None:
        earlier = load_results(args.add_to)
        check_compatible(earlier, to_dict(cfg), env_source_hash(), args.label)  # before any work
        new = run_benchmark(cfg, None, progress=not args.no_progress)
        results = merge_results(earlier, new, args.label)
        results["files"] = {k: str(v) for k, v in write_report(results, out, None).items()}
    else:
        results = run_benchmark(cfg, out, progress=not args.no_progress)
    print(format_table(results))
    files = results.get("files", {})
    print(f"wrote {', '.join(files.values())}" if files else "", flush=True)
    return 0
