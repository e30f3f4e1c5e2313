"""The built-in resources as the sandbox installs them, and the HTTP server of their artifacts.

In a cluster, relative artifact URIs resolve against the asset folder baked into the agent's image. The sandbox's
agents run with no asset folder at all, so every relative ``uri`` of a built-in manifest (artifacts, labels, a
dataset's source) is rewritten to ``http://127.0.0.1:PORT/<root>/<path>``, served from the assets folder by
``ArtifactServer``; the ``sha256`` stays as it is, so the agent still verifies every byte. Only the files the
manifests name are served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from mlmodelscope.core.manifests.loading import iter_manifest_files, read_documents

CATALOG_LABELS = {"app.kubernetes.io/managed-by": "mlmodelscope-sandbox", "app.kubernetes.io/component": "catalog"}


@dataclass
class BuiltinCatalog:
    """The Model/Framework/Dataset documents of the asset roots, with their served files (URL path -> file)."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _rewrite(node: Any, folder: Path, root: Path, prefix: str, base_url: str, files: dict[str, Path]) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, folder, root, prefix, base_url, files) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {k: _rewrite(v, folder, root, prefix, base_url, files) for k, v in node.items()}
    uri = node.get("uri")
    if isinstance(uri, str) and "sha256" in node and not urlsplit(uri).scheme:
        target = (folder / uri).resolve()
        if target.is_file() and target.is_relative_to(root):
            path = f"/{prefix}/{quote(target.relative_to(root).as_posix())}"
            files[path] = target
            rewritten["uri"] = base_url + path
    return rewritten


def builtin_catalog(roots: list[Path], base_url: str, namespace: str) -> BuiltinCatalog:
    """Every manifest of ``roots`` for ``namespace``, relative artifact URIs served from ``base_url``."""
    catalog = BuiltinCatalog()
    for index, root in enumerate(roots):
        resolved = root.resolve()
        for path in iter_manifest_files(resolved):
            for _, document in read_documents(path):
                if not isinstance(document, dict) or document.get("kind") not in ("Model", "Framework", "Dataset"):
                    continue
                document = _rewrite(document, path.parent, resolved, str(index), base_url, catalog.files)
                metadata = document.setdefault("metadata", {})
                metadata["namespace"] = namespace
                metadata["labels"] = {**CATALOG_LABELS, **(metadata.get("labels") or {})}
                catalog.documents.append(document)
    return catalog


class ArtifactServer:
    """Serves ``files`` (URL path -> file) on 127.0.0.1 at ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.files: dict[str, Path] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = self.files.get(request.path)
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
