"""Errors of the TUF repository (keys, metadata, serving).

Every one is a :class:`~release_server.errors.ReleaseServerError`, so the API turns it
into the usual JSON error and the CLI into a one-line message and a non-zero exit.
"""
from __future__ import annotations

from ..errors import ConflictError, NotFoundError, ReleaseServerError, ValidationError


class SigningError(ReleaseServerError):
    """Root of the signing package's errors."""

    code = "signing_error"


class NotBootstrappedError(SigningError):
    """The repository has no trusted root yet (run ``release-server tuf bootstrap``)."""

    status = 409
    code = "tuf_not_bootstrapped"

    def __init__(self) -> None:
        super().__init__("the TUF repository is not bootstrapped; run 'release-server keys init-root' "
                         "and 'release-server tuf bootstrap'")


class AlreadyBootstrappedError(SigningError, ConflictError):
    code = "tuf_already_bootstrapped"

    def __init__(self, version: int) -> None:
        super().__init__(f"the TUF repository is already bootstrapped (root version {version}); "
                         "use the rotation commands to change keys")
        self.version = version


class KeyLoadError(SigningError):
    """A private key cannot be loaded (missing file, wrong passphrase, wrong key, bad URI)."""

    status = 503
    code = "key_unavailable"

    def __init__(self, message: str, *, role: str | None = None) -> None:
        super().__init__(message, field=role)
        self.role = role


class InvalidRootError(SigningError, ValidationError):
    """A root metadata file does not parse or is not signed by its own threshold."""

    code = "invalid_root"


class ThresholdNotMetError(SigningError, ValidationError):
    """Too few of the required keys were supplied to sign a role."""

    code = "threshold_not_met"

    def __init__(self, role: str, have: int, need: int) -> None:
        super().__init__(f"{role}: {have} valid signature(s), the threshold is {need}", field=role)
        self.role, self.have, self.need = role, have, need


class DuplicateTargetPathError(SigningError, ConflictError):
    """Two releases of a component would have the same TUF target path."""

    code = "duplicate_target_path"

    def __init__(self, path: str) -> None:
        super().__init__(f"TUF target {path!r} already belongs to another release; "
                         "use a file name that includes the version", field="artifact")
        self.path = path


class MetadataNotFoundError(SigningError, NotFoundError):
    code = "tuf_metadata_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no TUF metadata {name!r}")
        self.name = name


class TargetNotFoundError(SigningError, NotFoundError):
    code = "tuf_target_not_found"

    def __init__(self, path: str) -> None:
        super().__init__(f"no TUF target {path!r}")
        self.path = path
