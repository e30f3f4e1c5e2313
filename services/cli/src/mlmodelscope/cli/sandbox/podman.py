"""A Pod's container as ``podman`` runs it: the one translation of a Job's pod spec into podman arguments.

Why this exists: the sandbox's kubelet (``--runtime podman``) and the container smoke test
(tests/deploy/test_image_smoke.py) both run the operator's Jobs as their real images, and must run them exactly as a
kubelet would: the container's uid/gid, a read-only root filesystem, the dropped capabilities, no privilege
escalation, a tmpfs for every emptyDir, the memory limit, the command and args. Whatever podman cannot express
here (a volume that is not an emptyDir, a root user) raises ``UnsupportedPod`` rather than being dropped.
The environment goes through an env file (mode 0600), so that Secret values and the run spec are not on a
command line. The images live in the container storage that scripts/build_images.py fills (``.cache/containers``
by default); ``storage_env`` points podman at it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = Path(".cache") / "containers"
BUILD_HINT = "build it with `make images` (or `python scripts/build_images.py --images KEY`)"


class UnsupportedPod(Exception):
    """The pod spec asks for something this translation cannot express."""


def storage_env(storage: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for podman with the storage and configuration scripts/build_images.py wrote in
    ``storage`` (``storage.conf``, ``containers.conf``); ``FileNotFoundError`` when they are not there."""
    files = {"CONTAINERS_STORAGE_CONF": storage / "storage.conf", "CONTAINERS_CONF": storage / "containers.conf"}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: no images were built here; run `make images`")
    env = dict(os.environ if base is None else base)
    env.update({name: str(path.resolve()) for name, path in files.items()})
    return env


def literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's env when every variable is a literal ``value`` (UnsupportedPod otherwise)."""
    environment: dict[str, str] = {}
    for variable in container.get("env", []):
        if "value" not in variable:
            raise UnsupportedPod(f"{variable['name']}: only literal values can be read without an API server")
        environment[variable["name"]] = str(variable["value"])
    return environment


def write_env_file(path: Path, environment: Mapping[str, str]) -> Path:
    """``environment`` as a podman env file (mode 0600); a value with a line break cannot be written there."""
    lines = []
    for name, value in environment.items():
        if "\n" in value or "\r" in value:
            raise UnsupportedPod(f"{name}: a value with a line break cannot be passed to podman")
        lines.append(f"{name}={value}\n")
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def run_args(pod: Mapping[str, Any], env_file: Path | None) -> list[str]:
    """``podman run``/``podman create`` arguments for the pod's single container, as the kubelet would run it
    (image and args last; no ``--network``, ``--name`` or labels: the caller adds them before these)."""
    (container,) = pod["containers"]
    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup", user))
    if user in (None, 0) or not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
        raise UnsupportedPod("the container must run as a non-root uid (runAsNonRoot and runAsUser)")
    args = ["--user", f"{user}:{group}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for capability in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in empty_dirs:
            raise UnsupportedPod(f"volume {mount['name']}: only emptyDirs are translated (to a tmpfs)")
        args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        args += ["--memory", str(limits["memory"])]
    args += ["--entrypoint", json.dumps(container["command"]), container["image"], *container.get("args", [])]
    return args
