"""Process entry: ``serve(settings)`` runs the app under uvicorn; ``main()`` reads the settings from the environment.

The CLI wires ``mlmodelscope collector serve`` to ``serve``; this module is the only place settings are read from
the environment.
"""

from __future__ import annotations

import logging
import os

import uvicorn

from mlmodelscope.collector.api.app import create_app
from mlmodelscope.collector.settings import CollectorSettings


def serve(settings: CollectorSettings) -> None:
    """Run the collector until interrupted (uvicorn handles SIGINT/SIGTERM and runs the lifespan's shutdown)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


def main() -> None:
    serve(CollectorSettings.from_env(os.environ))


if __name__ == "__main__":
    main()
