"""Delta updates on the agent: choose the cheapest verified transfer, apply a patch, keep the base.

For an offer of ``component`` ``to`` while ``from`` is installed, the server may sign a
patch target ``<component>/deltas/<from>-<to>.rsdpatch`` whose custom field names the
full artifacts of both releases (path, SHA-256, length) and the tar streams the patch
reads and writes (see :mod:`client_agent.deltapatch`). :func:`choose_transfer` is the
pure rule: the patch is taken only when TUF lists it, it leads from exactly the
installed release's signed target to exactly the offered one, the agent kept the
installed release's artifact (or its tar stream), and it is smaller than the full
artifact. Otherwise the full artifact is downloaded.

Applying happens in the downloads folder: the kept base is unpacked to its tar stream
(a kept ``.tar.gz`` is unpacked and checked against the signed ``base_tar`` hash; a
kept tar stream is used as it is), the patch is applied, and the result is installed
only if it matches the signed ``tar`` hash and length, whatever the base was. Any failure (a
patch whose bytes TUF refuses, an output that does not match, a missing or damaged
base, a disk error) falls back to the full download; the reason goes into the log and
the report (``details.delta_fallback``). An interrupted patch download is resumed on
the next cycle like any target.

After a successful installation the release's tar stream (unpacked from the full
``.tar.gz``, or the rebuilt tar) is kept in ``<state>/artifacts/<component>/``, one per
component, to be the base of the next patch.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from client_agent import deltapatch
from client_agent.fsutil import atomic_write_json, make_private_dir, read_json
from client_agent.trust import TufSession, VerificationError

log = logging.getLogger(__name__)

KEPT_INDEX = "kept.json"


def delta_path(component: str, from_version: str, to_version: str) -> str:
    return f"{component}/deltas/{from_version}-{to_version}.{deltapatch.EXTENSION}"


# --------------------------------------------------------------------------- signed facts


@dataclass(frozen=True)
class FileRef:
    """A file named by signed metadata: target path (if any), SHA-256, length."""

    sha256: str
    length: int
    path: str | None = None


@dataclass(frozen=True)
class SignedDelta:
    """The signed facts about one patch target, read from its custom field."""

    path: str
    length: int
    sha256: str
    patch_format: str
    from_artifact: FileRef
    to_artifact: FileRef
    base_tar: FileRef
    tar: FileRef

    @classmethod
    def from_target(cls, info: TargetFile) -> SignedDelta | None:
        """None when the target is not a well-formed patch entry."""
        custom = info.custom if isinstance(info.custom, dict) else {}

        def ref(name: str, with_path: bool) -> FileRef:
            m = custom[name]
            path = str(m["path"]) if with_path else None
            return FileRef(str(m["sha256"]), int(m["length"]), path)

        try:
            if custom.get("kind") != "delta":
                return None
            return cls(path=info.path, length=info.length, sha256=str(info.hashes.get("sha256", "")),
                       patch_format=str(custom["format"]), from_artifact=ref("from", True),
                       to_artifact=ref("to", True), base_tar=ref("base_tar", False), tar=ref("tar", False))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class KeptArtifact:
    """What the agent kept of an installed release: its artifact or its tar stream."""

    version: str
    path: Path


@dataclass(frozen=True)
class TransferPlan:
    """How to get an offered release: ``method`` is "delta" or "full"; ``reason`` why not a patch."""

    method: str
    reason: str | None = None
    delta: SignedDelta | None = None


# --------------------------------------------------------------------------- the pure rule


def choose_transfer(*, full: FileRef, installed_version: str | None, installed: FileRef | None,
                    delta: SignedDelta | None, kept: KeptArtifact | None) -> TransferPlan:
    """Pick the patch when it is verified, fits what is installed and kept, and is smaller.

    ``full`` is the offered release's signed target, ``installed`` the signed target of
    the installed release (None if unknown), ``delta`` the signed patch from the
    installed version to the offered one (None if the repository lists none).
    """
    if installed_version is None:
        return TransferPlan("full", "nothing installed")
    if delta is None:
        return TransferPlan("full", f"no patch from {installed_version}")
    if delta.patch_format != deltapatch.FORMAT:
        return TransferPlan("full", f"unknown patch format {delta.patch_format!r}")
    if delta.to_artifact != full:
        return TransferPlan("full", "the patch does not lead to the offered release's signed artifact")
    if installed is None or delta.from_artifact != installed:
        return TransferPlan("full", "the patch is not from the installed release's signed artifact")
    if kept is None or kept.version != installed_version:
        return TransferPlan("full", f"the artifact of {installed_version} is not kept here")
    if delta.length >= full.length:
        return TransferPlan("full", "the patch is not smaller than the full artifact")
    return TransferPlan("delta", delta=delta)


# --------------------------------------------------------------------------- kept artifacts


class ArtifactStore:
    """``<state>/artifacts/<component>/``: the installed release's artifact, one per component."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, component: str) -> Path:
        return self.root / component

    def kept(self, component: str) -> KeptArtifact | None:
        index = read_json(self._dir(component) / KEPT_INDEX, default=None)
        if not isinstance(index, dict) or not isinstance(index.get("version"), str):
            return None
        path = self._dir(component) / str(index.get("file", ""))
        if path.parent != self._dir(component) or not path.is_file():
            return None
        return KeptArtifact(index["version"], path)

    def keep(self, component: str, version: str, artifact: Path) -> None:
        """Keep ``artifact`` (moved in) as the base of ``component`` ``version``; drop the older one.

        A gzip-compressed tar is kept as its tar stream, so that applying the next patch
        needs no decompression while the update waits (this costs the decompression now,
        after the installation succeeded, and disk space for the uncompressed stream).
        """
        folder = make_private_dir(self._dir(component))
        name = f"{version}.{artifact.name}"
        if deltapatch.is_gzip(artifact):
            name = f"{version}.tar"
            try:
                deltapatch.to_tar(artifact, folder / f".{name}.tmp")
                os.replace(folder / f".{name}.tmp", folder / name)
            except deltapatch.PatchFormatError:
                (folder / f".{name}.tmp").unlink(missing_ok=True)
                name = f"{version}.{artifact.name}"
                os.replace(artifact, folder / name)
            else:
                artifact.unlink(missing_ok=True)
        else:
            os.replace(artifact, folder / name)
        atomic_write_json(folder / KEPT_INDEX, {"version": version, "file": name})
        for entry in folder.iterdir():
            if entry.name not in (name, KEPT_INDEX) and entry.is_file():
                entry.unlink(missing_ok=True)

    def forget(self, component: str) -> None:
        shutil.rmtree(self._dir(component), ignore_errors=True)


