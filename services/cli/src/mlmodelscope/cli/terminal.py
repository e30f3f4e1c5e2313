"""The consoles the CLI prints through: data is printed literally, styles come from ``rich.text.Text``, never markup.

What the CLI prints is full of square brackets that are not rich markup: a name pattern ``^[a-z0-9]...$`` in an
error, a path like ``models/[draft]/m.yaml``, a LoadGen reason. With markup on, rich takes ``[a-z0-9]`` or
``[draft]`` for a style tag and silently drops it, so every console here has markup off.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def literal_console(*, stderr: bool = False) -> Console:
    """A console that prints strings exactly as given (no markup, no highlighting)."""
    return Console(stderr=stderr, markup=False, highlight=False)


def labelled(label: str, message: str, *, style: str) -> Text:
    """``label message`` with only the label styled: ``labelled("error:", e.message, style="bold red")``."""
    return Text.assemble((label, style), " ", message)
