"""The web UI: server-rendered pages (Jinja2) with charts drawn as inline SVG by ``core.analysis.svg``.

Pages read the same service functions as the REST API (``collector.analysis``, ``storage.reads``), so every number a
page shows is the API's number, formatted. No JavaScript library and nothing fetched from the internet: the
pages work offline, and the CLI's HTML report reuses the same SVG renderer.
"""
