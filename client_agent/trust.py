"""Verifying offers with TUF, and downloading their targets (resumable, verified).

"The check endpoint proposes, TUF disposes." The server's check answer only
names a target; this module decides whether that target may be installed:

* ``TrustedRepository.open()`` builds a fresh ``tuf.ngclient.Updater`` per
  update cycle, bootstrapped from the root received at enrollment, with its
  metadata cache in the state directory (root rotations are followed there).
* ``decide()`` is the pure rule, tested without sockets: the offered target
  must be signed, name the offered component and version, not be yanked,
  accept the installed version (``min_from_version``), have its ``requires``
  met, and be newer than the installed release. An older release is accepted
  only when the installed release is itself marked yanked in signed metadata
  (its target's custom field) and the offered one is not.
* ``download_target()`` fetches the hash-prefixed target file into a partial
  file, resuming an interrupted transfer with an HTTP ``Range`` request, and
  accepts it only when length and hashes match the signed target info. A
  resumed file that does not verify is fetched once more from the start.

Errors: ``VerificationError`` (refuse, with a stable ``code``) and
``RepositoryUnavailableError`` / ``DownloadInterruptedError`` (transient:
nothing is refused, the attempt is retried later).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import requests
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from client_agent.errors import AgentError
from client_agent.fsutil import fsync_dir, make_private_dir

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


class TrustError(AgentError):
    """Root of the errors of TUF verification and target download."""


class VerificationError(TrustError):
    """An offer must be refused: ``code`` says why (stable, reported to the server)."""

    def __init__(self, code: str, reason: str, target_path: str | None = None) -> None:
        super().__init__(f"refused {target_path or 'target'}: {reason}" if target_path else reason)
        self.code = code
        self.reason = reason
        self.target_path = target_path


class NoTrustedRootError(TrustError):
    """The agent has no trusted root.json, so it cannot verify anything."""

    def __init__(self) -> None:
        super().__init__("no trusted TUF root: the server had none at enrollment; enroll again "
                         "with --force (or --root FILE) once its repository is set up")


class RepositoryUnavailableError(TrustError):
    """TUF metadata could not be fetched (network or HTTP error); try again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"TUF repository unavailable: {reason}")
        self.reason = reason


class DownloadInterruptedError(TrustError):
    """The target download stopped part-way; the partial file is kept for resuming."""

    def __init__(self, url: str, received: int, length: int, reason: str) -> None:
        super().__init__(f"download of {url} interrupted at {received}/{length} bytes: {reason}")
        self.url = url
        self.received = received
        self.length = length
        self.reason = reason


# --------------------------------------------------------------------------- the pure rule


@dataclass(frozen=True)
class SignedRelease:
    """The signed facts about one release, read from its target's custom field."""

    path: str
    component: str
    version: str
    length: int
    hashes: dict[str, str]
    yanked: bool = False
    critical: bool = False
    channels: tuple[str, ...] = ()
    min_from_version: str | None = None
    requires: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_target(cls, info: TargetFile) -> SignedRelease:
        custom = info.custom if isinstance(info.custom, dict) else {}
        requires = custom.get("requires") if isinstance(custom.get("requires"), dict) else {}
        component, _, _ = info.path.partition("/")
        return cls(path=info.path, component=str(custom.get("component", "")), version=str(custom.get("version", "")),
                   length=info.length, hashes=dict(info.hashes), yanked=bool(custom.get("yanked", False)),
                   critical=bool(custom.get("critical", False)),
                   channels=tuple(str(c) for c in custom.get("channels") or ()),
                   min_from_version=(str(custom["min_from_version"]) if custom.get("min_from_version") else None),
                   requires={str(k): str(v) for k, v in requires.items()})


def _version(value: str | None) -> Version | None:
    if value is None:
        return None
    try:
        return Version(value)
    except InvalidVersion:
        return None


