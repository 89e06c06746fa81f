"""Run-directory layout of ``domrand train-generator`` and helpers to find things in it.

::

    runs/NAME/
      config.yaml                 resolved GeneratorConfig (r1_gamma filled in)
      command.txt                 the exact command line(s); a resume appends a line
      metrics.jsonl               one JSON object per line: training scalars and SWD records
      reals.png                   a grid of dataset images (written once)
      samples_<kimg>.png          G_ema sample grid + truncated row + style-mixing panel
      swd.png                     SWD-vs-kimg curve
      G_ema.safetensors           latest EMA generator (what users and the inverter load)
      G_ema_best.safetensors      EMA generator with the best SWD so far
      G_init.safetensors          fine-tuning runs (--init): the start generator (its G_ema), frozen
      checkpoints/kimg-<kimg>/    G, G_ema, D, train_state (.safetensors); written atomically

``<kimg>`` is ``%06d`` for whole kimg and ``%010.3f`` (e.g. ``000000.512``) otherwise.
A checkpoint directory is complete when all four files are present; it is written into a
``.tmp-*`` directory first and renamed, so a crash never leaves a half-written ``kimg-*`` dir.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from domrand.checkpoint import load_tensors, read_network_info, CheckpointError
from domrand.utils import atomic_write_text

CHECKPOINTS = "checkpoints"
CHECKPOINT_FILES = ("G.safetensors", "G_ema.safetensors", "D.safetensors", "train_state.safetensors")
G_EMA = "G_ema.safetensors"
G_EMA_BEST = "G_ema_best.safetensors"
G_INIT = "G_init.safetensors"
E_FILE = "E.safetensors"
INVERTER_CHECKPOINT_FILES = (E_FILE, "train_state.safetensors")
# kind -> (its network file, the files of a complete checkpoint of that run, the command that makes it)
RUN_FILES = {
    "generator": (G_EMA, CHECKPOINT_FILES, "train-generator"),
    "inverter": (E_FILE, INVERTER_CHECKPOINT_FILES, "train-inverter"),
}
CONFIG = "config.yaml"
COMMAND = "command.txt"
METRICS = "metrics.jsonl"
REALS = "reals.png"
SWD_PLOT = "swd.png"
_PREFIX = "kimg-"


def format_kimg(kimg: float) -> str:
    """``1.0 -> "000001"``, ``0.512 -> "000000.512"`` (sortable, unique to 1 image in 1000)."""
    kimg = round(float(kimg), 3)
    if math.isclose(kimg, round(kimg), abs_tol=1e-9):
        return f"{int(round(kimg)):06d}"
    return f"{kimg:010.3f}"


def samples_name(kimg: float) -> str:
    return f"samples_{format_kimg(kimg)}.png"


def checkpoint_dir(run_dir: str | os.PathLike, kimg: float) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{_PREFIX}{format_kimg(kimg)}"


def _parse_kimg(name: str) -> float | None:
    if not name.startswith(_PREFIX):
        return None
    try:
        return float(name[len(_PREFIX) :])
    except ValueError:
        return None


def is_complete(ckpt_dir: str | os.PathLike, required: Sequence[str] = CHECKPOINT_FILES) -> bool:
    d = Path(ckpt_dir)
    return d.is_dir() and all((d / f).is_file() for f in required)


def list_checkpoints(run_dir: str | os.PathLike, required: Sequence[str] = CHECKPOINT_FILES) -> list[tuple[float, Path]]:
    """Checkpoint dirs of a run holding every file in ``required``, ``[(kimg, path)]`` oldest first.

    ``required`` defaults to a generator run's files; the inverter trainer passes its own."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        kimg = _parse_kimg(d.name)
        if kimg is not None and is_complete(d, required):
            found.append((kimg, d))
    return sorted(found, key=lambda t: t[0])


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint dir, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def list_samples(run_dir: str | os.PathLike) -> list[tuple[float, Path]]:
    """``samples_<kimg>.png`` files of a run, ``[(kimg, path)]`` oldest first."""
    out = []
    for p in Path(run_dir).glob("samples_*.png"):
        try:
            out.append((float(p.stem[len("samples_") :]), p))
        except ValueError:
            continue
    return sorted(out, key=lambda t: t[0])


def resolve_run_file(path: str | os.PathLike, kind: str = "generator", best: bool = False) -> Path:
    """A run dir, checkpoint dir or network file -> the ``kind`` (generator | inverter) file to load.

    A file is itself. In a directory: ``G_ema_best.safetensors`` if ``best`` (and present; generators),
    else ``G_ema.safetensors`` / ``E.safetensors`` at its top, else the newest complete checkpoint's.
    Raises ``FileNotFoundError`` saying what was looked for. The one run-file lookup of domrand.
    """
    if kind not in RUN_FILES:
        raise ValueError(f"kind must be one of {', '.join(RUN_FILES)}, got {kind!r}")
    name, required, command = RUN_FILES[kind]
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"{p} is neither a run directory nor a checkpoint file: it does not exist "
                                f"(expected a {kind} run directory, a checkpoint directory or a .safetensors file)")  # fmt: skip
    candidates = [p / G_EMA_BEST] if best and kind == "generator" else []
    for c in [*candidates, p / name]:
        if c.is_file():
            return c
    found = list_checkpoints(p, required=required)
    if found:
        return found[-1][1] / name
    raise FileNotFoundError(
        f"{p} holds no {kind}: no {name} and no complete checkpoint under {p / CHECKPOINTS} "
        f"(is this a {command} run directory?)"
    )


