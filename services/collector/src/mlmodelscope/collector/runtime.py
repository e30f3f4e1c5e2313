"""What one running collector holds (database, metrics, ingestor, consumer), built by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.metrics import CollectorMetrics, create_registry
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.storage.aggregates import load_snapshot
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import migrate


@dataclass
class CollectorRuntime:
    settings: CollectorSettings
    database: Database
    metrics: CollectorMetrics
    registry: CollectorRegistry
    ingestor: Ingestor
    consumer: JetStreamConsumer | None = None


def open_runtime(settings: CollectorSettings) -> CollectorRuntime:
    """Connect, migrate the schema, and seed the metrics from the database (blocking: call it in a thread)."""
    database = Database(settings.database_url)
    try:
        migrate(database)
        metrics = CollectorMetrics()
        with database.read() as connection:
            metrics.load(load_snapshot(connection))
    except BaseException:
        database.dispose()
        raise
    return CollectorRuntime(
        settings=settings,
        database=database,
        metrics=metrics,
        registry=create_registry(metrics),
        ingestor=Ingestor(database, metrics),
    )
