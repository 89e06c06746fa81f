"""What the speed benchmarks share: writing a table."""

from __future__ import annotations

from domrand.utils import atomic_write_text


def report(text: str, out: str | None) -> None:
    """Print a benchmark's table and, with ``out``, also write it to that file."""
    print(text, end="")
    if out:
        atomic_write_text(out, text)
