"""``mlmodelscope sandbox up`` as a user runs it, for the tests: a subprocess from the repository root, waited for
until it writes its kubeconfig, driven with the real kubectl, stopped with SIGTERM (bounded), and the processes it
started, read from /proc."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.cli import clean_environment
from tests.support.paths import CLI, REPO

KUBECTL = Path("/usr/bin/kubectl")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Sandbox:
    """``mlmodelscope sandbox up`` as a subprocess (``options``: more of its options, e.g. ``--runtime podman``),
    ready once it has written the kubeconfig."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        self.kubeconfig = tmp_path / "kubeconfig"
        self.state = tmp_path / "state"
        self.log = tmp_path / "sandbox.log"
        environment = clean_environment()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(CLI),
                    "sandbox",
                    "up",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--state-dir",
                    str(self.state),
                    *options,
                ],
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while not self.kubeconfig.exists():
            assert self.process.poll() is None, f"the sandbox exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no kubeconfig within 120 s:\n{self.output()}"
            time.sleep(0.2)

    @property
    def collector_url(self) -> str:
        found = re.search(r"collector:\s+(http://\S+)", self.output())
        assert found, self.output()
        return found.group(1)

    def collector_json(self, path: str) -> Any:
        response = httpx.get(self.collector_url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-5000:]

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, document: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(document))

    def get(self, path: str) -> Any:
        return json.loads(self.kubectl("get", "--raw", path))

    def wait_finished(self, name: str, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = json.loads(self.kubectl("get", "evaluation", name, "-o", "json")).get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                return status
            assert time.monotonic() < deadline, f"{name} not finished in {timeout_s} s: {status}\n{self.output()}"
            time.sleep(1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
