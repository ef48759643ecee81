"""Blob storage: one small contract, two backends (local disk, S3-compatible).

Artifacts and attachments are stored content-addressed (``sha256/ab/cd/<hex>``);
TUF metadata and other named objects are written under their own keys. The backend is
chosen by ``STORAGE_BACKEND``; :func:`get_storage` returns the application's one.
:mod:`.sweep` removes what crashed writes leave behind (a worker job and
``release-server storage sweep``).
"""
from __future__ import annotations

from flask import Flask, current_app

from .base import (BlobNotFoundError, BlobStorage, InsufficientStorageError, PartialWrite, StoredBlob, StoredObject,
                   blob_key_for, is_no_space)

__all__ = ["BlobStorage", "StoredBlob", "StoredObject", "PartialWrite", "BlobNotFoundError",
           "InsufficientStorageError", "is_no_space", "blob_key_for", "init_app", "get_storage",
           "storage_from_config"]


def storage_from_config(config: dict) -> BlobStorage:
    if config["STORAGE_BACKEND"] == "s3":
        from .s3 import S3Storage

        return S3Storage(
            bucket=config["S3_BUCKET"],
            endpoint_url=config.get("S3_ENDPOINT_URL"),
            region=config.get("S3_REGION"),
            access_key_id=config.get("S3_ACCESS_KEY_ID"),
            secret_access_key=config.get("S3_SECRET_ACCESS_KEY"),
            prefix=config.get("S3_PREFIX", ""),
            chunk_size=config["S3_MULTIPART_CHUNK_SIZE"],
        )
    from .local import LocalStorage

    return LocalStorage(config["STORAGE_PATH"])


def init_app(app: Flask) -> None:
    from ..worker import register_job
    from .cli import storage_group

    app.extensions["storage"] = storage_from_config(app.config)
    app.cli.add_command(storage_group)

    def sweep_job() -> object:
        from ..db import db
        from .sweep import sweep

        return sweep(db.session, get_storage(), app.config.get("UPLOAD_TMP_DIR"),
                     grace_seconds=app.config["STORAGE_SWEEP_GRACE_SECONDS"])

    register_job(app, "storage-sweep", app.config["STORAGE_SWEEP_INTERVAL"], sweep_job)


def get_storage() -> BlobStorage:
    return current_app.extensions["storage"]
