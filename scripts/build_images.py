"""Build the container images (``make images``) with whatever builder this machine has, and print their sizes.

Why this exists: the images must build the same way on a developer's Docker, on CI machines with no Docker engine
and no registry access (Debian's buildah/podman), and in air-gapped build sandboxes. This script is the one place
that knows the image set (``IMAGES``: name, Dockerfile, build arguments, platforms; ``skaffold.yaml`` and the
Framework resources are checked against it by tests/deploy/test_images.py), and it

- picks the builder: ``docker buildx`` when a Docker engine answers, else buildah + podman (installed from Debian's
  packages when missing, as ``make browser`` installs chromium), with their storage in ``.cache/containers``
  (``CONTAINERS_STORAGE_CONF``), runc as the runtime and explicit ulimits (VMs that may not raise resource limits);
- fills a wheelhouse per image on the host (``pip wheel``: every requirement, pinned by the constraints, plus the
  pinned pip/setuptools/wheel) and passes it as the ``WHEELHOUSE`` build argument: the build then installs with
  ``--no-index`` and needs no network (``--no-wheelhouse``: install from the index inside the build);
- uses the Dockerfiles' base image when it is present or can be pulled, and otherwise builds an equivalent base
  from Debian's packages with debootstrap (Python 3.11, CA certificates, tzdata), saying so.

Usage: ``python scripts/build_images.py [--images collector,agent-null] [--platforms linux/amd64,linux/arm64]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
CONTAINERS = CACHE / "containers"
WHEELHOUSES = CACHE / "wheelhouse"
SIZES_FILE = CACHE / "images" / "sizes.json"
DEFAULT_REGISTRY = "ghcr.io/mlmodelscope"
VERSION = "0.1.0"
DOCKERFILE_BASE = "python:3.11.11-slim-bookworm"
DEBOOTSTRAP_BASE = "localhost/mlmodelscope/python-base:3.11-bookworm.3"  # bump when its package list changes
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ULIMITS = ("nofile=20000:20000", "nproc=32768:32768")  # podman caps nproc at 32768
ALL_ARCHES = ("linux/amd64", "linux/arm64", "linux/ppc64le")
WHEEL_ARCHES = ("linux/amd64", "linux/arm64")  # the frameworks publish no ppc64le wheels
PULL_TIMEOUT_S = 60
PACKAGES = ("buildah", "podman", "runc", "debootstrap")
# CUDA runtime wheels (PyPI's x86-64 torch pulls several GB of them); nvidia-ml-py is only NVML's bindings.
CUDA_WHEEL = re.compile(r"^(nvidia_(?!ml_py)|triton-)")


@dataclass(frozen=True)
class Image:
    """One image: its repository name, Dockerfile, build arguments and the platforms it is published for."""

    name: str
    dockerfile: str
    targets: tuple[str, ...]  # the distributions (pyproject_deps.py targets) it installs
    build_args: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[str, ...] = ALL_ARCHES
    cuda: bool = False

    @property
    def key(self) -> str:
        """How ``make images``, skaffold and the tests call it: ``agent-onnxruntime``, ``agent-onnxruntime-cuda``."""
        return self.name + ("-cuda" if self.cuda else "")

    @property
    def constraints(self) -> str:
        return "constraints-mxnet.txt" if any("[mxnet]" in t for t in self.targets) else "constraints.txt"

    def reference(self, registry: str = DEFAULT_REGISTRY, tag: str = VERSION) -> str:
        return f"{registry}/{self.name}:{tag}" + ("-cuda" if self.cuda else "")


def _agent(framework: str, *, cuda: bool = False, platforms: tuple[str, ...] = WHEEL_ARCHES) -> Image:
    args = {"FRAMEWORK": framework, "ACCELERATOR": "cuda" if cuda else "cpu"}
    if cuda and framework == "mxnet":  # mxnet-cu112 needs the CUDA 11 runtime; the others bring CUDA as wheels
        args["BASE_IMAGE"] = "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"
    target = "agent" if framework == "null" else f"agent[{framework}]"
    return Image(f"agent-{framework}", "images/agent/Dockerfile", (target,), args, platforms, cuda)


IMAGES: tuple[Image, ...] = (
    Image("collector", "images/collector/Dockerfile", ("collector",)),
    Image("operator", "images/operator/Dockerfile", ("operator",)),
    _agent("null", platforms=ALL_ARCHES),
    _agent("onnxruntime"),
    _agent("pytorch"),
    _agent("tensorflow"),
    _agent("mxnet"),
    _agent("tflite"),  # CPU only: LiteRT's XNNPACK kernels (assets/frameworks/tflite.yaml)
    _agent("onnxruntime", cuda=True, platforms=("linux/amd64",)),
    _agent("pytorch", cuda=True, platforms=("linux/amd64",)),
    _agent("tensorflow", cuda=True, platforms=("linux/amd64",)),
    _agent("mxnet", cuda=True, platforms=("linux/amd64",)),
)
BY_KEY = {image.key: image for image in IMAGES}
CPU_IMAGES = tuple(image.key for image in IMAGES if not image.cuda)


class BuildError(RuntimeError):
    """A step of the image build failed; the message says which and what to do."""


def host_platform() -> str:
    machine = platform.machine().lower()
    return "linux/" + {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le"}.get(machine, machine)


def _run(command: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: object) -> None:
    print("+", " ".join(command), flush=True)
    try:
        subprocess.run(list(command), env=dict(env) if env is not None else None, check=True, **kwargs)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{command[0]} failed (exit {e.returncode}): {' '.join(command)}") from e


# --- the builder -------------------------------------------------------------------------------------------------


def docker_available() -> bool:
    """A Docker engine with buildx answers (the client alone, without an engine, does not count)."""
    if shutil.which("docker") is None:
        return False
    for probe in (["docker", "info", "--format", "{{.ServerVersion}}"], ["docker", "buildx", "version"]):
        try:
            subprocess.run(probe, capture_output=True, check=True, timeout=20)
        except (subprocess.SubprocessError, OSError):
            return False
    return True


def ensure_podman(install: bool) -> None:
    """buildah, podman, runc and debootstrap on PATH, installed from Debian's packages if missing."""
    missing = [p for p in PACKAGES if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if not missing:
        return
    if not install or shutil.which("apt-get") is None:
        raise BuildError(f"no Docker engine and no {', '.join(missing)}: install Debian's {' '.join(PACKAGES)}")
    print(f"installing Debian's {' '.join(missing)} (no Docker engine here)", flush=True)
    _run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)