# --------------------------------------------------------------------------- fetching


@dataclass
class Fetched:
    """The verified file to install and what getting it cost."""

    path: Path
    method: str
    bytes_downloaded: int
    bytes_full: int
    fallback: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def report_fields(self) -> dict[str, Any]:
        return {"bytes_downloaded": self.bytes_downloaded, "bytes_full": self.bytes_full}

    def report_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transfer": self.method}
        if self.fallback:
            out["delta_fallback"] = self.fallback
        return out


class _Counter:
    """Counts the bytes actually received, forwarding to a progress callback."""

    def __init__(self, forward: Callable[[int, int, int], Any] | None) -> None:
        self.forward = forward
        self.received = 0
        self._last = 0

    def __call__(self, received: int, total: int, start: int) -> None:
        if received == start:
            self._last = start
        self.received += max(0, received - self._last)
        self._last = received
        if self.forward:
            self.forward(received, total, start)


def _apply(session: TufSession, info: TargetFile, delta: SignedDelta, patch_info: TargetFile, kept: KeptArtifact,
           downloads: Path, counter: _Counter) -> Path:
    """Download (resuming) and apply the patch; returns the verified tar stream of the new release."""
    final = downloads / f"{delta.tar.sha256}.{info.path.rpartition('/')[2]}.tar"
    if final.is_file() and deltapatch.file_digest(final) == deltapatch.Digest(delta.tar.sha256, delta.tar.length):
        return final  # rebuilt in an earlier cycle, waiting for the maintenance window
    patch = session.download(patch_info, downloads, counter)
    base = downloads / f".{delta.sha256}.base.tar"
    out = downloads / f".{delta.sha256}.out.tar"
    try:
        if deltapatch.is_gzip(kept.path):
            digest = deltapatch.to_tar(kept.path, base, max_bytes=delta.base_tar.length)
            if (digest.sha256, digest.length) != (delta.base_tar.sha256, delta.base_tar.length):
                raise deltapatch.PatchFormatError("the kept artifact of the installed release does not match "
                                                  "the patch's signed base")
        else:
            # the kept tar stream is used as it is: a damaged base cannot give the signed output below
            base = kept.path
            if base.stat().st_size != delta.base_tar.length:
                raise deltapatch.PatchFormatError("the kept tar of the installed release does not have the "
                                                  "patch's signed base length")
        result = deltapatch.apply_patch(base, patch, out, max_output=delta.tar.length)
        if (result.sha256, result.length) != (delta.tar.sha256, delta.tar.length):
            raise deltapatch.PatchFormatError("the patched release does not match its signed hash and length")
        os.replace(out, final)
        return final
    finally:
        if base != kept.path:
            base.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        patch.unlink(missing_ok=True)


