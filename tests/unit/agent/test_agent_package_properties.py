"""Property: whatever an archive holds, extraction never writes or links outside the release folder.

Hypothesis builds tar.gz and zip archives from a small alphabet of path parts ("..", ".",
"", names shared between members) with files, directories, symlinks and hard links in any
order. Either the archive is refused with nothing left behind, or every entry of the
extracted tree, followed through its links, stays inside it, and nothing appeared beside it.
"""
from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from client_agent.errors import AgentError
from client_agent.package import extract_archive

#: member names: a few plain parts shared between members, sometimes the dangerous ones
NAME = st.lists(st.sampled_from(["a", "sub", "l", "..", ".", ""]), min_size=1, max_size=3).map("/".join)
KIND = st.sampled_from(["file", "dir", "symlink", "symlink", "hardlink"])


@st.composite
def archives(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Members whose link targets walk up ("..") and through the names of earlier members."""
    members: list[tuple[str, str, str]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(KIND)
        earlier = [m[1] for m in members]
        name = draw(st.one_of(NAME, st.sampled_from(earlier).map(lambda n: n + "/x")) if earlier else NAME)
        steps = ["..", "..", ".", "."] + [part for n in earlier for part in n.split("/")[-1:]]
        target = "/".join(draw(st.lists(st.sampled_from(steps), min_size=1, max_size=3)))
        if draw(st.booleans()) and earlier:
            target = draw(st.sampled_from(earlier)) + "/" + target
        members.append((kind, name, target))
    return members


def _tar(path: Path, members: list[tuple[str, str, str]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, target in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = b"data"
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            else:
                info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _zip(path: Path, members: list[tuple[str, str, str]]) -> None:
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are part of what is tried
        for kind, name, target in members:
            if kind == "dir":
                zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
            elif kind == "symlink":
                info = zipfile.ZipInfo(name)
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, target)
            else:
                zf.writestr(zipfile.ZipInfo(name), b"data")


def _outside(root: Path) -> list[str]:
    real_root = os.path.realpath(root)
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            real = os.path.realpath(full)
            if real != real_root and not real.startswith(real_root + os.sep):
                bad.append(os.path.relpath(full, root))
    return bad


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives(), st.sampled_from(["tar.gz", "zip"]))
@example([("dir", "sub", ""), ("symlink", "sub/l", ".."), ("symlink", "sub/l2", "l/../..")], "tar.gz")
@example([("symlink", "l", "."), ("symlink", "a", "l/..")], "zip")
@example([("symlink", "x", "p/q/../.."), ("dir", "p", ""), ("symlink", "p/q", ".")], "tar.gz")
def test_extraction_never_writes_or_links_outside_the_release(members: list[tuple[str, str, str]],
                                                              fmt: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="prop-"))
    try:
        archive = base / "artifact"
        (_tar if fmt == "tar.gz" else _zip)(archive, members)
        outside = base / "outside"  # a neighbour of the releases folder that must stay empty
        outside.mkdir()
        releases = base / "app" / "releases"
        releases.mkdir(parents=True)
        dest = releases / "1.0"
        try:
            extract_archive(archive, dest)
        except AgentError:
            assert os.listdir(releases) == [], "a refused archive leaves nothing behind"
        else:
            assert os.listdir(releases) == ["1.0"]
            assert _outside(dest) == []
        assert os.listdir(outside) == []
        assert sorted(os.listdir(base)) == ["app", "artifact", "outside"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