def checkpoint_swd(ckpt_dir: str | os.PathLike) -> float | None:
    """The mean SWD stored in a checkpoint's G_ema ``extra`` (None if missing or unreadable)."""
    try:
        value = read_network_info(Path(ckpt_dir) / G_EMA)["extra"].get("swd")
    except (CheckpointError, OSError):
        return None
    return None if value is None else float(value)


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint dir with the lowest stored SWD (ties: the newer), or None."""
    best: tuple[float, float, Path] | None = None
    for kimg, d in list_checkpoints(run_dir):
        s = checkpoint_swd(d)
        if s is None or not math.isfinite(s):
            continue
        if best is None or s <= best[0]:
            best = (s, kimg, d)
    return None if best is None else best[2]


def prune_to_newest(run_dir: str | os.PathLike, keep_last: int, required: Sequence[str]) -> list[Path]:
    """Delete all complete checkpoints (holding ``required``) but the newest ``keep_last`` (at least
    one), and leftover ``.tmp-*`` directories. Returns the deleted checkpoints."""
    found = list_checkpoints(run_dir, required=required)
    removed = [d for _, d in found[: max(len(found) - max(int(keep_last), 1), 0)]]
    for d in removed:
        shutil.rmtree(d, ignore_errors=True)
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for d in root.glob(".tmp-*"):
            shutil.rmtree(d, ignore_errors=True)
    return removed


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all complete checkpoints except the newest ``keep_last`` and the best by SWD.

    Also removes leftover ``.tmp-*`` directories. Returns the deleted paths.
    """
    found = list_checkpoints(run_dir)
    keep = {d for _, d in found[-max(int(keep_last), 1) :]}
    best = best_checkpoint(run_dir)
    if best is not None:
        keep.add(best)
    removed = []
    for _, d in found:
        if d not in keep:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for d in root.glob(".tmp-*"):
            shutil.rmtree(d, ignore_errors=True)
    return removed


def write_checkpoint_dir(
    run_dir: str | os.PathLike,
    kimg: float,
    write: Callable[[Path], None],
    required: Sequence[str] = CHECKPOINT_FILES,
) -> Path:
    """Create ``checkpoints/kimg-<kimg>/`` atomically: ``write(tmp_dir)`` fills a temp dir (it must
    write every file in ``required``), then it is renamed into place (replacing an older dir of the
    same name)."""
    final = checkpoint_dir(run_dir, kimg)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); a run dir is not secret
    try:
        write(tmp)
        missing = [f for f in required if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"checkpoint writer left out {missing}")
        if final.exists():
            old = final.with_name(f".tmp-old-{final.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---- integrity of a run: intact checkpoints, leftovers of a killed run, metrics after a resume ----


def verify_checkpoint(ckpt_dir: str | os.PathLike, required: Sequence[str] = CHECKPOINT_FILES) -> str | None:
    """None when every file in ``required`` is present and passes its checksum, else the reason."""
    d = Path(ckpt_dir)
    for name in required:
        if not (d / name).is_file():
            return f"{d / name} is missing"
        try:
            load_tensors(d / name)
        except CheckpointError as exc:
            return str(exc)
    return None


def resume_checkpoint(
    run_dir: str | os.PathLike,
    required: Sequence[str] = CHECKPOINT_FILES,
    log: Callable[[str], None] | None = None,
) -> Path | None:
    """The newest checkpoint whose files all pass their checksums; corrupt newer ones are skipped
    (each reported through ``log``). None when there is no intact checkpoint."""
    found = list_checkpoints(run_dir, required)
    for kimg, d in reversed(found):
        reason = verify_checkpoint(d, required)
        if reason is None:
            return d
        if log is not None:
            log(f"domrand: checkpoint {d} is corrupt ({reason}); falling back to the newest intact checkpoint")
    return None


def remove_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete what a killed run left behind: ``.<name>.*.tmp`` files (atomic writes) in the run
    directory and under ``checkpoints/``, and ``checkpoints/.tmp-*`` directories. Returns them."""
    root = Path(run_dir)
    removed: list[Path] = []
    for folder in [root, root / CHECKPOINTS, *(root / CHECKPOINTS).glob(f"{_PREFIX}*")]:
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
            elif folder.name == CHECKPOINTS and p.is_dir() and p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def trim_metrics(path: str | os.PathLike, step: int) -> int:
    """Keep the records of ``metrics.jsonl`` up to optimization ``step`` (those a resume from that
    step does not write again) and drop unreadable lines (a write cut by a kill). Returns how many
    lines were dropped."""
    import json

    p = Path(path)
    if not p.is_file():
        return 0
    kept, dropped = [], 0
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += line.strip() != ""
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_text(p, "".join(f"{line}\n" for line in kept))
    return dropped
