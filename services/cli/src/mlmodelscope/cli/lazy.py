"""Subcommands imported when they run, not when ``mlmodelscope`` starts: a fast ``--help`` and ``models list``.

Building the whole typer app eagerly imports every command's module, and through them FastAPI, SQLAlchemy, NATS,
LoadGen and the agent: ``mlmodelscope --help`` took seconds. ``LazyGroup`` lists each subcommand under its name and
short help (a ``LazyCommand``) and imports the module that defines it only when the parser resolves that name
(``resolve_command``), so a command loads its own imports and nobody else's.

The root ``--help`` shows the short helps written in ``LazyCommand``; tests/core/test_import_hygiene.py renders the help
with every command loaded and compares, so a command whose help changes without its entry here fails a test.
Usage errors want every command (suggestions search the whole tree), so ``load_all`` imports them all on that path.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer._click import Command, Context
from typer.core import TyperCommand, TyperGroup

from mlmodelscope.cli.plain_help import cli_app


@dataclass(frozen=True)
class LazyCommand:
    """A subcommand by name: ``target`` is ``module:attribute``, a ``typer.Typer`` (a group) or a command function;
    ``help`` is the short help the parent's ``--help`` lists (the loaded command's first help paragraph)."""

    name: str
    target: str
    help: str


class _Unloaded(TyperCommand):
    """What a parent's help lists until a ``LazyCommand`` is imported; never run (``resolve_command`` swaps it)."""

    def __init__(self, spec: LazyCommand) -> None:
        super().__init__(name=spec.name, help=spec.help)

    def invoke(self, ctx: Context) -> Any:
        raise RuntimeError(
            f"lazy command '{self.name}' ran before it was loaded: LazyGroup.resolve_command must load it first"
        )


def load_command(spec: LazyCommand) -> Command:
    """Import ``spec.target`` and build its click command as ``app.add_typer``/``app.command`` would have."""
    module_name, _, attribute = spec.target.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    holder = cli_app()
    holder.callback()(_no_options)  # a callback makes ``holder`` a group even with a single command in it
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=spec.name)
    else:
        holder.command(spec.name)(target)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[spec.name]


def _no_options() -> None:
    """The holder group's callback: it takes no options and does nothing."""


class LazyGroup(TyperGroup):
    """A typer group whose ``lazy_commands`` (a subclass sets them) are imported when resolved, in listed order."""

    lazy_commands: ClassVar[tuple[LazyCommand, ...]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._lazy = {spec.name: spec for spec in self.lazy_commands}
        for spec in self.lazy_commands:
            self.commands.setdefault(spec.name, _Unloaded(spec))

    def load(self, name: str) -> Command | None:
        """The command ``name``, importing it on first use; None for a name this group does not have."""
        command = self.commands.get(name)
        if isinstance(command, _Unloaded):
            command = self.commands[name] = load_command(self._lazy[name])
        return command

    def load_all(self) -> None:
        """Import every lazy command (usage errors search the whole command tree for suggestions)."""
        for name in list(self.commands):
            self.load(name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Unloaded):
            command = self.load(name)
        return name, command, rest
