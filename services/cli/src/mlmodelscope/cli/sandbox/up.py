"""``mlmodelscope sandbox up``: start everything, write the kubeconfig once it is all ready, stop it all on a signal.

Order: NATS (with a token, kept in a Secret the Jobs read by ``secretKeyRef``), the collector (a subprocess, as in
local mode), KMock with the CRDs and the built-in resources (artifact URIs served over HTTP), the operator (an
asyncio task in this process, the same ``run_operator`` as ``mlmodelscope operator run``) and the kubelet
stand-in (``--runtime process``: each Job's command as a local process; ``podman``: the Job's real image, checked
for before anything starts). Everything listens on 127.0.0.1 only. Stopping runs in reverse order, every wait
bounded; the kubeconfig is removed, since it names a server that no longer exists.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import platform
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kmock
import yaml

from mlmodelscope.agent.bus.connection import generate_token
from mlmodelscope.cli.local import CollectorProcess
from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from mlmodelscope.cli.sandbox import podman
from mlmodelscope.cli.sandbox.artifacts import ArtifactServer, builtin_catalog
from mlmodelscope.cli.sandbox.emulator import GROUP_VERSION, Emulator, declare_resources
from mlmodelscope.cli.sandbox.kubelet import LABEL_SANDBOX, Kubelet
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.manifests.framework_spec import FrameworkSpec

logger = logging.getLogger("mlmodelscope.sandbox")
NATS_SECRET = "mlmodelscope-nats"
OPERATOR_READY_S = 60.0
OPERATOR_STOP_S = 30.0
PLURALS = {"Model": "models", "Framework": "frameworks", "Dataset": "datasets"}


@dataclass(frozen=True)
class SandboxOptions:
    kubeconfig: Path
    asset_roots: list[Path]
    namespace: str = "default"
    api_port: int = 0
    artifacts_port: int = 0
    state_dir: Path | None = None
    max_running: int = 1
    runtime: str = "process"
    image_storage: Path = podman.DEFAULT_STORAGE


def kubeconfig_document(url: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mlmodelscope-sandbox", "cluster": {"server": url}}],
        "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
        "contexts": [
            {
                "name": "mlmodelscope-sandbox",
                "context": {"cluster": "mlmodelscope-sandbox", "user": "sandbox", "namespace": namespace},
            }
        ],
        "current-context": "mlmodelscope-sandbox",
    }


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o600)
    partial.replace(path)


async def _create(client: httpx.AsyncClient, path: str, document: dict[str, Any]) -> None:
    response = await client.post(path, json=document)
    if response.status_code not in (200, 201, 409):
        raise MLModelScopeError(f"the sandbox could not create {path}: {response.status_code} {response.text[:300]}")


async def _install(
    client: httpx.AsyncClient, options: SandboxOptions, state: Path, artifacts: ArtifactServer, nats_token: str
) -> int:
    """CRDs, the NATS token Secret and the built-in resources; returns how many resources."""
    from mlmodelscope.operator import crds  # the operator distribution is a dependency of the CLI

    namespace = options.namespace
    # No Namespace object: KMock cannot parse /api/v1/namespaces paths (namespaces need not exist in it).
    for path in crds.generate(state / "crds"):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        await _create(client, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NATS_SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {"token": base64.b64encode(nats_token.encode()).decode()},
    }
    await _create(client, f"/api/v1/namespaces/{namespace}/secrets", secret)
    catalog = builtin_catalog(options.asset_roots, artifacts.url, namespace)
    artifacts.files.update(catalog.files)
    for document in catalog.documents:
        plural = PLURALS[document["kind"]]
        await _create(client, f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{plural}", document)
    return len(catalog.documents)


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def builtin_images(documents: list[dict[str, Any]], arch: str) -> dict[str, str]:
    """{framework name: the CPU image its Jobs on ``arch`` use} of the built-in Framework resources."""
    images: dict[str, str] = {}
    for document in documents:
        if document["kind"] != "Framework":
            continue
        for container in FrameworkSpec.model_validate(document["spec"]).containers:
            if container.arch == arch and container.accelerator == "cpu":
                images[document["metadata"]["name"]] = container.image
    return images


async def check_podman(options: SandboxOptions, print_line: Callable[[str], None]) -> dict[str, str]:
    """Before anything starts: podman, the image storage scripts/build_images.py fills, and at least one built-in
    Framework's image in it (the missing ones are named); returns podman's environment."""
    if shutil.which("podman") is None:
        raise MLModelScopeError("--runtime podman: podman is not installed (Debian: apt-get install podman runc).")
    try:
        env = podman.storage_env(options.image_storage)
    except FileNotFoundError as e:
        raise MLModelScopeError(f"--runtime podman: {e}") from e
    catalog = builtin_catalog(options.asset_roots, "http://127.0.0.1", options.namespace)
    images = builtin_images(catalog.documents, _host_arch())
    present: dict[str, str] = {}
    for name, image in images.items():
        probe = await asyncio.create_subprocess_exec("podman", "image", "exists", image, env=env)
        if await probe.wait() == 0:
            present[name] = image
    missing = sorted({image for name, image in images.items() if name not in present})
    if not present:
        raise MLModelScopeError(
            f"--runtime podman: no agent image is in the container storage {options.image_storage} (missing: "
            f"{', '.join(missing) or 'no built-in Framework names an image'}); {podman.BUILD_HINT}, e.g. "
            "`python scripts/build_images.py --images agent-onnxruntime` for ONNX Runtime alone."
        )
    if missing:
        print_line(
            f"podman runtime: not built: {', '.join(missing)}: Jobs using them stay Pending (ErrImageNeverPull); "
            f"{podman.BUILD_HINT}"
        )
    return env


async def _start_operator(settings: Any) -> tuple[asyncio.Task[None], asyncio.Event]:
    from mlmodelscope.operator.main import run_operator

    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag))
    ready = asyncio.ensure_future(ready_flag.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=OPERATOR_READY_S, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    if not ready_flag.is_set():
        ready.cancel()
        stop_flag.set()
        raise MLModelScopeError(f"the operator was not ready within {OPERATOR_READY_S:g} s.")
    return task, stop_flag


def _operator_settings(options: SandboxOptions, api_url: str, nats_url: str, collector_url: str, state: Path) -> Any:
    from mlmodelscope.operator.settings import OperatorSettings

    return OperatorSettings.from_env(
        os.environ,
        namespaces=[options.namespace],
        server=api_url,
        nats_url=nats_url,
        nats_token_secret=NATS_SECRET,
        collector_url=collector_url,
        # No asset folder at all: the agents run exactly the resources their run spec carries.
        agent_assets_dir=str(state / "no-assets"),
        agent_work_dir=str(state / "agent"),
        reconcile_interval_s=1.0,
        retry_delay_s=1.0,
    )


def usage_text(options: SandboxOptions, api_url: str, collector_url: str, state: Path, resources: int) -> str:
    config = options.kubeconfig
    return "\n".join(
        [
            f"sandbox ready: Kubernetes API (KMock) {api_url}, {resources} built-in resources in '{options.namespace}'",
            f"  kubeconfig:  {config}",
            f"  collector:   {collector_url}  (web UI {collector_url}/ui)",
            f"  pod logs:    {state / 'pods'}",
            f"  runtime:     {options.runtime}"
            + (
                f" (images from {options.image_storage}; podman ps -a --filter label={LABEL_SANDBOX})"
                if options.runtime == "podman"
                else ""
            ),
            "try:",
            f"  kubectl --kubeconfig {config} apply --validate=false -f assets/examples/evaluation-minimal.yaml",
            f"  kubectl --kubeconfig {config} get evaluations,jobs,pods",
            f"  mlmodelscope runs list --collector-url {collector_url}",
            "Ctrl-C (or SIGTERM) stops everything.",
        ]
    )


async def serve(
    options: SandboxOptions, *, print_line: Callable[[str], None], stop: asyncio.Event | None = None
) -> None:
    """Run the sandbox until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or asyncio.Event()
    if options.runtime == "podman":
        await check_podman(options, print_line)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    temporary = None
    if options.state_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="mlmodelscope-sandbox-")
        state = Path(temporary.name)
    else:
        state = options.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
    try:
        await _serve_in(state, options, print_line, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if temporary is not None:
            temporary.cleanup()


async def _serve_in(
    state: Path, options: SandboxOptions, print_line: Callable[[str], None], stop: asyncio.Event
) -> None:
    """Start NATS, the collector, the artifact server and KMock with the resources, then the workloads; wait for
    ``stop``; stop it all in reverse order, whatever failed on the way."""
    token = generate_token()
    nats = EmbeddedNatsServer(state / "nats", token=token)
    collector = CollectorProcess(
        f"sqlite:///{state / 'collector.db'}", nats.url, state / "collector.log", nats_token=token
    )
    artifacts = ArtifactServer(options.artifacts_port or free_port())
    workloads = _Workloads()
    wrote_config = False
    try:
        await asyncio.to_thread(nats.start)
        await asyncio.to_thread(collector.start)
        await artifacts.start()
        async with Emulator() as emulator, kmock.Server(emulator, port=options.api_port or None) as server:
            declare_resources(emulator)
            api_url = str(server.url).rstrip("/")
            async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
                resources = await _install(client, options, state, artifacts, token)
            settings = _operator_settings(options, api_url, nats.url, collector.url, state)
            await workloads.start(settings, options, api_url, state, stop)
            _write_atomically(options.kubeconfig, yaml.safe_dump(kubeconfig_document(api_url, options.namespace)))
            wrote_config = True
            print_line(usage_text(options, api_url, collector.url, state, resources))
            await stop.wait()
            print_line("sandbox: stopping")
            await workloads.stop()
    finally:
        await workloads.stop()
        if wrote_config:
            with contextlib.suppress(OSError):
                options.kubeconfig.unlink()
        await artifacts.stop()
        await asyncio.to_thread(collector.stop)
        await asyncio.to_thread(nats.stop)


@dataclass
class _Workloads:
    """The operator (an asyncio task and its stop flag) and the kubelet stand-in, while they run."""

    kubelet: Kubelet | None = None
    kubelet_task: asyncio.Task[None] | None = None
    operator: tuple[asyncio.Task[None], asyncio.Event] | None = None
    kubelet_stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(
        self, settings: Any, options: SandboxOptions, api_url: str, state: Path, stop: asyncio.Event
    ) -> None:
        self.operator = await _start_operator(settings)
        # kopf installs its own SIGINT/SIGTERM handlers (they stop only the operator): take them back, and
        # stop the whole sandbox if the operator ends for any reason.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        self.operator[0].add_done_callback(lambda _: stop.set())
        self.kubelet = Kubelet(
            api_url,
            [options.namespace],
            state,
            max_running=options.max_running,
            runtime=options.runtime,
            image_storage=options.image_storage,
        )
        self.kubelet_task = asyncio.create_task(self.kubelet.run(self.kubelet_stop))

    async def stop(self) -> None:
        """Stop the kubelet, then the operator (each wait bounded); a second call does nothing."""
        self.kubelet_stop.set()
        if self.kubelet is not None or self.operator is not None:
            await _stop(self.kubelet, self.kubelet_task, self.operator)
        self.kubelet = None
        self.operator = None


async def _stop(
    kubelet: Kubelet | None,
    kubelet_task: asyncio.Task[None] | None,
    operator: tuple[asyncio.Task[None], asyncio.Event] | None,
) -> None:
    if kubelet_task is not None:
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(kubelet_task, timeout=5)
    if kubelet is not None:
        await kubelet.stop()
    if operator is not None:
        task, flag = operator
        flag.set()
        try:
            await asyncio.wait_for(task, timeout=OPERATOR_STOP_S)
        except (TimeoutError, Exception) as e:  # stopping must go on: the rest still has to stop
            logger.warning("the operator did not stop cleanly: %s", e)
