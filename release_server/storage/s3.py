"""S3-compatible blob storage (AWS S3, MinIO, Ceph, ...) through boto3.

Takes an endpoint URL and uses path-style addressing so any S3-compatible store works
the same way. Large objects go up as multipart uploads of ``chunk_size`` parts, read
and hashed one part at a time, so memory stays at about one part whatever the size.
A stream whose hash is not known in advance is uploaded under ``.tmp/<uuid>`` and then
copied server-side to its content address.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import StorageError
from .base import (BlobNotFoundError, BlobStorage, HashingReader, PartialWrite, StoredBlob, StoredObject,
                   blob_key_for, check_key)

MIN_PART = 5 * 1024 * 1024


class S3Storage(BlobStorage):
    name = "s3"

    def __init__(self, *, bucket: str, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 prefix: str = "", chunk_size: int = 8 * 1024 * 1024, create_bucket: bool = False) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.chunk_size = max(chunk_size, MIN_PART)
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          retries={"max_attempts": 3, "mode": "standard"}))
        if create_bucket:
            self.ensure_bucket()

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _read_part(self, reader: Any) -> bytes:
        """Read a full part (streams may return short reads; S3 wants >= 5 MiB parts)."""
        parts = []
        wanted = self.chunk_size
        while wanted > 0:
            data = reader.read(wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        return b"".join(parts)

    def _upload(self, reader: Any, dest_key: str) -> None:
        """Upload from ``reader`` (read(n) API) to ``dest_key``, multipart when large."""
        first = self._read_part(reader)
        second = self._read_part(reader) if len(first) == self.chunk_size else b""
        if not second:
            self.client.put_object(Bucket=self.bucket, Key=dest_key, Body=first)
            return
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=dest_key)
        upload_id = upload["UploadId"]
        parts = []
        try:
            number = 1
            chunk = first
            pending = second
            while chunk:
                resp = self.client.upload_part(Bucket=self.bucket, Key=dest_key, PartNumber=number,
                                               UploadId=upload_id, Body=chunk)
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                number += 1
                chunk = pending
                pending = self._read_part(reader) if chunk else b""
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=dest_key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=dest_key, UploadId=upload_id)
            except (BotoCoreError, ClientError):
                pass
            raise

    def put_stream(self, stream: BinaryIO, *, max_size: int | None = None) -> StoredBlob:
        reader = HashingReader(stream, max_size)
        tmp_key = f"{self.prefix}.tmp/{uuid.uuid4().hex}"
        try:
            self._upload(reader, tmp_key)
            digest = reader.hash.hexdigest()
            key = blob_key_for(digest)
            # copied even when the blob exists: the copy is fresh, so the sweep of unreferenced blobs
            # keeps it through its grace period while the new reference is being committed
            self.client.copy({"Bucket": self.bucket, "Key": tmp_key}, self.bucket, self._k(key))
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 upload failed: {e}") from e
        finally:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=tmp_key)
            except (BotoCoreError, ClientError):
                pass
        return StoredBlob(key, digest, reader.size)

    def put_file(self, path: Path, *, sha256: str, size: int, move: bool = False) -> StoredBlob:
        key = blob_key_for(sha256)
        try:
            if not self.exists(key):
                with open(path, "rb") as fh:
                    self._upload(fh, self._k(key))
            else:  # fresh again, as above: a copy onto itself gives the object a new modification time
                self.client.copy({"Bucket": self.bucket, "Key": self._k(key)}, self.bucket, self._k(key),
                                 ExtraArgs={"MetadataDirective": "REPLACE"})
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 upload failed: {e}") from e
        if move:
            Path(path).unlink(missing_ok=True)
        return StoredBlob(key, sha256, size)

    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 write failed: {e}") from e

    def _get(self, key: str, start: int = 0) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key)}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            return self.client.get_object(**kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFoundError(key) from None
            raise StorageError(f"S3 read failed: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 read failed: {e}") from e

    def read(self, key: str) -> bytes:
        return self._get(key)["Body"].read()

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024, start: int = 0) -> Iterator[bytes]:
        body = self._get(key, start)["Body"]

        def gen() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return gen()

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"S3 request failed: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 request failed: {e}") from e

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise BlobNotFoundError(key)
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 delete failed: {e}") from e

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        full = self.prefix + prefix
        keys = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                k = obj["Key"][len(self.prefix):]
                if not k.startswith(".tmp/"):
                    keys.append(k)
        return iter(sorted(keys))

    def scan(self, prefix: str = "") -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    k = obj["Key"][len(self.prefix):]
                    if not k.startswith(".tmp/"):
                        yield StoredObject(k, int(obj["Size"]), _utc(obj["LastModified"]))
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 listing failed: {e}") from e

    def partial_writes(self, older_than: datetime) -> Iterator[PartialWrite]:
        """Temporary ``.tmp/`` objects and multipart uploads never completed or aborted."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + ".tmp/"):
                for obj in page.get("Contents", []):
                    modified = _utc(obj["LastModified"])
                    if modified < older_than:
                        yield PartialWrite(f"object {obj['Key']}", int(obj["Size"]), modified)
            uploads = self.client.get_paginator("list_multipart_uploads")
            for page in uploads.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for up in page.get("Uploads", []):
                    size, last = self._parts(up["Key"], up["UploadId"])
                    # an upload still receiving parts is alive, however long ago it began
                    modified = max(_utc(up["Initiated"]), last) if last else _utc(up["Initiated"])
                    if modified < older_than:
                        yield PartialWrite(f"multipart {up['UploadId']} {up['Key']}", size, modified)
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 listing failed: {e}") from e

    def _parts(self, key: str, upload_id: str) -> tuple[int, datetime | None]:
        """Bytes uploaded so far and the time of the newest part."""
        total, last = 0, None
        for page in self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key,
                                                                     UploadId=upload_id):
            for part in page.get("Parts", []):
                total += int(part["Size"])
                modified = _utc(part["LastModified"])
                last = modified if last is None or modified > last else last
        return total, last

    def remove_partial(self, ref: str) -> None:
        kind, _, rest = ref.partition(" ")
        try:
            if kind == "object" and rest.startswith(self.prefix + ".tmp/"):
                self.client.delete_object(Bucket=self.bucket, Key=rest)
            elif kind == "multipart" and " " in rest:
                upload_id, key = rest.split(" ", 1)
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
            else:
                raise StorageError(f"not a partial write: {ref!r}")
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"S3 delete failed: {e}") from e

    def presigned_url(self, key: str, *, ttl: int, filename: str | None = None) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._k(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