def fetch_release(session: TufSession, info: TargetFile, *, component: str, installed_version: str | None,
                  installed_path: str | None, store: ArtifactStore, downloads: Path,
                  progress: Callable[[int, int, int], Any] | None = None) -> Fetched:
    """Get the offered release ``info`` the cheapest verified way (see the module docstring).

    Raises what :meth:`TufSession.download` raises for the full artifact; an
    interrupted patch download raises ``DownloadInterruptedError`` too (resumed later).
    """
    full = FileRef(str(info.hashes.get("sha256", "")), info.length, info.path)
    counter = _Counter(progress)
    make_private_dir(downloads)
    plan = TransferPlan("full", "nothing installed")
    patch_info: TargetFile | None = None
    if installed_version is not None:
        to_version = _version_of(info)
        try:
            entry = session.target(delta_path(component, installed_version, to_version)) if to_version else None
            patch_info = entry[0] if entry else None
            installed = None
            found = session.target(installed_path) if installed_path else None
            if found is not None:
                i = found[0]
                installed = FileRef(str(i.hashes.get("sha256", "")), i.length, i.path)
        except VerificationError as exc:
            patch_info, installed = None, None
            log.warning("%s: cannot look up a patch: %s", component, exc.reason)
        delta = SignedDelta.from_target(patch_info) if patch_info is not None else None
        plan = choose_transfer(full=full, installed_version=installed_version, installed=installed, delta=delta,
                               kept=store.kept(component))
    fallback: str | None = None
    if plan.method == "delta" and plan.delta is not None and patch_info is not None:
        kept = store.kept(component)
        assert kept is not None
        try:
            path = _apply(session, info, plan.delta, patch_info, kept, downloads, counter)
            log.info("%s: patch %s applied (%d bytes instead of %d)", component, plan.delta.path,
                     counter.received, info.length)
            return Fetched(path, "delta", counter.received, info.length,
                           details={"delta": plan.delta.path})
        except VerificationError as exc:
            fallback = f"patch refused: {exc.reason}"
        except (deltapatch.PatchFormatError, OSError) as exc:
            fallback = f"patch not usable: {exc}"
        log.warning("%s: %s; downloading the full artifact instead", component, fallback)
    elif plan.reason:
        log.info("%s: full download (%s)", component, plan.reason)
    path = session.download(info, downloads, counter)
    return Fetched(path, "full", counter.received, info.length, fallback=fallback)


def _version_of(info: TargetFile) -> str | None:
    custom = info.custom if isinstance(info.custom, Mapping) else {}
    version = custom.get("version")
    return str(version) if version else None
