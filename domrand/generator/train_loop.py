"""The outer loop shared by the pair and distillation trainers: steps, logging, metrics, snapshots.

A trainer gives ``tc`` (``batch``, ``log_steps``, ``metrics_kimg``, ``snapshot_kimg``), ``nimg``,
``step``, ``kimg``, ``run_dir``, ``train_step() -> {name: float}``, ``evaluate() -> {name: float}``,
``log(record)``, ``save_checkpoint()`` and ``sample_sheet() -> uint8 grid``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from domrand.generator import runs


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

    from domrand.generator.visualize import grid_upscale, save_png

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
            trainer.log(record)
            if not progress:
                print(f"{name}: {summary(record, rate, eta)}", file=sys.stderr, flush=True)
            accum, count, t_log, n_log = {}, 0, now, trainer.nimg
        if trainer.nimg >= next_metric or done:
            next_metric = (trainer.nimg // metric_every + 1) * metric_every
            last = {"kind": "eval", "kimg": round(trainer.kimg, 3), "step": trainer.step, **trainer.evaluate()}
            trainer.log(last)
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
