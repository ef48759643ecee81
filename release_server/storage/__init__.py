"""Blob storage: one small contract, two backends (local disk, S3-compatible).

Artifacts and attachments are stored content-addressed (``sha256/ab/cd/<hex>``);
TUF metadata and other named objects are written under their own keys. The backend is
chosen by ``STORAGE_BACKEND``; :func:`get_storage` returns the application's one.
"""
from __future__ import annotations

from flask import Flask, current_app

from .base import BlobNotFoundError, BlobStorage, StoredBlob, blob_key_for

__all__ = ["BlobStorage", "StoredBlob", "BlobNotFoundError", "blob_key_for", "init_app", "get_storage",
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
    app.extensions["storage"] = storage_from_config(app.config)


def get_storage() -> BlobStorage:
    return current_app.extensions["storage"]