def decide(*, component: str, version: str, target_path: str, signed: SignedRelease | None,
           installed_version: str | None, installed_signed: SignedRelease | None,
           installed: Mapping[str, str]) -> None:
    """Raise ``VerificationError`` unless the offered target may be installed.

    ``installed_signed`` is the signed entry of the installed release (None if
    unknown); ``installed`` maps every component to its version as it will be
    when this target is installed (for ``requires``).
    """
    if signed is None:
        raise VerificationError("verification_failed", "the target is not in the signed TUF metadata", target_path)
    if signed.path.partition("/")[0] != component or signed.component != component or signed.version != version:
        raise VerificationError("verification_failed",
                                f"signed metadata names {signed.component} {signed.version}, "
                                f"not {component} {version}", target_path)
    new = _version(signed.version)
    if new is None:
        raise VerificationError("verification_failed", f"invalid signed version {signed.version!r}", target_path)
    if signed.yanked:
        raise VerificationError("yanked", f"{component} {version} is yanked", target_path)
    have = _version(installed_version)
    if have is not None and new <= have:
        if new == have:
            raise VerificationError("not_newer", f"{component} {version} is already installed", target_path)
        if installed_signed is None or not installed_signed.yanked:
            raise VerificationError("downgrade_refused",
                                    f"{component} {version} is older than the installed {installed_version}, "
                                    "which is not marked yanked in signed metadata", target_path)
    if have is not None and signed.min_from_version is not None:
        floor = _version(signed.min_from_version)
        if floor is not None and have < floor:
            raise VerificationError("min_from_version",
                                    f"{component} {version} cannot be installed over {installed_version} "
                                    f"(needs at least {signed.min_from_version})", target_path)
    for dep, spec_text in signed.requires.items():
        try:
            spec = SpecifierSet(spec_text)
        except InvalidSpecifier:
            raise VerificationError("verification_failed", f"invalid requirement {dep} {spec_text!r}",
                                    target_path) from None
        dep_version = _version(installed.get(dep))
        if dep_version is None or not spec.contains(dep_version, prereleases=True):
            raise VerificationError("requirements_not_met",
                                    f"{component} {version} requires {dep} {spec_text}, "
                                    f"installed: {installed.get(dep) or 'none'}", target_path)


# --------------------------------------------------------------------------- the repository


