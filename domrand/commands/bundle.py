"""``domrand bundle``: pack a generator run and its inverter run into a randomizer bundle
(``domrand.bundle.make_bundle``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from domrand.commands import cli_args
from domrand.bundle import load_bundle, make_bundle


def _psi(text: str) -> float:
    value = cli_args.finite_float(text)
    if not -10 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be a number in [-10, 10], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, help="generator run directory (holds G_ema.safetensors) or file")
    parser.add_argument("--inverter", required=True, help="inverter run directory (holds E.safetensors) or file")
    parser.add_argument("--out", required=True, help="output folder, or a .safetensors path for a single-file bundle")
    parser.add_argument("--keep-resolution", type=cli_args.power_of_two, default=None, help="default keep_resolution stored in the bundle")
    parser.add_argument("--psi", type=_psi, default=None, help="default truncation psi of sampled fine styles")
    parser.add_argument("--mix", type=cli_args.unit_float, default=None, help="default mix (0 = frame styles, 1 = sampled)")
    parser.add_argument("--noise", choices=("random", "step", "const", "none"), default=None, help="default fine noise")
    parser.add_argument("--eval", default=None, help="an 'eval-inverter --out' JSON file stored in bundle.json (about.evaluation)")
    parser.add_argument("--note", default=None, help="free text stored in bundle.json (about.note): data, training, card")
    parser.add_argument("--traceback", action="store_true", help="show a full traceback on errors")


def _about(eval_file: str | None, note: str | None) -> dict[str, Any]:
    about: dict[str, Any] = {}
    if eval_file:
        try:
            about["evaluation"] = json.loads(Path(eval_file).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"--eval: {eval_file} does not exist (write it with 'domrand eval-inverter --out FILE')") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"--eval: {eval_file} is not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if note:
        about["note"] = note
    return about


def main(args: argparse.Namespace) -> int:
    options = {
        k: v
        for k, v in (("keep_resolution", args.keep_resolution), ("psi", args.psi), ("mix", args.mix), ("noise", args.noise))
        if v is not None
    }
    out = make_bundle(args.generator, args.inverter, args.out, options, about=_about(args.eval, args.note))
    info = load_bundle(out, device="cpu").info
    print(f"wrote bundle {out} (generator {info['generator_hash']}, {info['generator']['resolution']}x"
          f"{info['generator']['resolution']}, inverter keep_resolution {info['inverter']['keep_resolution']})")
    return 0
