"""Migration files on disk: read and validate one, list a track's, and write one in its one canonical form.

Why this exists: the runner (``migrations.__init__``) only reads these files and the generator (``autogenerate``)
also writes them; both go through here, so the file a generator writes is byte for byte the file a reader
re-renders (``scripts/generate.py --check`` compares the two).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlmodelscope.collector.errors import MigrationError
from mlmodelscope.collector.storage.migrations.operations import MigrationFile


def render(migration: MigrationFile) -> str:
    """The committed text of a migration file: its fields in order, the defaults left out, the ``op`` kept."""
    document = migration.model_dump(mode="json", exclude={"operations"})
    document["operations"] = [
        {"op": operation.op, **operation.model_dump(mode="json", exclude_defaults=True)}
        for operation in migration.operations
    ]
    return _pretty(document, 0) + "\n"


def _pretty(value: object, depth: int, width: int = 116) -> str:
    """JSON with two-space indents, where any object or list that fits in ``width`` stands on one line (a column
    per line, so a table reads like its schema module)."""
    flat = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(value, dict | list) or len(flat) + 2 * depth <= width or not value:
        return flat
    inner = "  " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_pretty(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    items = [f"{inner}{_pretty(v, depth + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"


def read(path: Path) -> MigrationFile:
    """One migration file, validated; its version must be the number its name starts with."""
    try:
        migration = MigrationFile.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as e:
        raise MigrationError(
            f"migration file {path} cannot be read: {e}",
            hint="Restore it from version control (`git checkout -- <file>`); migration files are frozen history.",
        ) from e
    prefix = path.name.split("_", 1)[0]
    if not prefix.isdigit() or int(prefix) != migration.version:
        raise MigrationError(
            f"migration file {path} holds version {migration.version}, but its name says {prefix!r}",
            hint="Name each file <version, four digits>_<words>.json.",
        )
    return migration


def committed(folder: Path) -> dict[Path, MigrationFile]:
    """A track's committed migration files by path, in version order."""
    return {path: read(path) for path in sorted(folder.glob("*.json"))}


def history(folder: Path) -> list[MigrationFile]:
    """A track's committed migrations, in version order."""
    return list(committed(folder).values())
