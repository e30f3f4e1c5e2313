"""Finding the cluster tools (helm, prometheus) that ``scripts/fetch_tools.py`` puts in ``.tools/bin``, and
rendering the chart with a real helm. A test that needs an absent tool is skipped, saying how to get it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import REPO

CHART = REPO / "charts" / "mlmodelscope"
TOOLS = REPO / ".tools" / "bin"


def tool(name: str) -> Path:
    """The tool from ``.tools/bin`` (or PATH); skips the test when neither has it."""
    local = TOOLS / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.skip(f"{name} is not installed: run `python scripts/fetch_tools.py` (make test does)")


def helm(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm offline with its own HOME (no repositories, no cache shared with the user)."""
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", ""), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}  # fmt: skip
    completed = subprocess.run(
        [str(tool("helm")), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr}")
    return completed


def render(home: Path, *args: str, namespace: str = "mlms") -> list[dict[str, Any]]:
    """``helm template`` of the chart (``--include-crds``), as parsed documents (empty ones dropped)."""
    out = helm("template", "rel", str(CHART), "--namespace", namespace, "--include-crds", *args, home=home).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def granted_rules(documents: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], set[str]]:
    """What the rendered Roles (or ClusterRoles) of ``kind`` grant: (apiGroup, resource) -> verbs."""
    rules: dict[tuple[str, str], set[str]] = {}
    for role in by_kind(documents, kind):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


# The operator's RBAC rules the chart must grant, exactly (least privilege): (apiGroup, resource) -> verbs.
EXPECTED_RULES = {
    ("mlmodelscope.org", "evaluations"): {"get", "list", "watch", "patch"},
    ("mlmodelscope.org", "evaluations/status"): {"get", "patch"},
    ("mlmodelscope.org", "evaluations/finalizers"): {"update"},
    ("mlmodelscope.org", "models"): {"get", "list", "watch"},
    ("mlmodelscope.org", "frameworks"): {"get", "list", "watch"},
    ("mlmodelscope.org", "datasets"): {"get", "list", "watch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "list", "watch"},
}
