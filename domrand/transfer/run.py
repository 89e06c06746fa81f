"""``run_benchmark``: every task of a config, one results dict (and the report files)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from domrand.config import to_dict
from domrand.transfer.bundles import BUNDLED, UNTRAINED_BUNDLE, resolve_bundle
from domrand.transfer.common import cache_root, env_source_hash
from domrand.transfer.conditions import FrameContext
from domrand.transfer.config import BenchmarkConfig, validate
from domrand.transfer.control import run_control
from domrand.transfer.imitation import run_imitation
from domrand.transfer.localization import run_localization
from domrand.transfer.report import write_report


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import stable_baselines3

        info["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        info["stable_baselines3"] = None
    return info


def run_benchmark(
    cfg: BenchmarkConfig,
    out: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every task of ``cfg``; write the report into ``out`` (if given); return the results dict."""
    import torch

    validate(cfg)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    cache = cache_root(cfg)
    bundle = resolve_bundle(cfg, cache) if "stylegan" in cfg.conditions else None
    ctx = FrameContext(cfg, cache, bundle, progress)
    started = time.time()
    results: dict[str, Any] = {
        "name": cfg.name,
        "config": to_dict(cfg),
        "domains": ["sim", *cfg.target_presets],
        "bundle": {
            "path": None if bundle is None else str(bundle),
            "configured": cfg.bundle,
            "note": cfg.bundle_note
            or {UNTRAINED_BUNDLE: "untrained tiny bundle: checks the machinery; stylegan numbers are meaningless",
                BUNDLED: "the bundled default model (docs/model_card.md)"}.get(str(cfg.bundle), ""),
        },
        "machine": machine_info(),
        "env_source_hash": env_source_hash(),  # frames depend on the env code version
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "sections": {},
    }
    if "localization" in cfg.tasks:
        results["sections"]["localization"] = run_localization(ctx, log)
    if "imitation" in cfg.tasks:
        for env_id in cfg.imitation.envs:
            results["sections"]["imitation/" + env_id.split("/")[-1]] = run_imitation(ctx, env_id, log)
    if "control" in cfg.tasks:
        for env_id in cfg.control.envs:
            results["sections"]["control/" + env_id.split("/")[-1]] = run_control(ctx, env_id, log)
    results["duration_s"] = round(time.time() - started, 2)
    if out is not None:
        results["files"] = {k: str(v) for k, v in write_report(results, out, cfg).items()}
    return results


def dumps(results: dict[str, Any]) -> str:
    """results -> JSON text (what results.json holds)."""
    return json.dumps(results, indent=2, allow_nan=True) + "\n"