def containers_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for buildah/podman: storage in .cache/containers (the configuration files are written here),
    runc as the runtime, ulimits the VM allows."""
    CONTAINERS.mkdir(parents=True, exist_ok=True)
    storage = CONTAINERS / "storage.conf"
    storage_text = (
        f'[storage]\ndriver = "overlay"\ngraphroot = "{CONTAINERS / "storage"}"\nrunroot = "{CONTAINERS / "run"}"\n'
    )
    conf = CONTAINERS / "containers.conf"
    ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
    conf_text = f'[containers]\ndefault_ulimits = [{ulimits}]\n[engine]\nruntime = "runc"\n'
    for path, text in ((storage, storage_text), (conf, conf_text)):
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    env = dict(os.environ if base is None else base)
    env.update({"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf), "BUILDAH_LAYERS": "true"})
    return env


def podman_has(reference: str, env: Mapping[str, str]) -> bool:
    probe = subprocess.run(["podman", "image", "exists", reference], env=dict(env), capture_output=True)
    return probe.returncode == 0


# --- the base image ----------------------------------------------------------------------------------------------


def ensure_base(env: Mapping[str, str]) -> str:
    """The base image to build on: the Dockerfiles' own when present or pullable, else one made with debootstrap."""
    if podman_has(DOCKERFILE_BASE, env):
        return DOCKERFILE_BASE
    try:
        pulled = subprocess.run(
            ["podman", "pull", "-q", f"docker.io/library/{DOCKERFILE_BASE}"],
            env=dict(env), capture_output=True, text=True, timeout=PULL_TIMEOUT_S,
        )  # fmt: skip
        if pulled.returncode == 0:
            return DOCKERFILE_BASE
        reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
    except subprocess.TimeoutExpired:
        reason = f"no answer in {PULL_TIMEOUT_S} s"
    if podman_has(DEBOOTSTRAP_BASE, env):
        print(f"{DOCKERFILE_BASE} cannot be pulled ({reason}): using {DEBOOTSTRAP_BASE}, made from Debian's packages")
        return DEBOOTSTRAP_BASE
    print(
        f"{DOCKERFILE_BASE} cannot be pulled ({reason}): building an equivalent base, {DEBOOTSTRAP_BASE}, "
        f"from Debian {DEBIAN_SUITE}'s packages with debootstrap",
        flush=True,
    )
    build_debootstrap_base(env)
    return DEBOOTSTRAP_BASE


