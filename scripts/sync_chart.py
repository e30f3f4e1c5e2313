"""Copy the generated CRDs and the built-in assets into the Helm chart (``--check``: only report differences).

Why this exists: Helm can read only files inside the chart directory, so ``charts/mlmodelscope/crds/`` and
``charts/mlmodelscope/files/assets/`` are copies of ``crds/`` and ``assets/{models,frameworks,datasets}/``.
The copies are committed (``helm install`` from a checkout or a packaged chart needs them) and
``tests/deploy/test_generated_files.py`` fails when they drift; run ``make generate`` (which runs this copy too) after
changing a resource model or editing an asset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "mlmodelscope"
ASSET_KINDS = ("models", "frameworks", "datasets")


def pairs(repo: Path = REPO, chart: Path = CHART) -> list[tuple[Path, Path]]:
    """(source, copy) of every file the chart must carry."""
    found = [(source, chart / "crds" / source.name) for source in sorted((repo / "crds").glob("*.yaml"))]
    for kind in ASSET_KINDS:
        for source in sorted((repo / "assets" / kind).glob("*.yaml")):
            found.append((source, chart / "files" / "assets" / kind / source.name))
    return found


def stale(repo: Path = REPO, chart: Path = CHART) -> list[str]:
    """Copies that differ from their source, are missing, or have no source any more (relative paths)."""
    expected = pairs(repo, chart)
    problems = [
        str(copy.relative_to(chart))
        for source, copy in expected
        if not copy.is_file() or copy.read_bytes() != source.read_bytes()
    ]
    wanted = {copy for _, copy in expected}
    for folder in [chart / "crds", *(chart / "files" / "assets" / kind for kind in ASSET_KINDS)]:
        problems += [f"{p.relative_to(chart)} (no source)" for p in sorted(folder.glob("*.yaml")) if p not in wanted]
    return problems


def sync(repo: Path = REPO, chart: Path = CHART) -> None:
    for path in stale(repo, chart):
        if path.endswith("(no source)"):
            (chart / path.removesuffix(" (no source)")).unlink()
    for source, copy in pairs(repo, chart):
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            copy.write_bytes(source.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(f"out of date: charts/mlmodelscope/{problem}", file=sys.stderr)
        return 1 if problems else 0
    sync()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
