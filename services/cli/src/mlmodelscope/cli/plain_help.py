"""One help style for every ``mlmodelscope`` command: click's plain help, without rich, each short help whole.

Why this exists: typer's rich help draws options in a table whose help column, at 80 columns, is ~15 characters
wide (``evaluate --help`` wrapped "Model name (see `mlmodelscope models list`)" over three lines), and importing
its formatter (rich, markdown-it, pygments) was half of ``mlmodelscope --help``'s start-up. Every app of the CLI is
made by ``cli_app`` (``rich_markup_mode=None``, so typer renders click's help), and its groups list each command
with its whole first help paragraph, wrapped, where click's own list cuts it at the terminal width with "...".
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
from typer._click import Context, HelpFormatter
from typer.core import TyperGroup


class PlainHelpGroup(TyperGroup):
    """A group whose command list shows each command's whole first help paragraph."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_paragraph(command.short_help or command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def first_paragraph(help_text: str) -> str:
    """The first paragraph of a command's help on one line, the part a group's command list shows."""
    return " ".join(inspect.cleandoc(help_text).partition("\f")[0].split("\n\n")[0].split())


def cli_app(**settings: Any) -> typer.Typer:
    """A typer app of this CLI: plain help (``PlainHelpGroup`` unless ``cls`` is given), no completion install."""
    settings.setdefault("cls", PlainHelpGroup)
    settings.setdefault("add_completion", False)
    return typer.Typer(rich_markup_mode=None, **settings)
