"""The terminal: rich consoles that print every string literally, and the few ways ibcli talks.

Text from users (run ids and names, folders, option values, error messages that quote them)
reaches output in many places. Both consoles here have rich markup and highlighting off, so
every string, also inside tables, prints exactly as typed: `tanh[/lr=0.1]` or `data[v2]` can
never be read as markup (which crashed `ibcli show` and ate `[v2]`). Colour comes only from
`style=` arguments and `Text` spans. Lines are soft-wrapped: the terminal wraps a long line,
so a printed path copies as one piece.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Messages, notes, progress bars, human summaries. stdout is kept for --json and for listings.
stderr = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """A literal console on stdout (for `ibcli runs` / `show` listings); the terminal's width, else 80."""
    return Console(markup=False, highlight=False, soft_wrap=True)


def counted(n, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, plural unless n is 1: "1 record", "3 records", "1 mi run"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def error(message: str) -> None:
    """One `error: MESSAGE` line on stderr, the message literal."""
    stderr.print(Text.assemble(("error:", "bold red"), " ", message))


def note(message: str, console: Console | None = None) -> None:
    """One literal `note: ...` line on stderr (or `console`, e.g. a progress bar's)."""
    (console or stderr).print(Text.assemble(("note:", "yellow"), " ", message))


def say(message: str, style: str | None = None, console: Console | None = None) -> None:
    """One literal line on stderr (or `console`)."""
    (console or stderr).print(Text(message, style=style or ""))


def fitted_table(columns: list[tuple[str, str]], rows: list[list], *, flexible: tuple[str, ...] = (),
                 title: str | None = None) -> Table:
    """A compact table (no vertical borders) whose cells are never cut short.

    columns: (header, "left" | "right"); rows: lists of plain strings (or `Text` for colour).
    A column not in `flexible` is at least as wide as its longest cell, so rich narrows only
    the flexible ones (which wrap between words) when the terminal is narrow: at 80 columns
    nothing becomes `activat…`.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True,
                  title_justify="left")
    plain = [[cell.plain if isinstance(cell, Text) else str(cell) for cell in row] for row in rows]
    for i, (header, justify) in enumerate(columns):
        if header in flexible:
            widest_word = max((len(w) for row in plain for w in row[i].split()), default=1)
            table.add_column(header, justify=justify, overflow="fold", min_width=max(widest_word, len(header)))
        else:
            whole = max([len(row[i]) for row in plain] + [len(header)])
            table.add_column(header, justify=justify, no_wrap=True, min_width=whole)
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else str(cell) for cell in row))
    return table
