"""Manifest parsing and safe archive extraction."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from client_agent.errors import ArchiveError, ManifestError, UnsafeArchiveError
from client_agent.package import (
    DEFAULT_HOOK_TIMEOUT,
    detect_format,
    extract_archive,
    load_manifest,
    parse_manifest,
)

# ---------------------------------------------------------------- manifest


def test_manifest_list_and_string_commands() -> None:
    manifest = parse_manifest(
        '[hooks.pre_install]\ncommand = ["sh", "-c", "echo hi"]\ntimeout = 5\n'
        "[hooks.health_check]\ncommand = \"./check.sh --quick 'a b'\"\n"
    )
    pre = manifest.hook("pre_install")
    assert pre is not None and pre.command == ("sh", "-c", "echo hi") and pre.timeout == 5.0
    check = manifest.hook("health_check")
    assert check is not None and check.command == ("./check.sh", "--quick", "a b")
    assert check.timeout == DEFAULT_HOOK_TIMEOUT
    assert manifest.hook("rollback") is None


def test_missing_manifest_means_no_hooks(tmp_path: Path) -> None:
    assert load_manifest(tmp_path).hooks == {}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[hooks.pre_install\n", "update.toml"),
        ('[hooks.preinstall]\ncommand = "x"\n', "hooks.preinstall"),
        ("[hooks.pre_install]\ntimeout = 3\n", "hooks.pre_install.command"),
        ("[hooks.pre_install]\ncommand = []\n", "hooks.pre_install.command"),
        ('[hooks.pre_install]\ncommand = ""\n', "hooks.pre_install.command"),
        ("[hooks.pre_install]\ncommand = [1, 2]\n", "hooks.pre_install.command"),
        ('[hooks.pre_install]\ncommand = "a \'b"\n', "hooks.pre_install.command"),
        ('[hooks.pre_install]\ncommand = "x"\ntimeout = 0\n', "hooks.pre_install.timeout"),
        ('[hooks.pre_install]\ncommand = "x"\ntimeout = "5"\n', "hooks.pre_install.timeout"),
        ('[hooks.pre_install]\ncommand = "x"\ntimeout = true\n', "hooks.pre_install.timeout"),
        ('[hooks.pre_install]\ncommand = "x"\nretries = 2\n', "hooks.pre_install.retries"),
        ('hooks = "x"\n', "hooks"),
        ('version = "1"\n', "version"),
    ],
)
def test_bad_manifest_names_field(text: str, field: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert info.value.field == field


# ---------------------------------------------------------------- archive helpers


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "",
           mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def refused(archive: Path, dest: Path, **limits: int) -> UnsafeArchiveError:
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, dest, **limits)
    assert os.listdir(dest.parent) == [], "a refused archive must leave nothing behind"
    return info.value


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    releases = tmp_path / "releases"
    releases.mkdir()
    return releases / "1.0"


def leftovers(dest: Path) -> list[str]:
    return sorted(os.listdir(dest.parent))


# ---------------------------------------------------------------- refusals


def test_refuses_absolute_path(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("ok.txt"), b"fine"), (member("/etc/evil"), b"x"))
    err = refused(archive, dest)
    assert err.member == "/etc/evil" and "absolute" in err.reason


def test_refuses_dotdot(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("a/../../evil"), b"x"))
    err = refused(archive, dest)
    assert "'..'" in err.reason
    assert not (tmp_path / "evil").exists()


def test_refuses_zip_dotdot(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil", b"x")
    assert "'..'" in refused(archive, dest).reason


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "sub/../../x"])
def test_refuses_escaping_symlink(tmp_path: Path, dest: Path, target: str) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("link", tarfile.SYMTYPE, target), None))
    err = refused(archive, dest)
    assert err.member == "link" and "symlink" in err.reason


def test_refuses_write_through_symlink(tmp_path: Path, dest: Path) -> None:
    # sub/up -> .. stays inside, but sub/up/up2 -> .. would then escape: writing through
    # a symlinked parent is refused outright.
    archive = tar_with(
        tmp_path / "a.tgz",
        (member("sub", tarfile.DIRTYPE, mode=0o755), None),
        (member("sub/up", tarfile.SYMTYPE, ".."), None),
        (member("sub/up/up2", tarfile.SYMTYPE, ".."), None),
    )
    assert "through a symlink" in refused(archive, dest).reason


def test_refuses_escaping_zip_symlink(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../outside")
    assert "symlink" in refused(archive, dest).reason


@pytest.mark.parametrize("target", ["../outside", "/etc/passwd"])
def test_refuses_escaping_hardlink(tmp_path: Path, dest: Path, target: str) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("hard", tarfile.LNKTYPE, target), None))
    err = refused(archive, dest)
    assert err.member == "hard" and "hard link" in err.reason


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_refuses_device_and_fifo(tmp_path: Path, dest: Path, kind: bytes) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("dev", kind), None))
    assert "device or fifo" in refused(archive, dest).reason


def test_refuses_tar_bomb_by_size(tmp_path: Path, dest: Path) -> None:
    zeros = b"\0" * (4 * 1024 * 1024)
    archive = tar_with(tmp_path / "a.tgz", (member("zeros"), zeros))
    assert archive.stat().st_size < 64 * 1024
    err = refused(archive, dest, max_total_bytes=1024 * 1024)
    assert "exceeds the limit" in err.reason


def test_refuses_zip_bomb_by_size(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"zeros{i}", b"\0" * (512 * 1024))
    assert "exceeds the limit" in refused(archive, dest, max_total_bytes=1024 * 1024).reason


def test_size_limit_applies_to_the_total(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("a"), b"x" * 600), (member("b"), b"y" * 600))
    assert "exceeds the limit" in refused(archive, dest, max_total_bytes=1000).reason
    extract_archive(archive, dest, max_total_bytes=1200)
    assert (dest / "b").read_bytes() == b"y" * 600


@pytest.mark.parametrize("fmt", ["tgz", "zip"])
def test_refuses_too_many_members(tmp_path: Path, dest: Path, fmt: str) -> None:
    if fmt == "tgz":
        archive = tar_with(tmp_path / "a.tgz", *[(member(f"f{i}"), b"") for i in range(11)])
    else:
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for i in range(11):
                zf.writestr(f"f{i}", b"")
    assert "more than 10 members" in refused(archive, dest, max_members=10).reason
    extract_archive(archive, dest, max_members=11)


def test_corrupt_and_unknown_archives(tmp_path: Path, dest: Path) -> None:
    text = tmp_path / "notes.tar.gz"
    text.write_text("not an archive")
    with pytest.raises(ArchiveError):
        extract_archive(text, dest)
    truncated = tar_with(tmp_path / "t.tgz", (member("big"), os.urandom(200_000)))
    truncated.write_bytes(truncated.read_bytes()[:50_000])
    with pytest.raises(ArchiveError):
        extract_archive(truncated, dest)
    assert leftovers(dest) == []


# ---------------------------------------------------------------- good archives


def test_good_tar_gz_preserves_exec_bits_and_links(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(
        tmp_path / "good.data",  # suffix is irrelevant: detected by magic bytes
        (member("./", tarfile.DIRTYPE, mode=0o755), None),
        (member("./bin/run.sh", mode=0o755), b"#!/bin/sh\necho ok\n"),
        (member("./etc/conf", mode=0o640), b"conf"),
        (member("./etc/conf-link", tarfile.SYMTYPE, "conf"), None),
        (member("./bin/conf-hard", tarfile.LNKTYPE, "etc/conf"), None),
        (member("./top", tarfile.SYMTYPE, "bin"), None),
    )
    assert detect_format(archive) == "tar.gz"
    stats = extract_archive(archive, dest)
    assert stats.members == 6 and stats.total_bytes == len(b"#!/bin/sh\necho ok\n") + 4
    assert os.access(dest / "bin/run.sh", os.X_OK)
    assert not os.access(dest / "etc/conf", os.X_OK)
    assert (dest / "etc/conf-link").read_bytes() == b"conf"
    assert os.readlink(dest / "etc/conf-link") == "conf"
    assert (dest / "bin/conf-hard").stat().st_ino == (dest / "etc/conf").stat().st_ino
    assert leftovers(dest) == ["1.0"]


def test_good_zip_preserves_exec_bit(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "good.tar.gz"  # misleading suffix on purpose
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bin/", b"")
        for name, mode, data in [("bin/run", 0o755, b"#!/bin/sh\n"), ("readme", 0o644, b"hi")]:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    assert detect_format(archive) == "zip"
    extract_archive(archive, dest)
    assert os.access(dest / "bin/run", os.X_OK)
    assert not os.access(dest / "readme", os.X_OK)
    assert (dest / "readme").read_bytes() == b"hi"


def test_refuses_existing_destination(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "a.tgz", (member("x"), b"1"))
    dest.mkdir()
    with pytest.raises(ArchiveError):
        extract_archive(archive, dest)


# ---------------------------------------------------------------- links through links, huge headers


def _escapes(root: Path) -> list[str]:
    """Every entry under ``root`` whose real path lies outside it."""
    real_root = os.path.realpath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            real = os.path.realpath(os.path.join(dirpath, entry))
            if real != real_root and not real.startswith(real_root + os.sep):
                out.append(os.path.relpath(os.path.join(dirpath, entry), root))
    return out


def test_refuses_a_chain_of_symlinks_that_leaves_the_release(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(
        tmp_path / "chain.tgz",
        (member("sub", tarfile.DIRTYPE, mode=0o755), None),
        (member("sub/l", tarfile.SYMTYPE, ".."), None),  # the release root itself: fine alone
        (member("sub/l2", tarfile.SYMTYPE, "l/../.."), None),  # through l: the release's parent
    )
    err = refused(archive, dest)
    assert err.member == "sub/l2" and "leaves the release directory" in err.reason


def test_refuses_a_zip_chain_of_symlinks(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "chain.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, target in (("sub/l", ".."), ("sub/l2", "l/../..")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    assert refused(archive, dest).member == "sub/l2"


def test_a_later_link_cannot_turn_an_earlier_one_outwards(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(
        tmp_path / "late.tgz",
        (member("x", tarfile.SYMTYPE, "p/q/../.."), None),  # p/q does not exist yet: the root
        (member("p", tarfile.DIRTYPE, mode=0o755), None),
        (member("p/q", tarfile.SYMTYPE, "."), None),  # now x leads to the release's parent
    )
    assert refused(archive, dest).member == "x"


def test_inner_links_through_links_are_kept(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(
        tmp_path / "ok.tgz",
        (member("lib/v2/data", mode=0o644), b"payload"),
        (member("lib/current", tarfile.SYMTYPE, "v2"), None),
        (member("bin/data", tarfile.SYMTYPE, "../lib/current/data"), None),
        (member("up", tarfile.SYMTYPE, "lib/current/.."), None),
    )
    extract_archive(archive, dest)
    assert (dest / "bin/data").read_bytes() == b"payload"
    assert _escapes(dest) == []


def _raw_tar_gz(path: Path, header_type: bytes, header_size: int) -> Path:
    """A .tar.gz whose first header declares ``header_size`` bytes of extended header (zeros), then a file."""
    import gzip

    info = tarfile.TarInfo("././@Header")
    info.type = header_type
    info.size = header_size
    regular = tarfile.TarInfo("ok.txt")
    regular.size = 2
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(info.tobuf(format=tarfile.GNU_FORMAT))
        chunk = bytes(1024 * 1024)
        left = header_size + (-header_size % 512)
        while left:
            n = min(left, len(chunk))
            out.write(chunk[:n])
            left -= n
        out.write(regular.tobuf(format=tarfile.USTAR_FORMAT) + b"ok" + bytes(510) + bytes(1024))
    return path


@pytest.mark.parametrize("header_type", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                                         tarfile.GNUTYPE_LONGLINK], ids=["pax", "pax-global", "gnu-longname",
                                                                         "gnu-longlink"])
def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path, dest: Path,
                                                             header_type: bytes) -> None:
    import tracemalloc

    size = 64 * 1024 * 1024
    archive = _raw_tar_gz(tmp_path / "bomb.tgz", header_type, size)
    assert archive.stat().st_size < size // 100  # small on the wire
    tracemalloc.start()
    try:
        err = refused(archive, dest, max_total_bytes=1024 * 1024)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "extended header" in err.reason
    assert peak < 8 * 1024 * 1024, f"extraction held {peak} bytes"


def test_an_extended_header_within_the_bound_still_works(tmp_path: Path, dest: Path) -> None:
    long_name = "/".join(["directory"] * 40) + "/file"
    archive = tar_with(tmp_path / "pax.tgz", (member(long_name), b"x"))  # pax (default format) long name
    extract_archive(archive, dest)
    assert (dest / long_name).read_bytes() == b"x"
