"""Adding rows to an earlier benchmark run: ``domrand transfer --add-to OLD/results.json``.

The new run must measure the same thing as the old one (the same config but for the conditions,
the bundle and machine-only settings, and the same env sources hash); its rows join the old table
(under ``--label`` when given, e.g. another bundle's ``stylegan`` row) and the bars are computed
again from the joined table. ``merged`` in the result lists every run that contributed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from domrand.config import ConfigError
from domrand.transfer.imitation import imitation_bar
from domrand.transfer.localization import localization_bar

# Config keys that may differ between the runs joined in one table.
FREE_KEYS = ("conditions", "bundle", "bundle_note", "cache_dir", "device", "threads")


def load_results(path: str | Path) -> dict[str, Any]:
    """An earlier ``results.json`` (clear errors for a missing or foreign file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--add-to: {path} does not exist (the results.json of an earlier 'domrand transfer' run)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--add-to: {path} is not valid JSON ({' '.join(str(exc).split())[:100]})") from None
    if not isinstance(data, dict) or "sections" not in data or "config" not in data:
        raise ConfigError(f"--add-to: {path} is not a results.json written by 'domrand transfer'")
    return data


TASK_SECTIONS = {"localization": "localization", "imitation": "imitation", "control": "control"}


def check_compatible(old: dict[str, Any], config: dict[str, Any], env_hash: str, label: str | None = None) -> None:
    """``ConfigError`` unless a run of ``config`` measures what ``old`` measured and its rows are new
    (checked before any work). Free to differ: ``FREE_KEYS`` and the config sections of tasks neither
    run has."""
    conds = list(config["conditions"])
    if label is not None and len(conds) != 1:
        raise ConfigError(f"--label names one added row; this run has {len(conds)} conditions ({', '.join(conds)})")
    for name, sec in old["sections"].items():
        for row in [label] if label is not None else conds:
            if row in sec.get("results", {}):
                raise ConfigError(f"--add-to: the earlier run already has a row {row!r} in {name}; pass --label NAME for a second one")
    tasks = set(old["config"].get("tasks", [])) | set(config.get("tasks", []))
    unused = {section for task, section in TASK_SECTIONS.items() if task not in tasks}
    a = {k: v for k, v in old["config"].items() if k not in FREE_KEYS and k not in unused}
    b = {k: v for k, v in config.items() if k not in FREE_KEYS and k not in unused}
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differ:
        raise ConfigError(f"--add-to: the runs measure different things: config keys {differ} differ; "
                          "rerun with the earlier run's config (its config.yaml) and other --conditions")  # fmt: skip
    if old.get("env_source_hash") != env_hash:
        raise ConfigError(f"--add-to: the env sources changed since the earlier run (hash {old.get('env_source_hash')} vs "
                          f"{env_hash}): its frames differ; rerun all conditions in one run")  # fmt: skip


def merge_results(old: dict[str, Any], new: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """``old`` with ``new``'s rows added (renamed to ``label`` when given); bars recomputed."""
    check_compatible(old, new["config"], new.get("env_source_hash"), label)
    conds = list(new["config"]["conditions"])
    out = copy.deepcopy(old)
    for name, sec in new["sections"].items():
        if name not in out["sections"]:
            raise ConfigError(f"--add-to: the earlier run has no section {name!r} (it has {', '.join(out['sections'])})")
        target = out["sections"][name]
        for cond in conds:
            row = label or cond
            target["results"][row] = sec["results"][cond]
            if cond in (sec.get("in_domain") or {}):
                target.setdefault("in_domain", {})[row] = sec["in_domain"][cond]
            for key, diag in (sec.get("diagnostics") or {}).items():
                if cond in diag["results"] and key in target.get("diagnostics", {}):
                    target["diagnostics"][key]["results"][row] = diag["results"][cond]
        presets = list(out["config"]["target_presets"])
        if target.get("task") == "localization":
            target["bar"] = localization_bar(target["results"], presets)
        elif target.get("task") == "imitation":
            target["bar"] = imitation_bar(target["results"], presets)
    runs = out.setdefault("merged", [{"conditions": old["config"]["conditions"], "bundle": old.get("bundle"),
                                      "started": old.get("started"), "duration_s": old.get("duration_s")}])  # fmt: skip
    runs.append({"conditions": conds, "label": label, "bundle": new.get("bundle"), "started": new.get("started"),
                 "duration_s": new.get("duration_s")})  # fmt: skip
    return out
