"""Error hierarchy of the release server.

Every business rule raises a subclass of :class:`ReleaseServerError`. Each error
carries an HTTP status, a stable machine-readable ``code``, a human message and,
when one input field is to blame, that field's name. The API layer turns any of
them into ``{"error": {"code", "message", "field"}}``; the CLI prints the message
and exits non-zero.
"""
from __future__ import annotations


class ReleaseServerError(Exception):
    """Root of every error the server raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class ConfigError(ReleaseServerError):
    """A configuration value is missing or cannot be parsed."""

    code = "bad_config"


class InstanceNotFoundError(ConfigError):
    """No instance folder where the settings say it is."""

    code = "no_instance"

    def __init__(self, path: str) -> None:
        super().__init__(f"no instance at {path}; run `release-server init` or set RELEASE_SERVER_INSTANCE_PATH",
                         field="RELEASE_SERVER_INSTANCE_PATH")
        self.path = path


class ValidationError(ReleaseServerError):
    status = 400
    code = "invalid"


class AuthenticationError(ReleaseServerError):
    status = 401
    code = "unauthenticated"


class PermissionDeniedError(ReleaseServerError):
    status = 403
    code = "forbidden"


class NotFoundError(ReleaseServerError):
    status = 404
    code = "not_found"


class ConflictError(ReleaseServerError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(ReleaseServerError):
    status = 413
    code = "too_large"


class StorageError(ReleaseServerError):
    """A blob storage backend failed (disk, network, S3)."""

    status = 503
    code = "storage_unavailable"
