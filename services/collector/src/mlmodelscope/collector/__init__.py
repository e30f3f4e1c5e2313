"""The collector: ingests the messages agents publish on JetStream into SQL, and serves runs, traces and metrics.

Entry points: ``create_app(settings)`` (the FastAPI app), ``CollectorSettings`` (``from_env``), ``serve(settings)``
(uvicorn) in ``mlmodelscope.collector.main``, ``Ingestor.ingest(envelope)`` and ``JetStreamConsumer``.
"""
