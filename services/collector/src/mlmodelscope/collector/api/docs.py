"""``/docs``: the Swagger UI served by the collector itself, so the API documentation works on a closed network.

FastAPI's default page loads Swagger UI's JavaScript and CSS from a CDN, which a cluster without egress (or a
laptop offline) cannot reach: the page stays blank. Here the two files come from a folder on disk, found in this
order: the ``docs_assets`` setting (``MLMODELSCOPE_COLLECTOR_DOCS_ASSETS``: any folder holding
``swagger-ui-bundle.js`` and ``swagger-ui.css``, e.g. npm's ``swagger-ui-dist``), then the ``swagger-ui-bundle``
Python package (``pip install swagger-ui-bundle``). Without either, ``/docs`` is a plain page that says how to
install them and links the OpenAPI document; nothing is ever fetched from elsewhere.
"""

from __future__ import annotations

import importlib
from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from mlmodelscope.collector.settings import CollectorSettings

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs-assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REQUIRED_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
ASSETS_PACKAGE = "swagger_ui_bundle"
# Folders searched below a package's root for the two files (its vendored copy sits a level or two down).
_MAX_SEARCHED_FOLDERS = 200


def _holds_assets(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _package_assets() -> Path | None:
    """The folder of ``swagger-ui-bundle``'s copy of Swagger UI, when that package is installed."""
    try:
        package = importlib.import_module(ASSETS_PACKAGE)
    except ImportError:
        return None
    declared = getattr(package, "swagger_ui_path", None) or getattr(package, "swagger_ui_3_path", None)
    roots = [Path(declared)] if declared else []
    if package.__file__:
        roots.append(Path(package.__file__).parent)
    for root in roots:
        if _holds_assets(root):
            return root
        for index, candidate in enumerate(p for p in root.rglob("*") if p.is_dir()):
            if index >= _MAX_SEARCHED_FOLDERS:
                break
            if _holds_assets(candidate):
                return candidate
    return None


def find_assets(settings: CollectorSettings) -> Path | None:
    """Where Swagger UI's files are, or None (see the module docstring for the order)."""
    if settings.docs_assets:
        configured = Path(settings.docs_assets).expanduser()
        return configured if _holds_assets(configured) else None
    return _package_assets()


def _missing_page(settings: CollectorSettings, openapi_url: str) -> HTMLResponse:
    where = (
        f"the folder set in MLMODELSCOPE_COLLECTOR_DOCS_ASSETS ({settings.docs_assets}) does not hold "
        if settings.docs_assets
        else "neither MLMODELSCOPE_COLLECTOR_DOCS_ASSETS nor the swagger-ui-bundle package provides "
    )
    body = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>MLModelScope collector API</title></head>"
        "<body><h1>MLModelScope collector API</h1>"
        f"<p data-testid='docs-assets-missing'>The interactive documentation is not available: {escape(where)}"
        f"{' and '.join(REQUIRED_FILES)}. Install it with <code>pip install swagger-ui-bundle</code>, or point "
        "MLMODELSCOPE_COLLECTOR_DOCS_ASSETS at a folder holding those files (e.g. npm's swagger-ui-dist).</p>"
        f"<p>The API itself is described by the OpenAPI document: <a href='{openapi_url}'>{openapi_url}</a>.</p>"
        "</body></html>"
    )
    return HTMLResponse(body)


def mount(app: FastAPI, settings: CollectorSettings) -> None:
    """Add ``/docs`` (and Swagger UI's OAuth2 redirect page) to an app created with ``docs_url=None``."""
    assets = find_assets(settings)
    openapi_url = app.openapi_url or "/openapi.json"
    if assets is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return _missing_page(settings, openapi_url)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
