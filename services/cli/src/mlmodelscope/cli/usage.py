"""Usage errors (a mistyped command or flag, a missing argument) as a person reads them, never as a traceback.

A typo is the most common thing a new user does, so the answer is the usage line of the command they meant, the
problem in one line, and a suggestion where one exists: close matches of the command or flag (difflib, as git
does), a flag that belongs to another level of the command (``mlmodelscope evaluate --assets x`` ->
``mlmodelscope --assets x evaluate``, and the other way round), or a command that lives in another group
(``datasets show`` -> ``models show``). The exit code is 2, the convention for usage errors.

typer 0.29 parses with its own vendored copy of click, so its exceptions (``typer._click.exceptions``) are not
subclasses of ``click``'s; this module and ``main`` are the only places that know.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from difflib import get_close_matches

from typer._click import Command, Context
from typer._click.exceptions import NoSuchOption, UsageError

EXIT_USAGE = 2

_NO_SUCH_COMMAND = re.compile(r"^No such command (?P<quote>['\"])(?P<name>.*)(?P=quote)\.")


def usage_error_text(error: UsageError, *, root: Command, prog_name: str, argv: Sequence[str]) -> str:
    """What to print on stderr for ``error``: the usage line, ``error: <problem>`` and where to find help.

    A group run without a command (``NoArgsIsHelpError``) is no such error: ``main`` prints its help instead."""
    ctx = error.ctx or _context_of(root, prog_name, argv)
    lines = [ctx.get_usage(), f"error: {_problem(error, ctx, root, prog_name)}"]
    if ctx.command.get_help_option(ctx) is not None:
        lines.append(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
    return "\n".join(lines) + "\n"


def _problem(error: UsageError, ctx: Context, root: Command, prog_name: str) -> str:
    if isinstance(error, NoSuchOption):
        return _unknown_option(error, ctx)
    unknown = _NO_SUCH_COMMAND.match(error.message)
    if unknown is not None:
        return _unknown_command(unknown["name"], ctx, root, prog_name)
    return error.format_message()


def _unknown_option(error: NoSuchOption, ctx: Context) -> str:
    message = error.message.rstrip(".")
    name = error.option_name
    above = [c.command_path for c in _ancestors(ctx) if name in _option_names(c.command)]
    if above:
        return (
            f"{message}. '{name}' is an option of '{above[0]}': put it right after '{above[0]}', "
            f"before '{ctx.info_name}'."
        )
    below = [path for path, command in _all_commands(ctx.command, ctx.command_path) if name in _option_names(command)]
    if below:
        return f"{message}. '{name}' is an option of {_alternatives(below)}: put it after the command's name."
    matches = _close_options(name, _option_names(ctx.command))
    if matches:
        return f"{message}. Did you mean {_alternatives(matches)}?"
    return f"{message}."


def _close_options(name: str, options: Sequence[str]) -> list[str]:
    """Options spelled like ``name``, compared without their dashes (every long option shares ``--``)."""
    bare = {option.lstrip("-"): option for option in options}
    return [bare[match] for match in get_close_matches(name.lstrip("-"), list(bare))]


def _unknown_command(name: str, ctx: Context, root: Command, prog_name: str) -> str:
    message = f"No such command '{name}'"
    available = sorted(getattr(ctx.command, "commands", {}))
    matches = get_close_matches(name, available)
    if matches:
        return f"{message}. Did you mean {_alternatives(matches)}?"
    homes = [path for path, command in _all_commands(root, prog_name) if command.name == name]
    if homes:
        return f"{message}. Did you mean {_alternatives(homes)}?"
    if available:
        return f"{message}. The commands of '{ctx.command_path}' are: {', '.join(available)}."
    return f"{message}."


def _alternatives(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _option_names(command: Command) -> list[str]:
    names: list[str] = []
    for param in command.params:
        names.extend(n for n in (*param.opts, *getattr(param, "secondary_opts", ())) if n.startswith("-"))
    return names


def _ancestors(ctx: Context) -> Iterator[Context]:
    parent = ctx.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _all_commands(command: Command, path: str) -> Iterator[tuple[str, Command]]:
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield f"{path} {name}", sub
        yield from _all_commands(sub, f"{path} {name}")


def _context_of(root: Command, prog_name: str, argv: Sequence[str]) -> Context:
    """The context of the deepest command named in ``argv``, for errors the parser raises without one."""
    ctx = Context(root, info_name=prog_name)
    command = root
    for token in argv:
        sub = getattr(command, "commands", {}).get(token)
        if sub is not None:
            command = sub
            ctx = Context(command, info_name=token, parent=ctx)
    return ctx
