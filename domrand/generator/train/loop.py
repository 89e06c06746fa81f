"""The outer loop shared by the pair and distillation trainers: steps, logging, metrics, snapshots.

A trainer gives ``tc`` (``batch``, ``log_steps``, ``metrics_kimg``, ``snapshot_kimg``), ``nimg``,
``step``, ``kimg``, ``run_dir``, ``train_step() -> {name: float}``, ``evaluate() -> {name: float}``,
``save_checkpoint()``, ``load_checkpoint(dir)`` and ``sample_sheet() -> uint8 grid``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from domrand.config import from_dict
from domrand.generator.train import runs
from domrand.generator.visualize import grid_upscale, save_png
from domrand.utils import atomic_write_text

METRICS = "metrics.jsonl"  # one JSON record per line: kind train | eval


def append_record(run_dir: Path | None, record: dict[str, Any]) -> None:
    """Append one record to ``run_dir/metrics.jsonl`` (nothing without a run folder)."""
    if run_dir is not None:
        with open(Path(run_dir) / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")


def stored_run(out: Path, cls: type, config: Any | None) -> tuple[Any, dict[str, Any]]:
    """What ``--resume`` continues in ``out``: its stored ``config.yaml`` as a ``cls`` (refused when
    ``config`` is given and differs) and its ``data.json`` (data paths, seed, ...)."""
    path = Path(out) / runs.CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} does not exist (no run to resume in {out})")
    stored = from_dict(cls, yaml.safe_load(path.read_text()) or {}, str(path))
    if config is not None and config != stored:
        raise ValueError(f"--resume: --config differs from the run's stored {path}; drop --config to use it")
    return stored, json.loads((Path(out) / "data.json").read_text())


def start_or_resume(
    trainer: Any,
    out: Path,
    name: str,  # the command, for messages
    required: Sequence[str],  # the files every checkpoint holds
    resume: bool,
    config_text: str,  # a new run's config.yaml
    setup: dict[str, Any],  # a new run's data.json (its data paths, seed, ...)
    command: str,  # appended to command.txt
) -> None:
    """Prepare ``out`` for ``trainer.run``: remove temp files an interrupted run left; on ``resume``
    load the newest intact checkpoint and trim ``metrics.jsonl`` to it, else write config.yaml and
    data.json; append the command line to command.txt."""
    for p in runs.remove_temp_files(out):
        print(f"{name}: removed {p}, left by an interrupted run", file=sys.stderr)
    if resume:
        ckpt = runs.resume_checkpoint(out, required, log=lambda m: print(m, file=sys.stderr))
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no intact checkpoint under {out / 'checkpoints'}")
        trainer.load_checkpoint(ckpt)
        runs.trim_metrics(out / METRICS, trainer.step)
        print(f"{name}: resumed {ckpt} (step {trainer.step}, kimg {trainer.kimg:.3f})", file=sys.stderr)
    else:
        atomic_write_text(out / "config.yaml", config_text)
        atomic_write_text(out / "data.json", json.dumps(setup, indent=1))
    with open(out / "command.txt", "a") as f:
        f.write(command + "\n")


def run_training(
    trainer: Any,
    name: str,  # progress bar and line prefix, e.g. "train-pair"
    total: int,  # train until trainer.nimg reaches this
    resolution: int,  # of the sample sheet's frames (sets its upscale)
    postfix: Callable[[dict[str, float]], dict[str, str]],  # a step's losses -> progress bar fields
    summary: Callable[[dict[str, Any], float, float], str],  # (train record, img/s, ETA s) -> progress line body
    progress: bool = True,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Run ``trainer`` to ``total`` images or ``max_seconds``; returns the last eval record.

    Every ``log_steps`` steps: a train record (mean losses, img/s, ETA) to ``metrics.jsonl``; every
    ``metrics_kimg``: an eval record; every ``snapshot_kimg`` and at the end: a checkpoint and
    ``samples_<kimg>.png``. Without ``progress`` each record is also a line on stderr."""
    from tqdm import tqdm

    tc = trainer.tc
    snap_every = max(int(round(tc.snapshot_kimg * 1000)), 1)
    metric_every = max(int(round(tc.metrics_kimg * 1000)), 1)
    next_snap = (trainer.nimg // snap_every + 1) * snap_every
    next_metric = (trainer.nimg // metric_every + 1) * metric_every
    start = t_log = time.time()
    n_log = trainer.nimg
    accum: dict[str, float] = {}
    count = 0
    last: dict[str, Any] = {}
    bar = tqdm(total=total, initial=min(trainer.nimg, total), unit="img", disable=not progress, desc=name)
    while trainer.nimg < total:
        logs = trainer.train_step()
        for k, v in logs.items():
            accum[k] = accum.get(k, 0.0) + v
        count += 1
        bar.update(min(tc.batch, total - bar.n))
        bar.set_postfix(**postfix(logs))
        done = trainer.nimg >= total or (max_seconds is not None and time.time() - start > max_seconds)
        if trainer.step % tc.log_steps == 0 or done:
            now = time.time()
            rate = (trainer.nimg - n_log) / max(now - t_log, 1e-9)
            eta = (total - trainer.nimg) / max(rate, 1e-9)
            record = {"kind": "train", "kimg": round(trainer.kimg, 3), "step": trainer.step, "img_per_s": round(rate, 2),
                      "eta_min": round(eta / 60, 1), **{k: v / count for k, v in accum.items()}}  # fmt: skip
            append_record(trainer.run_dir, record)
            if not progress:
                print(f"{name}: {summary(record, rate, eta)}", file=sys.stderr, flush=True)
            accum, count, t_log, n_log = {}, 0, now, trainer.nimg
        if trainer.nimg >= next_metric or done:
            next_metric = (trainer.nimg // metric_every + 1) * metric_every
            last = {"kind": "eval", "kimg": round(trainer.kimg, 3), "step": trainer.step, **trainer.evaluate()}
            append_record(trainer.run_dir, last)
            if not progress:
                print(f"{name}: " + " | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()),
                      file=sys.stderr, flush=True)  # fmt: skip
        if trainer.run_dir is not None and (trainer.nimg >= next_snap or done):
            next_snap = (trainer.nimg // snap_every + 1) * snap_every
            trainer.save_checkpoint()
            save_png(trainer.run_dir / f"samples_{runs.format_kimg(trainer.kimg)}.png", trainer.sample_sheet(),
                     grid_upscale(resolution))  # fmt: skip
        if done:
            break
    bar.close()
    return last
