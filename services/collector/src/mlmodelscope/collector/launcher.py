"""Launching evaluations from the web UI in local mode: the collector writes run specs and starts agent processes.

Each run spec is the core's run contract (``mlmodelscope.core.run_contract.RunSpec``, the one the CLI and the
operator write; built by ``run_contract.run_matrix``, as the CLI's are), carrying the Model, Framework and Dataset
as the configured asset folders hold them when the launch is requested (so an agent evaluates exactly those, and
reads no asset folder), and each run is started by the same ``core.run_supervisor.RunSupervisor`` as local mode's
(``<python> -m mlmodelscope.agent --spec <runs>/<run id>/spec.json``, with the Framework resource's
``spec.runtime.python`` when it names one). Agents publish to the collector's own NATS URL, so a launched run
reaches the database like any other. Runs of one evaluation start in order, one per framework at a time (a batch
sweep runs its batch sizes in turn, as ``evaluate`` does). Agents still running when the collector stops are
terminated. Configuration: ``assets``, ``launch_cache_dir``, ``launch_runs_dir``, ``launch_python``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from mlmodelscope.collector.analysis_models import LaunchRequest, LaunchResponse
from mlmodelscope.collector.catalog import registry_of
from mlmodelscope.collector.errors import LaunchError, LaunchNotConfiguredError
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.evaluation.cpu_quota import container_cpus
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV
from mlmodelscope.core.manifests.compatibility import fit
from mlmodelscope.core.manifests.registry import Registry
from mlmodelscope.core.run_contract import RunSpec, run_matrix
from mlmodelscope.core.run_supervisor import RunSupervisor
from mlmodelscope.core.tracing.spans import TraceLevel

log = logging.getLogger(__name__)
_POLL_S = 0.2
_TERMINATE_WAIT_S = 10.0


class LocalLauncher:
    """Starts agent processes for launch requests; ``close`` terminates those still running."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._supervisors: list[RunSupervisor] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def check_configured(self) -> None:
        missing = [
            name
            for name, value in (
                ("assets", self.settings.assets),
                ("launch_cache_dir", self.settings.launch_cache_dir),
                ("launch_runs_dir", self.settings.launch_runs_dir),
                ("nats_url", self.settings.nats_url or ""),
            )
            if not value.strip()
        ]
        if missing:
            variables = ", ".join(f"MLMODELSCOPE_COLLECTOR_{name.upper()}" for name in missing)
            raise LaunchNotConfiguredError(
                f"this collector cannot launch evaluations: {', '.join(missing)} not set",
                hint=f"Set {variables} (see docs/web-ui.md), or run `mlmodelscope evaluate`.",
            )

    def specs(self, request: LaunchRequest, registry: Registry) -> list[RunSpec]:
        for framework in request.frameworks:
            registry.resolve(request.model, framework)  # unknown names and impossible pairs fail here
        _check_fit(registry, request)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        evaluation_id = f"{request.model}-{stamp}-{uuid.uuid4().hex[:6]}"
        frameworks = list(dict.fromkeys(request.frameworks))
        runs_dir = Path(self.settings.launch_runs_dir)
        # Agents side by side share the container's CPUs rather than each taking all of them.
        threads = max(1, container_cpus().cpus // len(frameworks)) if len(frameworks) > 1 else None
        return run_matrix(
            registry,
            evaluation_id,
            request.model,
            frameworks,
            sorted(set(request.batch_sizes)),
            dataset=request.dataset,
            settings=EvaluationSettings(
                scenario=request.scenario, mode=request.mode, min_duration_s=request.min_duration_s
            ),
            cache_dir=Path(self.settings.launch_cache_dir).resolve(),
            output_dir=lambda run_id, _framework, _batch_size: (runs_dir / run_id / "loadgen").resolve(),
            device=request.device,
            intra_op_threads=threads,
            trace_level=TraceLevel.parse(request.trace_level),
            nats_url=self.settings.nats_url or "",
        )

    def launch(self, request: LaunchRequest) -> LaunchResponse:
        """Validate and start the agents in the background; returns at once."""
        self.check_configured()
        try:
            registry = registry_of(self.settings)
            specs = self.specs(request, registry)
            default_python = self.settings.launch_python or sys.executable
            pythons = {spec.run_id: registry.agent_interpreter(spec.framework, default_python) for spec in specs}
        except LaunchError:
            raise
        except MLModelScopeError as e:
            raise LaunchError(e.message, hint=e.hint) from e
        supervisor = RunSupervisor(
            specs,
            Path(self.settings.launch_runs_dir),
            lambda spec: pythons[spec.run_id],
            parallel=len(set(request.frameworks)),
            environment=self._agent_environment(),
        )
        thread = threading.Thread(
            target=self._run_all, args=(supervisor,), name=f"launch-{specs[0].evaluation_id}", daemon=True
        )
        with self._lock:
            self._supervisors.append(supervisor)
            self._threads.append(thread)
        thread.start()
        return LaunchResponse(evaluation_id=specs[0].evaluation_id, run_ids=[spec.run_id for spec in specs])

    def _run_all(self, supervisor: RunSupervisor) -> None:
        while not supervisor.done() and not self._closed.is_set():
            for run_id in supervisor.start_pending():
                log.info("launched run %s (pid %d)", run_id, supervisor.processes[run_id].pid)
            self._closed.wait(_POLL_S)

    def _agent_environment(self) -> dict[str, str]:
        """This process's environment, plus the NATS token the agents need (through the environment, never argv)."""
        environment = dict(os.environ)
        if self.settings.nats_token is not None:
            environment[NATS_TOKEN_ENV] = self.settings.nats_token.get_secret_value()
        return environment

    def close(self) -> None:
        """Stop launching, terminate agents still running and reap them."""
        self._closed.set()
        with self._lock:
            threads, supervisors = list(self._threads), list(self._supervisors)
        for thread in threads:
            thread.join(timeout=5)
        for supervisor in supervisors:
            supervisor.stop(_TERMINATE_WAIT_S)


def _check_fit(registry: Registry, request: LaunchRequest) -> None:
    """A model that cannot consume the dataset is refused before any agent starts, with the reasons."""
    model = registry.model(request.model)
    name = request.dataset or model.spec.dataset
    if name is None:
        return  # the run contract says what is missing
    verdict = fit(model, registry.dataset(name))
    if not verdict.ok:
        raise LaunchError(
            f"model '{model.name}' cannot be evaluated on dataset '{name}': " + " ".join(verdict.reasons),
            hint="The catalog page lists the models that fit each dataset.",
        )
