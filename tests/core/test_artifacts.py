"""The artifact store against real sources: local files, a real HTTP server, a real SeaweedFS S3 server, and real
tar/zip archives, including hostile ones."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import re
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlmodelscope.core.artifacts import archive as archive_module
from mlmodelscope.core.artifacts.archive import safe_extract
from mlmodelscope.core.artifacts.digests import HashingWriter, sha256_of_file
from mlmodelscope.core.artifacts.settings import DownloadSettings, S3Settings
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    StoreUnreachableError,
    TransientError,
    UnsafeArchiveError,
    UnsupportedUriError,
)
from tests.support.s3_server import SeaweedS3, closed_port

# --- helpers ---------------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_files(cache_dir: Path) -> list[Path]:
    """Every file (not folder) under the cache's content-addressed and temporary areas."""
    return sorted(p for area in ("sha256", "tmp", "extracted") for p in (cache_dir / area).rglob("*") if p.is_file())


def assert_nothing_cached(cache_dir: Path) -> None:
    assert cached_files(cache_dir) == []


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def store(cache_dir: Path) -> ArtifactStore:
    return ArtifactStore(cache_dir, downloads=DownloadSettings(read_timeout_s=5.0, backoff_s=0.01))


# --- settings --------------------------------------------------------------------------------------------------


def test_s3_settings_from_env() -> None:
    assert S3Settings.from_env({}) is None
    assert S3Settings.from_env({"MLMODELSCOPE_S3_ENDPOINT": "  "}) is None
    settings = S3Settings.from_env(
        {
            "MLMODELSCOPE_S3_ENDPOINT": "minio.local:9000",
            "MLMODELSCOPE_S3_ACCESS_KEY": "ak",
            "MLMODELSCOPE_S3_SECRET_KEY": "s3cr3t",
            "MLMODELSCOPE_S3_SECURE": "true",
            "MLMODELSCOPE_S3_REGION": "eu-west-1",
        }
    )
    assert settings == S3Settings(
        endpoint="minio.local:9000", access_key="ak", secret_key="s3cr3t", secure=True, region="eu-west-1"
    )
    assert "s3cr3t" not in repr(settings)
    defaults = S3Settings.from_env({"MLMODELSCOPE_S3_ENDPOINT": "localhost:9000"})
    assert defaults is not None and not defaults.secure and defaults.region == "us-east-1"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"MLMODELSCOPE_S3_ENDPOINT": "http://localhost:9000"}, "MLMODELSCOPE_S3_ENDPOINT"),
        ({"MLMODELSCOPE_S3_ENDPOINT": "localhost:9000/bucket"}, "MLMODELSCOPE_S3_ENDPOINT"),
        ({"MLMODELSCOPE_S3_ENDPOINT": "localhost:9000", "MLMODELSCOPE_S3_SECURE": "maybe"}, "MLMODELSCOPE_S3_SECURE"),
    ],
)
def test_s3_settings_from_env_rejects_bad_values(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ArtifactError) as info:
        S3Settings.from_env(environ)
    assert needle in info.value.message and info.value.hint


# --- local files -----------------------------------------------------------------------------------------------