class TrustedRepository:
    """TUF view of the server's repository; ``open()`` gives a fresh, refreshed session."""

    def __init__(self, metadata_dir: Path, metadata_url: str, targets_url: str,
                 root: Mapping[str, Any] | bytes | None, *, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.metadata_dir = metadata_dir
        self.metadata_url = metadata_url if metadata_url.endswith("/") else metadata_url + "/"
        self.targets_url = targets_url if targets_url.endswith("/") else targets_url + "/"
        if root is None:
            self.root_bytes = None
        elif isinstance(root, bytes):
            self.root_bytes = root
        else:
            self.root_bytes = json.dumps(root).encode()
        self.timeout = timeout
        self.session = session or requests.Session()

    def open(self) -> TufSession:
        """A fresh Updater bootstrapped from the trusted root, with top-level metadata refreshed."""
        if self.root_bytes is None:
            raise NoTrustedRootError()
        make_private_dir(self.metadata_dir)
        try:
            updater = Updater(str(self.metadata_dir), self.metadata_url, None, self.targets_url,
                              bootstrap=self.root_bytes)
            updater.refresh()
        except tuf_exc.DownloadError as exc:
            raise RepositoryUnavailableError(str(exc) or exc.__class__.__name__) from exc
        except tuf_exc.RepositoryError as exc:
            raise VerificationError("verification_failed", f"TUF metadata does not verify: {exc!r}") from exc
        except (ValueError, OSError) as exc:
            raise VerificationError("verification_failed", f"cannot load TUF metadata: {exc!r}") from exc
        return TufSession(self, updater)


class TufSession:
    """One Updater's consistent view of the repository."""

    def __init__(self, repo: TrustedRepository, updater: Updater) -> None:
        self.repo = repo
        self.updater = updater

    def target(self, path: str) -> tuple[TargetFile, SignedRelease] | None:
        """The signed entry of ``path``, or None if the repository does not list it."""
        try:
            info = self.updater.get_targetinfo(path)
        except tuf_exc.DownloadError as exc:
            raise RepositoryUnavailableError(str(exc) or exc.__class__.__name__) from exc
        except tuf_exc.RepositoryError as exc:
            raise VerificationError("verification_failed", f"TUF metadata does not verify: {exc!r}", path) from exc
        if info is None:
            return None
        return info, SignedRelease.from_target(info)

    def target_url(self, info: TargetFile) -> str:
        """URL of the hash-prefixed (consistent snapshot) target file."""
        digest = info.hashes.get("sha256") or next(iter(info.hashes.values()))
        dirname, sep, base = info.path.rpartition("/")
        return f"{self.repo.targets_url}{dirname}{sep}{digest}.{base}"

    def download(self, info: TargetFile, dest_dir: Path,
                 progress: Callable[[int, int, int], Any] | None = None) -> Path:
        return download_target(self.repo.session, self.target_url(info), info, dest_dir,
                               timeout=self.repo.timeout, progress=progress)


# --------------------------------------------------------------------------- downloads


def _verify_file(info: TargetFile, path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            info.verify_length_and_hashes(f)
        return True
    except tuf_exc.LengthOrHashMismatchError:
        return False


def download_paths(info: TargetFile, dest_dir: Path) -> tuple[Path, Path]:
    """(final path, partial path) of a target in the downloads directory."""
    digest = info.hashes.get("sha256") or next(iter(info.hashes.values()))
    base = info.path.rpartition("/")[2]
    return dest_dir / f"{digest}.{base}", dest_dir / f"{digest}.{base}.part"


def download_target(session: requests.Session, url: str, info: TargetFile, dest_dir: Path, *,
                    timeout: float = 30.0, progress: Callable[[int, int, int], Any] | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` and return the verified file.

    A partial file left by an interrupted transfer is continued with a Range
    request. ``progress(received, total, resumed_from)`` is called as bytes arrive.
    Raises ``VerificationError`` (code ``verification_failed``) when the bytes
    do not match the signed length and hashes, ``DownloadInterruptedError``
    when the transfer breaks off.
    """
    make_private_dir(dest_dir)
    final, part = download_paths(info, dest_dir)
    if final.exists():
        if _verify_file(info, final):
            return final
        os.unlink(final)
    for attempt in (1, 2):
        resumed = _fetch(session, url, part, info.length, timeout, progress)
        if _verify_file(info, part):
            with open(part, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(part, final)
            fsync_dir(dest_dir)
            return final
        os.unlink(part)
        if not resumed or attempt == 2:
            break
        log.warning("resumed download of %s does not verify; fetching it again from the start", url)
    raise VerificationError("verification_failed",
                            f"downloaded file does not match the signed length and hashes of {info.path}",
                            info.path)


def _fetch(session: requests.Session, url: str, part: Path, length: int, timeout: float,
           progress: Callable[[int, int, int], Any] | None) -> bool:
    """Fill ``part`` up to ``length`` bytes; returns True if an earlier partial file was continued."""
    have = part.stat().st_size if part.exists() else 0
    if have > length:
        os.unlink(part)
        have = 0
    headers = {"Accept-Encoding": "identity"}
    if 0 < have < length:
        headers["Range"] = f"bytes={have}-"
        log.info("resuming download of %s at byte %d of %d", url, have, length)
    elif have == length:
        return True
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise DownloadInterruptedError(url, have, length, exc.__class__.__name__) from exc
    with resp:
        if resp.status_code == 416 and have:
            os.unlink(part)
            return _fetch(session, url, part, length, timeout, progress)
        if resp.status_code not in (200, 206):
            raise DownloadInterruptedError(url, have, length, f"HTTP {resp.status_code}")
        resumed = resp.status_code == 206 and have > 0
        if resumed:
            log.info("resumed download of %s at byte %d", url, have)
        elif have:
            log.info("the server does not resume downloads; fetching %s from the start", url)
        mode = "ab" if resumed else "wb"
        received = have if resumed else 0
        start = received
        if progress:
            progress(received, length, start)
        try:
            with open(part, mode) as out:
                for chunk in resp.iter_content(CHUNK):
                    if not chunk:
                        continue
                    if received + len(chunk) > length:
                        raise VerificationError("verification_failed",
                                                f"the server sent more than the signed {length} bytes ({url})")
                    out.write(chunk)
                    received += len(chunk)
                    if progress:
                        progress(received, length, start)
                out.flush()
                os.fsync(out.fileno())
        except (requests.RequestException, ConnectionError) as exc:
            raise DownloadInterruptedError(url, received, length, exc.__class__.__name__) from exc
        if received < length:
            raise DownloadInterruptedError(url, received, length, "connection closed early")
        return resumed


def clean_downloads(dest_dir: Path, keep: set[Path]) -> None:
    """Delete downloaded artifacts except ``keep`` (verified files waiting for a window)."""
    try:
        entries = list(dest_dir.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if entry not in keep and entry.is_file():
            entry.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
