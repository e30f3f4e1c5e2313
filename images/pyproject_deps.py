"""Print the third-party requirements of MLModelScope distributions, for an image's dependency layer.

Why this exists: an image installs its dependencies in a layer of their own, before the source is copied, so a
source change rebuilds only the thin layer above. That layer must know the dependencies without the source: this
reads only ``services/*/pyproject.toml`` (copied alone), follows our own ``mlmodelscope-*`` dependencies
transitively, adds the requested extras, and prints one requirement a line (``pip install -c constraints.txt -r``
pins them). ``--replace OLD=NEW`` swaps a package for a variant pinned at OLD's constrained version
(``onnxruntime=onnxruntime-gpu``, ``tensorflow-cpu=tensorflow[and-cuda]``).

Usage: ``python pyproject_deps.py --services services --constraints constraints.txt cli 'agent[onnxruntime]'``
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

OUR_PREFIX = "mlmodelscope-"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_TARGET = re.compile(r"^(?P<dist>[a-z]+)(?:\[(?P<extras>[a-z0-9_,-]+)\])?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def _project(services: Path, dist: str) -> dict[str, object]:
    path = services / dist / "pyproject.toml"
    project: dict[str, object] = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    return project


def third_party(services: Path, targets: list[str]) -> list[str]:
    """Requirements of ``targets`` (``dist`` or ``dist[extra,...]``, dist = folder under ``services``), ours
    followed transitively and left out, sorted and de-duplicated."""
    found: dict[str, str] = {}
    pending = list(targets)
    seen: set[str] = set()
    while pending:
        target = pending.pop()
        match = _TARGET.match(target)
        if not match:
            raise ValueError(f"not a distribution target: {target!r}")
        dist, extras = match["dist"], [e for e in (match["extras"] or "").split(",") if e]
        if target in seen:
            continue
        seen.add(target)
        project = _project(services, dist)
        requirements = list(project.get("dependencies", []))  # type: ignore[call-overload]
        optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
        for extra in extras:
            if extra not in optional:
                raise ValueError(f"{dist} has no extra {extra!r} (has: {sorted(optional)})")
            requirements += optional[extra]
        for requirement in requirements:
            name = requirement_name(requirement)
            if name.startswith(OUR_PREFIX):
                pending.append(name.removeprefix(OUR_PREFIX))
            else:
                found.setdefault(name, requirement.strip())
    return [found[name] for name in sorted(found)]


def constrained_version(constraints: Path, name: str) -> str:
    for line in constraints.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and requirement_name(line) == canonical(name):
            return line.split("==", 1)[1].split(";", 1)[0].strip()
    raise ValueError(f"{name} is not pinned in {constraints}")


def replace(requirements: list[str], replacements: list[str], constraints: Path) -> list[str]:
    out = list(requirements)
    for replacement in replacements:
        old, new = replacement.split("=", 1)
        names = [requirement_name(r) for r in out]
        if canonical(old) not in names:
            raise ValueError(f"{old} is not a requirement (have: {names})")
        index = names.index(canonical(old))
        out[index] = f"{new}=={constrained_version(constraints, old)}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help="cli, agent[onnxruntime], ...")
    parser.add_argument("--services", type=Path, default=Path("services"))
    parser.add_argument("--constraints", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW")
    args = parser.parse_args(argv)
    try:
        requirements = replace(third_party(args.services, args.targets), args.replace, args.constraints)
    except (ValueError, OSError, KeyError) as error:
        sys.stderr.write(f"pyproject_deps: {error}\n")
        return 1
    sys.stdout.write("".join(f"{r}\n" for r in requirements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
