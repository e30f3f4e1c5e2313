"""Print the third-party requirements of MLModelScope distributions, for an image's dependency layer.

Why this exists: an image installs its dependencies in a layer of their own, before the source is copied, so a
source change rebuilds only the thin layer above. That layer must know the dependencies without the source: this
reads only the distributions' ``pyproject.toml`` files (copied alone; ``services/<dist>/`` or ``<dist>/`` under
``--root``), follows our own ``mlmodelscope-*`` dependencies transitively, adds the requested extras, and prints
one requirement a line (``pip install -c constraints.txt -r`` pins them).

``--accelerator`` picks a framework's build for the image's accelerator, pinned at the constrained version of the
package it replaces: ``cpu`` takes PyTorch's CPU-only build (``torch==X+cpu``: PyPI's x86-64 torch bundles CUDA,
several GB), ``cuda`` takes onnxruntime-gpu, tensorflow[and-cuda], mxnet-cu112 and PyPI's CUDA torch.
``make images`` (scripts/build_images.py) calls it on the host to fill the wheelhouse with exactly what the build
installs.

Usage: ``python pyproject_deps.py --root . --constraints constraints.txt --accelerator cpu 'agent[onnxruntime]'``
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
# package -> (its replacement, a local version label appended to the pin), per accelerator.
VARIANTS: dict[str, dict[str, tuple[str, str]]] = {
    "cpu": {"torch": ("torch", "+cpu")},
    "cuda": {
        "onnxruntime": ("onnxruntime-gpu[cuda,cudnn]", ""),
        "tensorflow-cpu": ("tensorflow[and-cuda]", ""),
        "mxnet": ("mxnet-cu112", ""),
        "torch": ("torch", ""),
    },
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def pyproject(root: Path, dist: str) -> Path:
    """Where a distribution's pyproject.toml lies: ``services/<dist>/`` or, for the operator, ``<dist>/``."""
    for candidate in (root / "services" / dist / "pyproject.toml", root / dist / "pyproject.toml"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"no pyproject.toml for {dist!r} under {root}/services/{dist} or {root}/{dist}")


def _project(root: Path, dist: str) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(pyproject(root, dist).read_text(encoding="utf-8"))["project"]
    return project


def third_party(root: Path, targets: list[str]) -> list[str]:
    """Requirements of ``targets`` (``dist`` or ``dist[extra,...]``), ours followed transitively and left out,
    sorted and de-duplicated."""
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
        project = _project(root, dist)
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


def for_accelerator(requirements: list[str], accelerator: str, constraints: Path) -> list[str]:
    """``requirements`` with each framework package swapped for its ``accelerator`` build, pinned."""
    variants = VARIANTS.get(accelerator)
    if variants is None:
        raise ValueError(f"unknown accelerator {accelerator!r} (known: {sorted(VARIANTS)})")
    out = []
    for requirement in requirements:
        name = requirement_name(requirement)
        if name in variants:
            replacement, local = variants[name]
            requirement = f"{replacement}=={constrained_version(constraints, name)}{local}"
        out.append(requirement)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help="collector, operator, agent[onnxruntime], ...")
    parser.add_argument("--root", type=Path, default=Path(), help="The repository root (or a copy of it).")
    parser.add_argument("--constraints", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--accelerator", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    try:
        requirements = third_party(args.root, args.targets)
        requirements = for_accelerator(requirements, args.accelerator, args.constraints)
    except (ValueError, OSError, KeyError) as error:
        sys.stderr.write(f"pyproject_deps: {error}\n")
        return 1
    sys.stdout.write("".join(f"{r}\n" for r in requirements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
