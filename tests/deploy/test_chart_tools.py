"""scripts/fetch_tools.py: idempotent (tools in place with their pinned checksums are kept, nothing is fetched),
and checked (a file that does not match its pin is refused or replaced)."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.chart import TOOLS
from tests.support.paths import REPO


def load_fetch_tools() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_tools", REPO / "scripts" / "fetch_tools.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_tools"] = module
    spec.loader.exec_module(module)
    return module


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    tools = load_fetch_tools()
    path = tmp_path / "x"
    path.write_bytes(b"not helm")
    with pytest.raises(tools.FetchError, match="sha256"):
        tools._check(path, "0" * 64, strict=True)
    tools._check(path, tools.sha256_of(path), strict=True)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the binary checksums are pinned for x86-64")
def test_a_tampered_tool_is_not_considered_present(tmp_path: Path) -> None:
    tools = load_fetch_tools()
    fake = tmp_path / "bin" / "helm"
    fake.parent.mkdir()
    fake.write_bytes(b"#!/bin/sh\necho helm\n")
    fake.chmod(0o755)
    assert not tools.present(fake)
    fake.chmod(0o644)
    assert not tools.present(fake)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the binary checksums are pinned for x86-64")
def test_second_run_fetches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("helm", "prometheus", "promtool")
    if not all((TOOLS / name).is_file() for name in names):
        pytest.skip("the tools are not fetched: run `python scripts/fetch_tools.py` (make test does)")
    tools = load_fetch_tools()
    (tmp_path / "bin").mkdir()
    for name in names:
        try:
            os.link(TOOLS / name, tmp_path / "bin" / name)
        except OSError:  # another filesystem
            (tmp_path / "bin" / name).symlink_to(TOOLS / name)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"fetched although present: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert tools.main(["--dest", str(tmp_path)]) == 0
    assert all(tools.present(tmp_path / "bin" / name) for name in names)
