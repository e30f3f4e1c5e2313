"""The container images, checked statically (no image can be built here): each Dockerfile's entrypoint is a real CLI
subcommand, every file it copies exists and is let through its .dockerignore, the dependency layer comes before the
source, the final stage runs as a non-root uid, and the images named by the Framework resources and the chart's
values each have a Dockerfile and a skaffold artifact built for the platforms the Framework resources promise."""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLI

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
SKAFFOLD = REPO / "skaffold.yaml"
CHART = REPO / "charts" / "mlmodelscope"
ENTRYPOINTS = {
    "operator": ["mlmodelscope", "operator", "run"],
    "collector": ["mlmodelscope", "collector", "serve"],
}
AGENT_ENTRYPOINT = ["mlmodelscope", "agent", "run"]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: (INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((instruction, arguments.strip()))
        else:
            assert instruction == "ARG", f"{path}: {instruction} before FROM"
    return stages


def copies(stage: Stage) -> list[list[str]]:
    """Sources of each COPY from the build context (not --from another stage)."""
    found = []
    for instruction, arguments in stage.instructions:
        if instruction != "COPY":
            continue
        words = shlex.split(arguments)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        found.append(words[:-1])
    return found


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, enough for our files: the last matching pattern (or a parent's) wins."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        pattern = pattern.replace("**/", "*/") if pattern.startswith("**/") else pattern
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes) or (
            pattern.startswith("*/") and any(fnmatch.fnmatchcase(p, pattern[2:]) for p in parts)
        ):
            result = not negate
    return result


def dockerignore(dockerfile: Path) -> list[str]:
    path = dockerfile.with_name("Dockerfile.dockerignore")
    assert path.is_file(), f"{path} missing: the build context is the whole repository"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def entrypoint(stages: list[Stage]) -> list[str]:
    values = [args for ins, args in stages[-1].instructions if ins == "ENTRYPOINT"]
    assert len(values) == 1, "exactly one ENTRYPOINT in the final stage"
    command: list[str] = json.loads(values[0])
    return command


def ids(paths: list[Path]) -> list[str]:
    return [p.parent.name for p in paths]


def test_there_is_an_image_per_component_and_framework_accelerator() -> None:
    names = {p.parent.name for p in DOCKERFILES}
    expected = {"operator", "collector"}
    for path in (REPO / "assets" / "frameworks").glob("*.yaml"):
        framework = yaml.safe_load(path.read_text())
        for accelerator in framework["spec"]["accelerators"]:
            expected.add(f"agent-{framework['metadata']['name']}" + ("-cuda" if accelerator == "gpu" else ""))
    assert names == expected


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_entrypoint_is_a_cli_subcommand(dockerfile: Path) -> None:
    command = entrypoint(parse(dockerfile))
    expected = ENTRYPOINTS.get(dockerfile.parent.name, AGENT_ENTRYPOINT)
    assert command == expected
    if expected == AGENT_ENTRYPOINT:
        from mlmodelscope.operator.settings import OperatorSettings

        assert OperatorSettings().agent_command == command, "the operator's Jobs run the same command"
    returncode, stdout, stderr = cli_help(tuple(command[1:]))
    assert returncode == 0, stderr
    assert "Usage" in stdout


@functools.cache
def cli_help(subcommand: tuple[str, ...]) -> tuple[int, str, str]:
    """``mlmodelscope <subcommand> --help`` (once per subcommand: the agents share one)."""
    result = subprocess.run([str(CLI), *subcommand, "--help"], capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_an_unknown_subcommand_fails_the_help_check() -> None:
    """The check above can fail: a subcommand that does not exist exits non-zero."""
    assert cli_help(("agent", "walk"))[0] != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_every_copied_file_exists_and_is_in_the_context(dockerfile: Path) -> None:
    patterns = dockerignore(dockerfile)
    sources = [source for stage in parse(dockerfile) for group in copies(stage) for source in group]
    assert sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"{dockerfile.parent.name}: COPY {source}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not ignored(str(f.relative_to(REPO)), patterns)]
        assert kept, f"{dockerfile.parent.name}: COPY {source}: everything is excluded by the .dockerignore"
    # What the images need is let through; what they must not carry is not.
    for needed in ("services/core/src/mlmodelscope/core/messages.py", "assets/models/digits-cnn.yaml",
                   "assets/artifacts/digits/digits_cnn.onnx", "constraints.txt"):  # fmt: skip
        assert not ignored(needed, patterns), needed
    for unwanted in (".venv/bin/python", "tests/test_images.py", ".git/config", "results/demo/result.json"):
        assert ignored(unwanted, patterns), unwanted


def test_the_dockerignore_matcher() -> None:
    patterns = ["*", "!services/*/src", "**/__pycache__"]
    assert ignored("README.md", patterns)
    assert not ignored("services/core/src/x.py", patterns)
    assert ignored("services/core/src/__pycache__/x.pyc", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_multi_stage_dependency_layer_first_non_root(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    assert len(stages) >= 3, "deps, app and runtime stages"
    deps = stages[0]
    install = next(
        i for i, (ins, args) in enumerate(deps.instructions) if ins == "RUN" and "-r requirements.txt" in args
    )
    for index, (instruction, arguments) in enumerate(deps.instructions):
        if instruction == "COPY":
            assert "pyproject.toml" in arguments or "services/" not in arguments.split()[0], arguments
        assert not (index > install and instruction == "COPY" and "services/ " in arguments + " ")
    assert any(ins == "COPY" and args.startswith("services/ ") for s in stages[1:] for ins, args in s.instructions)
    users = [args for ins, args in stages[-1].instructions if ins == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root uid (runAsNonRoot can verify it)"
    from mlmodelscope.operator.settings import OperatorSettings

    assert int(uid) == OperatorSettings().run_as_user
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurity"]["runAsUser"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_dependency_layer_resolves(dockerfile: Path) -> None:
    """The requirements the deps stage computes, computed here the same way, from the same files."""
    deps = parse(dockerfile)[0]
    constraints = next(shlex.split(a)[0] for ins, a in deps.instructions if ins == "COPY" and "constraints" in a)
    (run,) = [a for ins, a in deps.instructions if ins == "RUN" and "pyproject_deps.py" in a]
    call = re.search(r"pyproject_deps\.py (?P<args>[^>]+)>", run)
    assert call, run
    arguments = [a for a in shlex.split(call["args"]) if not a.startswith("$")]
    result = subprocess.run(
        [sys.executable, str(IMAGES / "pyproject_deps.py"), "--services", str(REPO / "services"),
         "--constraints", str(REPO / constraints), *arguments],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    requirements = result.stdout.split()
    assert not any(r.startswith("mlmodelscope") for r in requirements)
    assert any(r.startswith("kopf") for r in requirements) and any(r.startswith("fastapi") for r in requirements)
    name = dockerfile.parent.name
    framework_packages = {
        "onnxruntime": "onnxruntime",
        "pytorch": "torch",
        "tensorflow": "tensorflow",
        "mxnet": "mxnet",
    }
    for framework, package in framework_packages.items():
        present = any(r.startswith(package) for r in requirements)
        assert present == (f"agent-{framework}" in name), (name, package)
    if name.endswith("-cuda"):
        assert any(("gpu" in r or "cuda" in r or "cu1" in r) for r in requirements) or "pytorch" in name, requirements


def test_pyproject_deps_rejects_an_unknown_extra(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(IMAGES / "pyproject_deps.py"), "--services", str(REPO / "services"), "agent[caffe]"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1 and "no extra 'caffe'" in result.stderr


def dockerfile_for(image: str) -> Path:
    """The rule images/README.md states: <repository basename>, plus -cuda for a -cuda tag."""
    repository, _, tag = image.rpartition(":")
    return IMAGES / (repository.rsplit("/", 1)[-1] + ("-cuda" if tag.endswith("-cuda") else "")) / "Dockerfile"


def framework_images() -> list[tuple[str, str, str]]:
    found = []
    for folder in (REPO / "assets" / "frameworks", CHART / "files" / "assets" / "frameworks"):
        for path in sorted(folder.glob("*.yaml")):
            for container in yaml.safe_load(path.read_text())["spec"].get("containers", []):
                found.append((container["image"], container["arch"], container["accelerator"]))
    return found


def chart_images() -> list[str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = values["image"]["tag"] or chart["appVersion"]
    return [f"{values['image']['registry']}/{name}:{tag}" for name in ("operator", "collector")]


def test_every_named_image_has_a_dockerfile() -> None:
    images = [image for image, _, _ in framework_images()] + chart_images()
    assert len(images) > 10
    for image in images:
        assert dockerfile_for(image).is_file(), f"{image}: no {dockerfile_for(image).relative_to(REPO)}"


def skaffold_artifacts() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SKAFFOLD.read_text())
    artifacts = list(config["build"]["artifacts"])
    for profile in config["profiles"]:
        artifacts += [p["value"] for p in profile.get("patches", []) if p["path"] == "/build/artifacts/-"]
    return {a["docker"]["dockerfile"]: a for a in artifacts}


def header_platforms(dockerfile: Path) -> set[str]:
    match = re.search(r"^# Platforms: (?P<list>[^(]+)", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile}: no '# Platforms:' header"
    return {p.strip() for p in match["list"].split(",")}


def test_skaffold_builds_every_dockerfile_for_the_promised_platforms() -> None:
    artifacts = skaffold_artifacts()
    assert set(artifacts) == {str(p.relative_to(REPO)) for p in DOCKERFILES}
    for dockerfile in DOCKERFILES:
        artifact = artifacts[str(dockerfile.relative_to(REPO))]
        assert artifact["context"] == "."
        assert artifact["image"].rsplit("/", 1)[-1] == dockerfile.parent.name
        assert set(artifact["platforms"]) == header_platforms(dockerfile), dockerfile.parent.name
    for image, arch, accelerator in framework_images():
        artifact = artifacts[str(dockerfile_for(image).relative_to(REPO))]
        assert f"linux/{arch}" in artifact["platforms"], f"{image} is promised for {arch} but not built for it"
        assert accelerator != "gpu" or dockerfile_for(image).parent.name.endswith("-cuda"), image


def test_skaffold_injects_every_built_image_into_valid_chart_values(tmp_path: Path) -> None:
    from tests.chart_fixtures import helm

    config = yaml.safe_load(SKAFFOLD.read_text())
    (release,) = config["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/mlmodelscope"
    templates = dict(release["setValueTemplates"])
    for profile in config["profiles"]:
        for patch in profile.get("patches", []):
            if "/setValueTemplates/" in patch["path"]:
                templates[patch["path"].rsplit("/", 1)[-1]] = patch["value"]
    built = {a["image"] for a in skaffold_artifacts().values()}
    injected = set()
    for template in templates.values():
        match = re.fullmatch(r"\{\{\.IMAGE_FULLY_QUALIFIED_(?P<name>\w+)\}\}", template)
        assert match, template
        image = next(i for i in built if re.sub(r"[/.\-]", "_", i) == match["name"])
        injected.add(image)
    assert injected == built
    arguments = [a for key in templates for a in ("--set-string", f"{key}=registry.example/x:1")]
    documents = helm("template", "rel", str(CHART), *arguments, home=tmp_path).stdout
    for key in templates:
        if key.startswith("builtinResources"):
            continue
        assert "image: registry.example/x:1" in documents, key
    frameworks = [d for d in yaml.safe_load_all(documents) if d and d["kind"] == "Framework"]
    assert all(c["image"] == "registry.example/x:1" for f in frameworks for c in f["spec"]["containers"])
