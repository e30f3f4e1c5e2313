"""Running the operator: ``mlmodelscope operator run`` (and ``python -m mlmodelscope.operator.main``).

Everything is built here, per run: the settings, the API and collector clients, a fresh kopf registry with the
handlers (nothing is registered at import time, so tests can start and restart operators in one process), and
kopf's own settings: no cluster scanning (the CRDs are installed with the chart, and the namespaces are given or
the operator is cluster-wide), kopf's progress in annotations (the status schema is ours), standalone (one
replica; no peering object needed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import kopf

from mlmodelscope.operator import jobs
from mlmodelscope.operator.handlers import register
from mlmodelscope.operator.kube import KubeClient, connection_info
from mlmodelscope.operator.reconcile import Reconciler
from mlmodelscope.operator.results import RunResultReader
from mlmodelscope.operator.settings import OperatorSettings

logger = logging.getLogger("mlmodelscope.operator")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    configured = kopf.OperatorSettings()
    configured.scanning.disabled = True
    configured.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    configured.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    configured.posting.level = _LEVELS[settings.posting_level]
    configured.networking.request_timeout = settings.api_timeout_s
    # Server-side filtering: a cluster-wide operator streams only its own Jobs and their pods, not every pod.
    configured.watching.label_selectors["batch", "v1", "jobs"] = jobs.LABEL_EVALUATION
    configured.watching.label_selectors["v1", "pods"] = jobs.LABEL_EVALUATION
    return configured


async def run_operator(
    settings: OperatorSettings,
    *,
    stop_flag: Any = None,
    ready_flag: Any = None,
    reconciler_ready: asyncio.Future[Reconciler] | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or forever). ``reconciler_ready`` receives the reconciler (tests,
    benchmarks: its recorded latencies)."""
    configured = kopf_settings(settings)
    kube = KubeClient(connection_info(settings, configured, logger), timeout_s=settings.api_timeout_s)
    collector = RunResultReader(settings.collector_url, timeout_s=settings.collector_timeout_s)
    reconciler = Reconciler(kube, collector, settings)
    if reconciler_ready is not None:
        reconciler_ready.set_result(reconciler)
    registry = kopf.OperatorRegistry()
    register(registry, settings, reconciler)
    try:
        await kopf.operator(
            registry=registry,
            settings=configured,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await kube.close()
        await collector.close()


def main(argv: list[str] | None = None) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = OperatorSettings.from_env(os.environ)
    asyncio.run(run_operator(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
