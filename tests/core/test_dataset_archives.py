"""A folder dataset as a plain folder, a .tar.gz over HTTP and over S3, and a .zip: the same items and labels from
each; archives are pinned by sha256, unpacked once into the cache, and refused when unsafe."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.settings import S3Settings
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.folder import FolderReader
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.errors import ChecksumMismatchError, DatasetError, UnsafeArchiveError
from tests.support.dataset_files import dataset, image_bytes, write
from tests.support.s3_server import SeaweedS3

CLASSES = ("apple", "banana", "cherry")
PER_CLASS = 100


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder ``photos/`` of 300 small JPEGs of mixed sizes (some greyscale) in class sub-folders, and the
    same folder as photos.tar.gz and photos.zip beside it."""
    base = tmp_path_factory.mktemp("photos")
    for c, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            size = (8 + (i * 7 + c) % 40, 8 + (i * 13 + c) % 30)
            mode = "L" if i % 10 == 0 else "RGB"
            write(base / "photos" / name / f"{i:03d}.jpg", image_bytes(size, mode, "JPEG", seed=c * PER_CLASS + i))
    with tarfile.open(base / "photos.tar.gz", "w:gz") as tar:
        tar.add(base / "photos", arcname="photos")
    with zipfile.ZipFile(base / "photos.zip", "w") as zf:
        for path in sorted((base / "photos").rglob("*.jpg")):
            zf.write(path, path.relative_to(base).as_posix())
    return base


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    server: _CountingServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        super().do_GET()


class _CountingServer(http.server.ThreadingHTTPServer):
    requests: list[str]
    lock: threading.Lock


@pytest.fixture(scope="module")
def http_url(photos: Path) -> Iterator[tuple[str, _CountingServer]]:
    """The photos folder's parent served on 127.0.0.1."""
    server = _CountingServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(photos)))
    server.requests, server.lock = [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def open_photos(base: Path, cache: Path, *, s3: S3Settings | None = None, **source: Any) -> FolderReader:
    spec = dataset({"kind": "folder", **source}, len(CLASSES) * PER_CLASS)
    reader = open_reader(spec, ArtifactStore(cache, s3=s3), base)
    assert isinstance(reader, FolderReader)
    return reader


def assert_same_dataset(reader: FolderReader, reference: FolderReader) -> None:
    assert reader.files == reference.files
    assert reader.truth.labels.tolist() == reference.truth.labels.tolist()
    assert reader.truth.class_names == reference.truth.class_names == CLASSES
    assert all(reader.read(i) == reference.read(i) for i in range(reader.size))


def test_the_plain_folder(photos: Path, tmp_path: Path) -> None:
    reader = open_photos(photos, tmp_path / "cache", uri="photos")
    assert reader.size == 300 and reader.files[:2] == ("apple/000.jpg", "apple/001.jpg")
    assert reader.truth.labels.tolist() == [0] * 100 + [1] * 100 + [2] * 100
    assert not (tmp_path / "cache").exists()  # a plain folder is read where it is


def test_a_tar_gz_over_http_is_fetched_once(photos: Path, tmp_path: Path, http_url: tuple[str, Any]) -> None:
    url, server = http_url
    archive = photos / "photos.tar.gz"
    fields = {"uri": f"{url}/photos.tar.gz", "sha256": sha256_of_file(archive), "root": "photos"}
    reader = open_photos(photos, tmp_path / "cache", **fields)
    assert_same_dataset(reader, open_photos(photos, tmp_path / "cache", uri="photos"))
    assert reader.root == tmp_path / "cache" / "extracted" / sha256_of_file(archive) / "photos"
    again = open_photos(photos, tmp_path / "cache", **fields)
    assert again.fingerprint == reader.fingerprint
    assert server.requests.count("/photos.tar.gz") == 1  # the second open used the unpacked copy


def test_a_zip_next_to_the_manifest(photos: Path, tmp_path: Path) -> None:
    sha256 = sha256_of_file(photos / "photos.zip")
    reader = open_photos(photos, tmp_path / "cache", uri="photos.zip", sha256=sha256, root="photos")
    assert_same_dataset(reader, open_photos(photos, tmp_path / "cache", uri="photos"))
    other_root = open_photos(photos, tmp_path / "cache", uri="photos.zip", sha256=sha256, root="photos", labels="none")
    assert other_root.fingerprint == reader.fingerprint  # same archive, same root: the same item bytes


def test_a_wrong_sha256_is_refused_and_nothing_is_unpacked(
    photos: Path, tmp_path: Path, http_url: tuple[str, Any]
) -> None:
    url, _ = http_url
    with pytest.raises(ChecksumMismatchError) as info:
        open_photos(photos, tmp_path / "cache", uri=f"{url}/photos.tar.gz", sha256="0" * 64, root="photos")
    assert info.value.message.startswith("dataset 'photos': spec.source.uri: ")
    assert sha256_of_file(photos / "photos.tar.gz") in info.value.message
    assert not (tmp_path / "cache" / "extracted").exists()


def test_an_archive_member_outside_the_folder_is_refused(tmp_path: Path) -> None:
    data = image_bytes((8, 8), "RGB", "JPEG")
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        for name in ("photos/apple/ok.jpg", "photos/../../escaped.jpg"):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    sha256 = sha256_of_file(tmp_path / "evil.tar.gz")
    with pytest.raises(UnsafeArchiveError, match="leads outside the archive"):
        open_photos(tmp_path, tmp_path / "cache", uri="evil.tar.gz", sha256=sha256, root="photos")
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path / "cache" / "extracted").exists()


def test_a_root_that_is_not_in_the_archive(photos: Path, tmp_path: Path) -> None:
    sha256 = sha256_of_file(photos / "photos.zip")
    with pytest.raises(DatasetError) as info:
        open_photos(photos, tmp_path / "cache", uri="photos.zip", sha256=sha256, root="images")
    assert "spec.source.root 'images' is not a folder inside the archive 'photos.zip'" in info.value.message
    assert "'photos/'" in info.value.hint


def test_without_root_the_archive_folder_would_be_the_one_class(photos: Path, tmp_path: Path) -> None:
    sha256 = sha256_of_file(photos / "photos.zip")
    with pytest.raises(DatasetError) as info:
        open_photos(photos, tmp_path / "cache", uri="photos.zip", sha256=sha256)
    assert "has one sub-folder, 'photos': a dataset of one class" in info.value.message
    assert "set spec.source.root" in info.value.hint


@pytest.mark.slow
def test_a_tar_gz_over_s3(photos: Path, tmp_path: Path, seaweed: SeaweedS3) -> None:
    data = (photos / "photos.tar.gz").read_bytes()
    http = seaweed.pool()
    try:
        client = seaweed.client(http)
        client.make_bucket("datasets")
        client.put_object("datasets", "fruit/photos.tar.gz", io.BytesIO(data), len(data))
    finally:
        http.clear()
    reader = open_photos(
        photos,
        tmp_path / "cache",
        s3=S3Settings(endpoint=seaweed.endpoint),
        uri="s3://datasets/fruit/photos.tar.gz",
        sha256=sha256_of_file(photos / "photos.tar.gz"),
        root="photos",
    )
    assert_same_dataset(reader, open_photos(photos, tmp_path / "cache", uri="photos"))