def build_debootstrap_base(env: Mapping[str, str]) -> None:
    """Debian minbase + python3 (3.11), venv, CA certificates, netbase, tzdata, libgomp1 and libquadmath0 (what
    MXNet's wheel links; the agent Dockerfile installs it where a base lacks it); caches, docs and locales
    removed; ``/usr/local/bin/python`` as in the python images."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        include = "python3,python3-venv,ca-certificates,netbase,tzdata,libgomp1,libquadmath0"  # MXNet's
        _run(["debootstrap", "--variant=minbase", f"--include={include}", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
             stdout=subprocess.DEVNULL)  # fmt: skip
        for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                        "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                        "var/log/*", "var/cache/debconf/*-old"):  # fmt: skip
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for name in ("python", "python3"):
            (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = ["ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]
        command = ["podman", "import", *[a for c in changes for a in ("--change", c)], "-", DEBOOTSTRAP_BASE]
        try:
            _run(command, env=env, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
    print(f"base {DEBOOTSTRAP_BASE} built in {time.monotonic() - started:.0f} s", flush=True)


# --- the wheelhouse ----------------------------------------------------------------------------------------------


def requirements(image: Image) -> list[str]:
    accelerator = "cuda" if image.cuda else "cpu"
    script = REPO / "images" / "pyproject_deps.py"
    command = [sys.executable, str(script), "--root", str(REPO), "--constraints", str(REPO / image.constraints),
               "--accelerator", accelerator, *image.targets]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{image.key}: {result.stderr.strip()}")
    return result.stdout.split()


def fill_wheelhouse(image: Image) -> Path:
    """``.cache/wheelhouse/<image>``: a wheel for every requirement of the image (built on this host, which has the
    image's architecture and Python minor version), and the pinned build tools. Skipped when the requirements
    and the constraints are unchanged since the last fill."""
    wanted = [*requirements(image), "pip", "setuptools", "wheel"]
    constraints = REPO / image.constraints
    digest = hashlib.sha256("\n".join([*wanted, constraints.read_text()]).encode()).hexdigest()
    folder = WHEELHOUSES / image.key
    stamp = folder / ".stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"{image.key}: filling {folder.relative_to(REPO)} on the host", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as file:
        file.write("".join(f"{r}\n" for r in wanted))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(folder),
               "-c", str(constraints), "-r", file.name]  # fmt: skip
    print("+", " ".join(command), flush=True)
    try:
        result = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    finally:
        Path(file.name).unlink()
    # This machine's pip configuration names index folders that may be missing: pip says so for every package.
    noise = "is ignored: it is neither a file nor a directory"
    sys.stderr.write("".join(line for line in result.stderr.splitlines(True) if noise not in line))
    if result.returncode != 0:
        raise BuildError(f"{image.key}: pip wheel failed (exit {result.returncode})")
    cuda = sorted(p.name for p in folder.glob("*.whl") if CUDA_WHEEL.match(p.name))
    if cuda and not image.cuda:
        raise BuildError(f"{image.key}: a CPU image's wheelhouse holds CUDA wheels ({', '.join(cuda)})")
    stamp.write_text(digest)
    return folder


# --- building ----------------------------------------------------------------------------------------------------


def build_args(image: Image, base: str | None, wheelhouse: Path | None) -> dict[str, str]:
    args = dict(image.build_args)
    if base is not None and "BASE_IMAGE" not in args:
        args["BASE_IMAGE"] = base
    if wheelhouse is not None:
        args["WHEELHOUSE"] = str(wheelhouse.relative_to(REPO))
    return args


def build_podman(image: Image, reference: str, args: Mapping[str, str], platforms: Sequence[str],
                 env: Mapping[str, str]) -> None:  # fmt: skip
    dockerfile = REPO / image.dockerfile
    command = ["buildah", "bud", "--layers", "--runtime", "runc", *[f"--ulimit={u}" for u in ULIMITS],
               "-f", str(dockerfile), "--ignorefile", str(dockerfile.with_name("Dockerfile.dockerignore")),
               *[f"--build-arg={k}={v}" for k, v in args.items()], "-t", reference]  # fmt: skip
    if list(platforms) != [host_platform()]:
        command += ["--platform", ",".join(platforms), "--manifest", reference]
        command.remove("-t")
        command.remove(reference)
    _run([*command, str(REPO)], env=env, cwd=REPO)


def build_docker(image: Image, reference: str, args: Mapping[str, str], platforms: Sequence[str]) -> None:
    command = ["docker", "buildx", "build", "--platform", ",".join(platforms), "-f", image.dockerfile,
               *[f"--build-arg={k}={v}" for k, v in args.items()], "-t", reference]  # fmt: skip
    command.append("--load" if len(platforms) == 1 else "--push")
    _run([*command, "."], cwd=REPO)


def image_size_mb(reference: str, env: Mapping[str, str], docker: bool) -> float:
    tool = "docker" if docker else "podman"
    result = subprocess.run([tool, "image", "inspect", "--format", "{{.Size}}", reference], env=dict(env),
                            capture_output=True, text=True, check=True)  # fmt: skip
    return int(result.stdout.strip().splitlines()[0]) / 1e6


def build(keys: Sequence[str], *, platforms: Sequence[str] | None, registry: str, tag: str, use_wheelhouse: bool,
          install: bool) -> dict[str, dict[str, float | str]]:  # fmt: skip
    """Build ``keys``; returns {key: {reference, size_mb, build_s}}."""
    docker = docker_available()
    env = dict(os.environ)
    base: str | None = None
    if docker:
        print("builder: docker buildx", flush=True)
    else:
        ensure_podman(install)
        env = containers_env()
        print(f"builder: buildah (storage: {CONTAINERS.relative_to(REPO)})", flush=True)
        base = ensure_base(env)
    built: dict[str, dict[str, float | str]] = {}
    for key in keys:
        image = BY_KEY[key]
        wanted = list(platforms) if platforms else [host_platform()]
        targets = [p for p in wanted if p in image.platforms]
        if not targets:
            print(f"{key}: skipped, not published for {','.join(wanted)} (only {','.join(image.platforms)})")
            continue
        wheelhouse = None
        if use_wheelhouse and targets == [host_platform()]:
            wheelhouse = fill_wheelhouse(image)
        elif use_wheelhouse:
            print(f"{key}: {','.join(targets)} is not only this host's platform: installing from the index")
        reference = image.reference(registry, tag)
        started = time.monotonic()
        args = build_args(image, None if image.cuda and "BASE_IMAGE" in image.build_args else base, wheelhouse)
        if docker:
            build_docker(image, reference, args, targets)
        else:
            build_podman(image, reference, args, targets, env)
        seconds = time.monotonic() - started
        size = image_size_mb(reference, env, docker) if len(targets) == 1 else float("nan")
        built[key] = {"reference": reference, "size_mb": round(size, 1), "build_s": round(seconds, 1)}
        print(f"{key}: {reference} built in {seconds:.0f} s, {size:.0f} MB", flush=True)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(CPU_IMAGES),
                        help=f"comma-separated, of: {', '.join(BY_KEY)} (default: every CPU image)")  # fmt: skip
    parser.add_argument("--platforms", default=os.environ.get("PLATFORMS", ""),
                        help="e.g. linux/amd64,linux/arm64 (default: this host's); images not published for one "
                        "are built for the rest")  # fmt: skip
    parser.add_argument("--registry", default=os.environ.get("REGISTRY", DEFAULT_REGISTRY))
    parser.add_argument("--tag", default=os.environ.get("TAG", VERSION))
    parser.add_argument("--no-wheelhouse", action="store_true", help="install from the index inside the build")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install buildah/podman")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.images.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()] or None
    try:
        built = build(keys, platforms=platforms, registry=args.registry, tag=args.tag,
                      use_wheelhouse=not args.no_wheelhouse, install=not args.no_install)  # fmt: skip
    except BuildError as e:
        sys.stderr.write(f"build_images: {e}\n")
        return 1
    SIZES_FILE.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(SIZES_FILE.read_text()) if SIZES_FILE.is_file() else {}
    SIZES_FILE.write_text(json.dumps({**known, **built}, indent=2, sort_keys=True) + "\n")
    print(f"\n{'image':<24} {'size':>9} {'build':>8}  reference")
    for key, row in built.items():
        print(f"{key:<24} {row['size_mb']:>6} MB {row['build_s']:>6} s  {row['reference']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