def test_relative_path_is_resolved_against_base_dir(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    manifest_dir = tmp_path / "assets" / "models" / "m"
    (manifest_dir / "weights").mkdir(parents=True)
    data = b"model bytes"
    (manifest_dir / "weights" / "model.onnx").write_bytes(data)

    path = store.fetch("weights/model.onnx", sha(data), base_dir=manifest_dir)

    assert path == cache_dir / "sha256" / sha(data) / "model.onnx"
    assert path.read_bytes() == data


def test_relative_path_without_base_dir_is_an_error(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError, match=r"weights/model\.onnx") as info:
        store.fetch("weights/model.onnx", None)
    assert "base_dir" in info.value.hint


def test_file_uri_and_absolute_path(tmp_path: Path, store: ArtifactStore) -> None:
    source = tmp_path / "dir with space" / "labels.txt"
    source.parent.mkdir()
    source.write_bytes(b"cat\ndog\n")

    from_uri = store.fetch(source.as_uri(), sha(b"cat\ndog\n"))
    from_path = store.fetch(str(source), sha(b"cat\ndog\n"), base_dir=tmp_path / "elsewhere")

    assert from_uri == from_path
    assert from_uri.name == "labels.txt" and from_uri.read_bytes() == b"cat\ndog\n"


@pytest.mark.parametrize(
    ("uri", "needle"), [("file://server/share/m.onnx", "cannot name a host"), ("file:m.onnx", "absolute path")]
)
def test_malformed_file_uri(store: ArtifactStore, tmp_path: Path, uri: str, needle: str) -> None:
    with pytest.raises(ArtifactError, match=needle) as info:
        store.fetch(uri, None, base_dir=tmp_path)
    assert uri in info.value.message and "file:///" in info.value.hint


def test_cached_files_are_read_only(tmp_path: Path, store: ArtifactStore) -> None:
    (tmp_path / "m.onnx").write_bytes(b"m")
    path = store.fetch("m.onnx", None, base_dir=tmp_path)
    assert path.stat().st_mode & 0o222 == 0


def test_missing_local_file(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    with pytest.raises(ArtifactNotFoundError) as info:
        store.fetch("missing.onnx", sha(b"x"), base_dir=tmp_path)
    assert "missing.onnx" in info.value.message and info.value.hint
    assert not isinstance(info.value, TransientError)
    assert_nothing_cached(cache_dir)


def test_folder_instead_of_file(tmp_path: Path, store: ArtifactStore) -> None:
    (tmp_path / "saved_model").mkdir()
    with pytest.raises(ArtifactError, match="is a folder") as info:
        store.fetch("saved_model", None, base_dir=tmp_path)
    assert ".tar.gz" in info.value.hint


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    expected = sha(b"original")

    with pytest.raises(ChecksumMismatchError) as info:
        store.fetch("model.onnx", expected, base_dir=tmp_path)

    message = info.value.message
    assert "model.onnx" in message and expected in message and sha(b"tampered") in message
    assert "sha256" in info.value.hint and "manifest" in info.value.hint
    assert not (cache_dir / "sha256" / expected).exists()
    assert not (cache_dir / "sha256" / sha(b"tampered")).exists()
    assert_nothing_cached(cache_dir)


def test_pinned_digest_accepts_prefix_and_upper_case(tmp_path: Path, store: ArtifactStore) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    path = store.fetch("a.bin", "sha256:" + sha(b"abc").upper(), base_dir=tmp_path)
    assert path.parent.name == sha(b"abc")


@pytest.mark.parametrize("bad", ["abc", "md5:" + "0" * 64, "g" * 64, sha(b"x") + "0"])
def test_malformed_pinned_digest(tmp_path: Path, store: ArtifactStore, bad: str) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    with pytest.raises(ArtifactError, match="not 64 hexadecimal digits") as info:
        store.fetch("a.bin", bad, base_dir=tmp_path)
    assert "a.bin" in info.value.message and "sha256sum" in info.value.hint


def test_cache_hit_needs_no_source(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"weights")
    first = store.fetch("model.onnx", sha(b"weights"), base_dir=tmp_path)
    source.unlink()

    again = store.fetch("model.onnx", sha(b"weights"), base_dir=tmp_path)
    from_other_store = ArtifactStore(cache_dir).fetch(source.as_uri(), sha(b"weights"))

    assert again == first == from_other_store
    assert again.read_bytes() == b"weights"


def test_unpinned_fetch_is_hashed_and_content_addressed(tmp_path: Path, store: ArtifactStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    (tmp_path / "data.npz").write_bytes(data)

    path = store.fetch("data.npz", None, base_dir=tmp_path)

    assert path.parent.name == sha(data) == sha256_of_file(path)
    assert path.read_bytes() == data
    # Every fetch without a pin reads the source again: there is nothing to look the cache up by.
    (tmp_path / "data.npz").unlink()
    with pytest.raises(ArtifactNotFoundError):
        store.fetch("data.npz", None, base_dir=tmp_path)


@pytest.mark.parametrize("uri", ["ftp://example.org/model.onnx", "gs://bucket/model.onnx", "hdfs://nn/x"])
def test_unsupported_scheme(store: ArtifactStore, uri: str) -> None:
    with pytest.raises(UnsupportedUriError) as info:
        store.fetch(uri, None)
    assert uri in info.value.message
    for scheme in ("file://", "http://", "https://", "s3://"):
        assert scheme in info.value.hint


def test_s3_uri_without_settings(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactError) as info:
        store.fetch("s3://models/resnet.onnx", sha(b"x"))
    assert "s3://models/resnet.onnx" in info.value.message
    assert "MLMODELSCOPE_S3_ENDPOINT" in info.value.hint


@pytest.mark.parametrize("uri", ["s3://bucket-only", "s3://bucket/", "s3:///key"])
def test_malformed_s3_uri(uri: str, cache_dir: Path) -> None:
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=f"127.0.0.1:{closed_port()}"))
    with pytest.raises(ArtifactError, match="bucket and an object key"):
        store.fetch(uri, None)


# --- atomicity -------------------------------------------------------------------------------------------------


def test_failure_mid_write_leaves_no_file(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    real_write = HashingWriter.write

    def write_then_fail(self: HashingWriter, chunk: bytes) -> None:
        if self.size_bytes > 0:
            raise OSError(28, "No space left on device")
        real_write(self, chunk)

    monkeypatch.setattr(HashingWriter, "write", write_then_fail)
    with pytest.raises(ArtifactError, match="cannot write into the artifact cache") as info:
        ArtifactStore(cache_dir).fetch("big.bin", sha(data), base_dir=tmp_path)
    assert isinstance(info.value.__cause__, OSError)
    assert not (cache_dir / "sha256" / sha(data)).exists()
    assert_nothing_cached(cache_dir)

    monkeypatch.undo()
    path = ArtifactStore(cache_dir).fetch("big.bin", sha(data), base_dir=tmp_path)
    assert path.read_bytes() == data


def test_stale_temp_files_are_swept_and_ignored(tmp_path: Path, cache_dir: Path) -> None:
    data = b"payload"
    (tmp_path / "model.onnx").write_bytes(data)
    # What a killed run leaves behind: a half download and a half extraction, both a day old, plus a fresh one
    # that may belong to a download running right now in another process.
    (cache_dir / "tmp").mkdir(parents=True)
    old_part = cache_dir / "tmp" / "download-old.part"
    old_part.write_bytes(data[:3])
    old_extraction = cache_dir / "extracted" / f".{sha(data)}.x.partial"
    (old_extraction / "sub").mkdir(parents=True)
    (old_extraction / "sub" / "f").write_bytes(b"")
    day_ago = time.time() - 2 * 24 * 3600
    for path in (old_part, old_extraction):
        os.utime(path, (day_ago, day_ago))
    fresh_part = cache_dir / "tmp" / "download-fresh.part"
    fresh_part.write_bytes(b"in progress")

    path = ArtifactStore(cache_dir).fetch("model.onnx", sha(data), base_dir=tmp_path)

    assert path.read_bytes() == data
    assert not old_part.exists() and not old_extraction.exists()
    assert fresh_part.exists()


# --- HTTP ------------------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, plus /truncated.bin (body cut short) and /broken (HTTP 500); counts requests."""

    server: _CountingServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        if self.path == "/truncated.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(1_000_000))
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True
            return
        if self.path == "/broken":
            self.send_error(500, "exploded")
            return
        super().do_GET()


class _CountingServer(http.server.ThreadingHTTPServer):
    requests: list[str]
    lock: threading.Lock


@dataclass
class HttpSite:
    root: Path
    url: str
    server: _CountingServer

    @property
    def requests(self) -> list[str]:
        return list(self.server.requests)


@pytest.fixture
def http_site(tmp_path: Path) -> Iterator[HttpSite]:
    root = tmp_path / "www"
    root.mkdir()
    server = _CountingServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.requests, server.lock = [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HttpSite(root=root, url=f"http://127.0.0.1:{server.server_address[1]}", server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_fetch_and_cache_hit(http_site: HttpSite, store: ArtifactStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    (http_site.root / "models").mkdir()
    (http_site.root / "models" / "resnet 50.onnx").write_bytes(data)
    uri = f"{http_site.url}/models/resnet%2050.onnx"

    path = store.fetch(uri, sha(data))
    again = store.fetch(uri, sha(data))

    assert path == again and path.name == "resnet 50.onnx"
    assert path.read_bytes() == data
    assert http_site.requests == ["/models/resnet%2050.onnx"]  # the second fetch was a cache hit


def test_http_404(http_site: HttpSite, store: ArtifactStore, cache_dir: Path) -> None:
    uri = f"{http_site.url}/nope.onnx"
    with pytest.raises(ArtifactNotFoundError) as info:
        store.fetch(uri, None)
    assert uri in info.value.message and "404" in info.value.message
    assert_nothing_cached(cache_dir)


def test_http_500_is_transient(http_site: HttpSite, store: ArtifactStore) -> None:
    with pytest.raises(StoreUnreachableError, match="500") as info:
        store.fetch(f"{http_site.url}/broken", None)
    assert isinstance(info.value, TransientError)


def test_http_unreachable_fails_fast(store: ArtifactStore, cache_dir: Path) -> None:
    port = closed_port()
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError) as info:
        store.fetch(f"http://127.0.0.1:{port}/model.onnx", sha(b"x"))
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in info.value.message
    assert "server" in info.value.hint
    assert_nothing_cached(cache_dir)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel does) but never answers a request."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_http_server_that_never_answers_times_out(silent_port: int, cache_dir: Path) -> None:
    store = ArtifactStore(cache_dir, downloads=DownloadSettings(read_timeout_s=0.5, attempts=1))
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError, match=r"did not answer within 0\.5 s"):
        store.fetch(f"http://127.0.0.1:{silent_port}/model.onnx", None)
    assert time.monotonic() - start < 5
    assert_nothing_cached(cache_dir)


def test_http_download_cut_short_leaves_no_file(http_site: HttpSite, store: ArtifactStore, cache_dir: Path) -> None:
    with pytest.raises(StoreUnreachableError, match="broke off"):
        store.fetch(f"{http_site.url}/truncated.bin", None)
    assert_nothing_cached(cache_dir)

    data = b"complete"
    (http_site.root / "good.bin").write_bytes(data)
    path = store.fetch(f"{http_site.url}/good.bin", sha(data))
    assert path.read_bytes() == data
    assert cached_files(cache_dir) == [path]


def test_concurrent_fetches_of_one_artifact(http_site: HttpSite, cache_dir: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    (http_site.root / "shared.bin").write_bytes(data)
    uri = f"{http_site.url}/shared.bin"

    def fetch(pinned: bool) -> Path:
        # A store per worker, as separate processes sharing one cache folder would have.
        return ArtifactStore(cache_dir).fetch(uri, sha(data) if pinned else None)

    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(fetch, [True, False] * 4))

    assert len(set(paths)) == 1
    assert paths[0].read_bytes() == data
    assert cached_files(cache_dir) == [paths[0]]


# --- archives --------------------------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def make_tar(path: Path, members: list[tuple[str, bytes, dict[str, object]]]) -> Path:
    compressed = path.name.endswith((".tar.gz", ".tgz"))
    with tarfile.open(path, "w:gz") if compressed else tarfile.open(path, "w") as tar:
        for name, data, fields in members:
            _add(tar, name, data, **fields)
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


GOOD_MEMBERS: list[tuple[str, bytes, dict[str, object]]] = [
    ("saved_model", b"", {"type": tarfile.DIRTYPE, "mode": 0o755}),
    ("saved_model/saved_model.pb", b"graph", {}),
    ("saved_model/variables/variables.index", b"index", {}),
    ("saved_model/latest.pb", b"", {"type": tarfile.SYMTYPE, "linkname": "saved_model.pb"}),
    ("saved_model/copy.pb", b"", {"type": tarfile.LNKTYPE, "linkname": "saved_model/saved_model.pb"}),
]


def test_fetch_and_extract_tar_gz(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    archive = make_tar(tmp_path / "model.tar.gz", GOOD_MEMBERS)
    digest = sha256_of_file(archive)

    folder = store.fetch_and_extract("model.tar.gz", digest, base_dir=tmp_path)

    assert folder == cache_dir / "extracted" / digest
    assert (folder / "saved_model" / "saved_model.pb").read_bytes() == b"graph"
    assert (folder / "saved_model" / "variables" / "variables.index").read_bytes() == b"index"
    assert (folder / "saved_model" / "latest.pb").is_symlink()
    assert (folder / "saved_model" / "latest.pb").read_bytes() == b"graph"
    assert (folder / "saved_model" / "copy.pb").read_bytes() == b"graph"
    assert not list((cache_dir / "extracted").glob(".*"))  # no staging folder left

    archive.unlink()  # the unpacked folder is found by the pinned digest alone
    assert store.fetch_and_extract("model.tar.gz", digest, base_dir=tmp_path) == folder


def test_fetch_and_extract_zip_unpinned(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    archive = make_zip(tmp_path / "model.zip", {"model/symbol.json": b"{}", "model/params": b"\x00\x01"})

    folder = store.fetch_and_extract(archive.as_uri(), None)
    again = store.fetch_and_extract(archive.as_uri(), None)

    assert folder == again == cache_dir / "extracted" / sha256_of_file(archive)
    assert (folder / "model" / "symbol.json").read_bytes() == b"{}"
    assert (folder / "model" / "params").read_bytes() == b"\x00\x01"


def test_fetch_and_extract_refuses_non_archives_before_fetching(store: ArtifactStore, cache_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="not an archive") as info:
        store.fetch_and_extract(f"http://127.0.0.1:{closed_port()}/model.onnx", None)
    assert ".tar.gz" in info.value.hint
    assert not cache_dir.exists()


UNSAFE_TARS: dict[str, list[tuple[str, bytes, dict[str, object]]]] = {
    "dot-dot": [("ok.txt", b"fine", {}), ("../evil", b"pwned", {})],
    "nested dot-dot": [("a/b/../../../evil", b"pwned", {})],
    "absolute": [("ok.txt", b"fine", {}), ("/tmp/mlmodelscope-evil", b"pwned", {})],
    "symlink to /etc": [("etc", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc"})],
    "relative symlink out": [("up", b"", {"type": tarfile.SYMTYPE, "linkname": "../.."})],
    "write through symlink": [
        ("ok.txt", b"fine", {}),
        ("escape", b"", {"type": tarfile.SYMTYPE, "linkname": "."}),
        ("escape/inner", b"", {"type": tarfile.SYMTYPE, "linkname": ".."}),
        ("escape/inner/evil", b"pwned", {}),
    ],
    "symlink chain": [
        ("here", b"", {"type": tarfile.SYMTYPE, "linkname": "."}),
        ("out", b"", {"type": tarfile.SYMTYPE, "linkname": "here/.."}),
    ],
    "file replaces symlink": [
        ("link", b"", {"type": tarfile.SYMTYPE, "linkname": "ok.txt"}),
        ("link", b"pwned", {}),
    ],
    "hard link out": [("evil", b"", {"type": tarfile.LNKTYPE, "linkname": "../outside.txt"})],
    "hard link to /etc": [("passwd", b"", {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"})],
    "device file": [("ok.txt", b"fine", {}), ("null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
    "fifo": [("pipe", b"", {"type": tarfile.FIFOTYPE})],
}


@pytest.fixture
def no_staging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if extraction gets as far as creating its staging folder (validation must come first)."""

    def refuse(target_dir: Path, *, accept_existing: bool) -> None:
        raise AssertionError(f"extraction into {target_dir} started before the archive was found unsafe")

    monkeypatch.setattr(archive_module, "staged_folder", refuse)


@pytest.mark.parametrize("members", UNSAFE_TARS.values(), ids=UNSAFE_TARS.keys())
def test_unsafe_tar_is_refused_before_writing(
    tmp_path: Path, members: list[tuple[str, bytes, dict[str, object]]], no_staging: None
) -> None:
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    archive = make_tar(archive_dir / "evil.tar", members)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "out"

    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, target)

    assert str(archive) in info.value.message and "nothing was extracted" in info.value.message
    assert info.value.hint
    assert not target.exists()
    assert list(work.iterdir()) == []  # no staging folder either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", "work"]
    assert list(archive_dir.iterdir()) == [archive]
    assert not Path("/tmp/mlmodelscope-evil").exists()


def test_unsafe_tar_via_store_leaves_no_extraction(tmp_path: Path, store: ArtifactStore, cache_dir: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", UNSAFE_TARS["dot-dot"])
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil"):
        store.fetch_and_extract("evil.tar.gz", sha256_of_file(archive), base_dir=tmp_path)
    assert not (cache_dir / "extracted").exists() or list((cache_dir / "extracted").iterdir()) == []
    assert not (cache_dir / "evil").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_unsafe_zip_is_refused(tmp_path: Path, name: str, no_staging: None) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", name: b"pwned"})
    target = tmp_path / "work" / "out"
    with pytest.raises(UnsafeArchiveError, match=r"evil\.txt"):
        safe_extract(archive, target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_damaged_archive(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ArtifactError, match="cannot unpack") as info:
        safe_extract(archive, tmp_path / "out")
    assert not isinstance(info.value, UnsafeArchiveError)
    assert not (tmp_path / "out").exists()


def test_unknown_archive_type(tmp_path: Path) -> None:
    archive = tmp_path / "model.rar"
    archive.write_bytes(b"Rar!")
    with pytest.raises(ArtifactError, match="not an archive type"):
        safe_extract(archive, tmp_path / "out")


def test_extract_into_non_empty_folder_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"f": b"new"})
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_bytes(b"old")
    with pytest.raises(ArtifactError, match="already exists"):
        safe_extract(archive, target)
    assert [p.name for p in target.iterdir()] == ["keep"]


# --- S3 (a real SeaweedFS server) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_bucket(seaweed: SeaweedS3) -> Iterator[str]:
    http = seaweed.pool()
    try:
        seaweed.client(http).make_bucket("models")
    finally:
        http.clear()
    yield "models"


def _upload(seaweed: SeaweedS3, bucket: str, key: str, data: bytes) -> None:
    http = seaweed.pool()
    try:
        seaweed.client(http).put_object(bucket, key, io.BytesIO(data), len(data))
    finally:
        http.clear()


@pytest.mark.slow
def test_s3_fetch(seaweed: SeaweedS3, s3_bucket: str, cache_dir: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    _upload(seaweed, s3_bucket, "resnet/v1/model.onnx", data)
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=seaweed.endpoint, access_key="any", secret_key="any"))

    path = store.fetch(f"s3://{s3_bucket}/resnet/v1/model.onnx", sha(data))

    assert path == cache_dir / "sha256" / sha(data) / "model.onnx"
    assert path.read_bytes() == data


@pytest.mark.slow
def test_s3_fetch_and_extract_anonymous(seaweed: SeaweedS3, s3_bucket: str, tmp_path: Path, cache_dir: Path) -> None:
    archive = make_tar(tmp_path / "bundle.tgz", GOOD_MEMBERS)
    _upload(seaweed, s3_bucket, "bundle.tgz", archive.read_bytes())
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=seaweed.endpoint))

    folder = store.fetch_and_extract(f"s3://{s3_bucket}/bundle.tgz", None)

    assert (folder / "saved_model" / "saved_model.pb").read_bytes() == b"graph"


@pytest.mark.slow
def test_s3_checksum_mismatch(seaweed: SeaweedS3, s3_bucket: str, cache_dir: Path) -> None:
    _upload(seaweed, s3_bucket, "replaced.bin", b"new contents")
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=seaweed.endpoint))
    with pytest.raises(ChecksumMismatchError):
        store.fetch(f"s3://{s3_bucket}/replaced.bin", sha(b"old contents"))
    assert_nothing_cached(cache_dir)


@pytest.mark.slow
@pytest.mark.parametrize(("bucket", "key", "needle"), [("models", "no/such.onnx", "NoSuchKey"), ("nobucket", "x", "")])
def test_s3_missing_object_or_bucket(
    seaweed: SeaweedS3, s3_bucket: str, cache_dir: Path, bucket: str, key: str, needle: str
) -> None:
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=seaweed.endpoint))
    uri = f"s3://{bucket}/{key}"
    with pytest.raises(ArtifactNotFoundError) as info:
        store.fetch(uri, sha(b"x"))
    assert uri in info.value.message and needle in info.value.message
    assert bucket in info.value.message
    assert_nothing_cached(cache_dir)


def test_s3_endpoint_that_never_answers_times_out(silent_port: int, cache_dir: Path) -> None:
    store = ArtifactStore(
        cache_dir, s3=S3Settings(endpoint=f"127.0.0.1:{silent_port}"), downloads=DownloadSettings(read_timeout_s=0.5)
    )
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError, match=re.escape(f"127.0.0.1:{silent_port}")):
        store.fetch("s3://models/model.onnx", None)
    assert time.monotonic() - start < 10
    assert_nothing_cached(cache_dir)


def test_s3_unreachable_fails_fast(cache_dir: Path) -> None:
    port = closed_port()
    store = ArtifactStore(cache_dir, s3=S3Settings(endpoint=f"127.0.0.1:{port}", connect_timeout_s=2.0))
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError) as info:
        store.fetch("s3://models/model.onnx", sha(b"x"))
    assert time.monotonic() - start < 15
    assert f"127.0.0.1:{port}" in info.value.message
    assert "MLMODELSCOPE_S3_ENDPOINT" in info.value.hint
    assert isinstance(info.value, TransientError)
    assert_nothing_cached(cache_dir)
