"""The blob storage contract, run unchanged against the local-disk and the S3 backend."""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest

from release_server.errors import PayloadTooLargeError
from release_server.storage import BlobNotFoundError, BlobStorage, blob_key_for


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Iterator[BlobStorage]:
    if request.param == "local":
        from release_server.storage.local import LocalStorage

        yield LocalStorage(tmp_path / "blobs")
    else:
        from conftest import make_bucket

        from release_server.storage.s3 import S3Storage

        endpoint = request.getfixturevalue("s3_endpoint")
        yield S3Storage(bucket=make_bucket(endpoint), endpoint_url=endpoint, access_key_id="test",
                        secret_access_key="test", chunk_size=5 * 1024 * 1024)


class Trickle(io.RawIOBase):
    """A stream that returns short reads, like a socket."""

    def __init__(self, data: bytes, step: int = 70_001) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        chunk = self._data[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_put_stream_is_content_addressed(storage: BlobStorage):
    data = b"hello world" * 1000
    blob = storage.put_stream(io.BytesIO(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.key == blob_key_for(blob.sha256) and blob.size == len(data)
    assert storage.read(blob.key) == data
    assert storage.exists(blob.key) and storage.size(blob.key) == len(data)
    # storing the same content again gives the same key and keeps one object
    again = storage.put_stream(io.BytesIO(data))
    assert again == blob
    assert list(storage.list("sha256/")) == [blob.key]


def test_large_object_goes_up_in_parts_and_streams_back(storage: BlobStorage):
    data = os.urandom(1024) * (12 * 1024)  # 12 MiB: three 5 MiB parts on S3
    blob = storage.put_stream(Trickle(data))
    assert blob.size == len(data) and blob.sha256 == hashlib.sha256(data).hexdigest()
    got = hashlib.sha256()
    total = 0
    for chunk in storage.iter_chunks(blob.key, chunk_size=1024 * 1024):
        assert len(chunk) <= 1024 * 1024
        got.update(chunk)
        total += len(chunk)
    assert total == len(data) and got.hexdigest() == blob.sha256
    tail = b"".join(storage.iter_chunks(blob.key, start=len(data) - 10))
    assert tail == data[-10:]


def test_size_limit_refuses_and_leaves_nothing(storage: BlobStorage):
    with pytest.raises(PayloadTooLargeError):
        storage.put_stream(io.BytesIO(b"x" * 2048), max_size=1024)
    assert list(storage.list()) == []


def test_put_file_with_known_hash(storage: BlobStorage, tmp_path):
    path = tmp_path / "artifact.bin"
    data = b"artifact" * 100
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    blob = storage.put_file(path, sha256=digest, size=len(data), move=True)
    assert blob.key == blob_key_for(digest) and storage.read(blob.key) == data
    assert not path.exists()


def test_named_objects_and_listing(storage: BlobStorage):
    storage.write("tuf/metadata/1.root.json", b"{}")
    storage.write("tuf/metadata/timestamp.json", b"v1")
    storage.write("tuf/metadata/timestamp.json", b"v2")
    assert storage.read("tuf/metadata/timestamp.json") == b"v2"
    assert list(storage.list("tuf/")) == ["tuf/metadata/1.root.json", "tuf/metadata/timestamp.json"]
    storage.delete("tuf/metadata/1.root.json")
    storage.delete("tuf/metadata/1.root.json")  # deleting twice is fine
    assert not storage.exists("tuf/metadata/1.root.json")


def test_missing_objects_raise_not_found(storage: BlobStorage):
    for call in (lambda: storage.read("nope/x"), lambda: storage.size("nope/x"),
                 lambda: storage.iter_chunks("nope/x")):
        with pytest.raises(BlobNotFoundError):
            call()


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a\\b"])
def test_unsafe_keys_refused(storage: BlobStorage, key: str):
    from release_server.errors import ValidationError

    with pytest.raises(ValidationError):
        storage.write(key, b"x")


def test_presigned_url_on_s3_downloads_the_object(storage: BlobStorage):
    import requests

    blob = storage.put_stream(io.BytesIO(b"signed download"))
    url = storage.presigned_url(blob.key, ttl=60, filename="a.tar.gz")
    if storage.name == "local":
        assert url is None and storage.local_path(blob.key) is not None
        return
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"signed download"


def _crash_mid_write(storage: BlobStorage) -> None:
    """Leave behind what a process killed in the middle of a large write leaves."""
    if storage.name == "local":
        (storage.tmp / "tmpcrashed").write_bytes(b"x" * 4096)  # type: ignore[attr-defined]
        return
    client, bucket = storage.client, storage.bucket  # type: ignore[attr-defined]
    client.put_object(Bucket=bucket, Key=".tmp/crashed", Body=b"y" * 100)
    up = client.create_multipart_upload(Bucket=bucket, Key="sha256/00/00/crashed")
    client.upload_part(Bucket=bucket, Key="sha256/00/00/crashed", PartNumber=1, UploadId=up["UploadId"],
                       Body=b"z" * (5 * 1024 * 1024))


def test_scan_lists_objects_with_size_and_modification_time(storage: BlobStorage):
    from datetime import datetime, timedelta, timezone

    before = datetime.now(timezone.utc) - timedelta(seconds=2)
    blob = storage.put_stream(io.BytesIO(b"scan me" * 10))
    storage.write("tuf/metadata/1.root.json", b"{}")
    _crash_mid_write(storage)
    found = {o.key: o for o in storage.scan("sha256/")}
    assert list(found) == [blob.key]  # temporaries and writes in progress are not objects
    assert found[blob.key].size == 70
    assert before <= found[blob.key].modified <= datetime.now(timezone.utc) + timedelta(seconds=2)
    assert {o.key for o in storage.scan()} == {blob.key, "tuf/metadata/1.root.json"}


def test_partial_writes_are_found_after_their_grace_and_removed(storage: BlobStorage):
    from datetime import datetime, timedelta, timezone

    blob = storage.put_stream(io.BytesIO(b"a finished object"))
    _crash_mid_write(storage)
    now = datetime.now(timezone.utc)
    assert list(storage.partial_writes(now - timedelta(hours=1))) == []  # still young: kept
    partials = list(storage.partial_writes(now + timedelta(seconds=5)))
    assert len(partials) == (1 if storage.name == "local" else 2)
    assert sum(p.size for p in partials) == (4096 if storage.name == "local" else 100 + 5 * 1024 * 1024)
    for p in partials:
        storage.remove_partial(p.ref)
        storage.remove_partial(p.ref)  # removing twice is fine
    assert list(storage.partial_writes(now + timedelta(seconds=5))) == []
    assert storage.read(blob.key) == b"a finished object"
    if storage.name == "s3":
        assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("how", ["stream", "file"])
def test_storing_an_existing_blob_again_makes_it_fresh_for_the_sweep(storage: BlobStorage, tmp_path, how: str):
    """A publish that reuses an old, unreferenced blob must not lose it to a sweep running meanwhile."""
    import hashlib
    import time

    data = b"stored twice" * 100
    first = storage.put_stream(io.BytesIO(data))
    (before,) = [o.modified for o in storage.scan("sha256/") if o.key == first.key]
    time.sleep(1.1)  # S3 keeps modification times to the second
    if how == "stream":
        again = storage.put_stream(io.BytesIO(data))
    else:
        path = tmp_path / "again.bin"
        path.write_bytes(data)
        again = storage.put_file(path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert again.key == first.key
    (after,) = [o.modified for o in storage.scan("sha256/") if o.key == first.key]
    assert after > before
    assert storage.read(first.key) == data
