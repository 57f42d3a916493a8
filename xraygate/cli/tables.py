"""Aligned tables with headers for the CLI (rich), plain when the output is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: set[int] | None = None
) -> None:
    """Print ``rows`` under ``headers``, columns aligned (``right``: right-aligned columns)."""
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if right and i in right else "left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # A pipe or a file gets the full width: no wrapping or cropping of UIDs and messages.
    console = Console(soft_wrap=False, width=None if _isatty() else 400, emoji=False)
    console.print(table)


def _isatty() -> bool:
    import sys

    return sys.stdout.isatty()
