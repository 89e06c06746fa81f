"""The ``domrand`` commands: one module per command, named as the command (``train-pair`` is
``train_pair.py``), each with ``add_arguments(parser)`` and ``main(args) -> int`` over a library
function. ``domrand.cli`` maps command names to these modules and imports only the one that runs.
This package is the only place with argparse code (besides the front door, ``domrand.cli``).
"""

from __future__ import annotations

import argparse


class DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default, except when it is None or False (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS) or default == [] or "default" in text.lower():
            return text
        return text + " (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """A command's parser: a bad argument is one line (``domrand CMD: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
