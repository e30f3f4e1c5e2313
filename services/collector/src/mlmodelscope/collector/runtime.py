"""What one running collector holds (database, metrics, ingestor, consumer, launcher, regression monitor), built by
the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.kube_launcher import KubeLauncher
from mlmodelscope.collector.launcher import LocalLauncher
from mlmodelscope.collector.metrics import CollectorMetrics, create_registry
from mlmodelscope.collector.regression_monitor import RegressionMonitor, seed_metrics
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.storage.aggregates import load_snapshot
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import ANALYSIS_MIGRATIONS, analysis_schema_version, migrate
from mlmodelscope.core.analysis.regression import RegressionPolicy


@dataclass
class CollectorRuntime:
    settings: CollectorSettings
    database: Database
    metrics: CollectorMetrics
    registry: CollectorRegistry
    ingestor: Ingestor
    launcher: LocalLauncher
    monitor: RegressionMonitor
    consumer: JetStreamConsumer | None = None
    kube: KubeLauncher | None = None


def open_runtime(settings: CollectorSettings) -> CollectorRuntime:
    """Connect, migrate the schema, and seed the metrics from the database (blocking: call it in a thread)."""
    database = Database(settings.database_url)
    try:
        migrate(database)
        migrate(database, ANALYSIS_MIGRATIONS, versions=analysis_schema_version)
        metrics = CollectorMetrics()
        with database.read() as connection:
            metrics.load(load_snapshot(connection))
        seed_metrics(database, metrics)
    except BaseException:
        database.dispose()
        raise
    return CollectorRuntime(
        settings=settings,
        database=database,
        metrics=metrics,
        registry=create_registry(metrics),
        ingestor=Ingestor(database, metrics),
        launcher=LocalLauncher(settings),
        kube=KubeLauncher(settings) if settings.kube_api_url else None,
        monitor=RegressionMonitor(
            database,
            metrics,
            RegressionPolicy(
                p99_threshold=settings.regression_p99_threshold,
                throughput_threshold=settings.regression_throughput_threshold,
            ),
        ),
    )
