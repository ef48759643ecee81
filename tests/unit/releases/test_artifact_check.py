"""The publish-time artifact check applies the agent's rules to the spooled file, streamed."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from factories import make_tarball

from release_server.releases.artifacts import MAX_EXTENDED_HEADER, InvalidArtifactError, check_artifact


def tar_of(path: Path, *members: tarfile.TarInfo, data: dict[str, bytes] | None = None,
           pax: dict[str, str] | None = None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax) as tar:
        for m in members:
            body = (data or {}).get(m.name)
            if body is not None:
                m.size = len(body)
            tar.addfile(m, io.BytesIO(body) if body is not None else None)
    path.write_bytes(buf.getvalue())
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def refused(path: Path) -> InvalidArtifactError:
    with pytest.raises(InvalidArtifactError) as exc:
        check_artifact(path)
    assert exc.value.field == "artifact" and exc.value.status == 400
    return exc.value


def test_a_valid_tarball_with_a_manifest_passes(tmp_path: Path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tarball({"bin/run.sh": "echo", "docs/x": "y"},
                                  manifest='[hooks.health_check]\ncommand = ["./bin/run.sh"]\ntimeout = 5\n'))
    summary = check_artifact(path)
    assert summary.format == "tar.gz" and summary.members == 3 and summary.has_manifest


def test_a_zip_passes_and_a_text_file_is_refused(tmp_path: Path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("app/main.py", "print(1)")
    assert check_artifact(z).format == "zip"
    text = tmp_path / "notes.tar.gz"
    text.write_text("this is not an archive\n")
    assert "not a gzip-compressed tar" in refused(text).message
    gz_text = tmp_path / "gz.tar.gz"
    gz_text.write_bytes(gzip.compress(b"plain text, gzip-compressed, no tar inside" * 20))
    assert "corrupt" in refused(gz_text).message


@pytest.mark.parametrize("members, bad", [
    ([member("/etc/passwd")], "/etc/passwd"),
    ([member("a/../../x")], "a/../../x"),
    ([member("l", tarfile.SYMTYPE, "/etc")], "l"),
    ([member("l", tarfile.SYMTYPE, "../outside")], "l"),
    ([member("sub", tarfile.DIRTYPE), member("sub/l", tarfile.SYMTYPE, ".."),
      member("sub/l2", tarfile.SYMTYPE, "l/../..")], "sub/l2"),           # a chain of links
    ([member("d", tarfile.SYMTYPE, "."), member("d/f")], "d/f"),          # writing through a link
    ([member("h", tarfile.LNKTYPE, "../../etc/shadow")], "h"),
    ([member("h", tarfile.LNKTYPE, "later")], "h"),                       # hard link to nothing before it
    ([member("dev", tarfile.CHRTYPE)], "dev"),
    ([member("fifo", tarfile.FIFOTYPE)], "fifo"),
])
def test_unsafe_members_are_refused_by_name(tmp_path: Path, members, bad):
    err = refused(tar_of(tmp_path / "a.tar.gz", *members))
    assert err.member == bad and repr(bad) in err.message


def test_an_invalid_manifest_is_refused_naming_its_field(tmp_path: Path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tarball({"x": "y"}, manifest='[hooks.health_check]\ncommand = ["true"]\ntimeout = -1\n'))
    err = refused(path)
    assert err.member == "update.toml" and "hooks.health_check.timeout" in err.message
    path.write_bytes(make_tarball({}, manifest="[hooks.deploy]\ncommand = 'x'\n"))
    assert "hooks.deploy" in refused(path).message
    path.write_bytes(make_tarball({}, manifest="not toml = = ="))
    assert refused(path).member == "update.toml"


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path: Path):
    path = tar_of(tmp_path / "a.tar.gz", member("x"), data={"x": b"1"},
                  pax={"comment": "A" * (MAX_EXTENDED_HEADER + 10)})
    assert "extended tar header" in refused(path).message


def test_member_limits(tmp_path: Path):
    path = tar_of(tmp_path / "a.tar.gz", *[member(f"f{i}") for i in range(5)])
    with pytest.raises(InvalidArtifactError, match="more than 3 members"):
        check_artifact(path, max_members=3)
    path = tar_of(tmp_path / "b.tar.gz", member("big"), data={"big": b"x" * 1000})
    with pytest.raises(InvalidArtifactError, match="expands beyond"):
        check_artifact(path, max_total_bytes=999)


def test_a_gnu_long_name_declaring_more_than_the_bound_is_refused_before_it_is_read(tmp_path: Path):
    # a GNU long-name header claiming 1 GiB: tarfile would try to read (and hold) all of it
    head = tarfile.TarInfo("././@LongLink")
    head.type = tarfile.GNUTYPE_LONGNAME
    head.size = 1 << 30
    raw = head.tobuf(format=tarfile.GNU_FORMAT)[:512] + b"x" * 4096
    path = tmp_path / "long.tar.gz"
    path.write_bytes(gzip.compress(raw))
    err = refused(path)
    assert "extended tar header" in err.message and str(1 << 30) in err.message


def test_a_tarball_is_decompressed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import zlib

    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tarball({f"f{i}": "x" * 1000 for i in range(20)}, manifest="[hooks]\n"))
    made = []
    real = zlib.decompressobj

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zlib, "decompressobj", counting)
    assert check_artifact(path).members == 21
    assert len(made) == 1  # one pass: the listing and the extended-header bound together


# ------------------------------------------------------------ checked while received


def blocks_of(data: bytes, size: int):
    """``data`` as the publish path hands it over: views of one reused buffer, ``size`` bytes at a time."""
    buf = bytearray(size)
    view = memoryview(buf)
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        buf[:len(piece)] = piece
        yield view[:len(piece)]
        buf[:len(piece)] = b"\xee" * len(piece)  # a view kept past its turn would see this


def _gzip_with_header_fields(raw: bytes, *, name: bytes = b"", comment: bytes = b"", hcrc: bool = False) -> bytes:
    import struct
    import zlib

    flags = (8 if name else 0) | (16 if comment else 0) | (2 if hcrc else 0)
    head = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 0) + b"\x00\xff"
    head += (name + b"\0" if name else b"") + (comment + b"\0" if comment else b"") + (b"\0\0" if hcrc else b"")
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(raw) + comp.flush()
    return head + body + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def _plain_tar(*members: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            body = (data or {}).get(m.name)
            if body is not None:
                m.size = len(body)
            tar.addfile(m, io.BytesIO(body) if body is not None else None)
    return buf.getvalue()


def _artifacts(tmp_path: Path) -> dict[str, bytes]:
    """Artifacts check_artifact passes and refuses, of every shape the stream check has to agree on."""
    big = os.urandom(700_000)
    long_name = "d/" + "n" * 150
    out = {
        "manifest": make_tarball({"bin/run.sh": "echo", "docs/x": "y"},
                                 manifest='[hooks.health_check]\ncommand = ["./bin/run.sh"]\ntimeout = 5\n'),
        "big-member": make_tarball({"payload.bin": big, "after": "z"}),
        "stored-blocks": _stored_tarball({"payload.bin": big}),
        "pax-and-long-name": tar_of(tmp_path / "p.tar.gz", member(long_name), member("x"),
                                    data={long_name: b"1", "x": b"2"}, pax={"comment": "c" * 3000}).read_bytes(),
        "gnu-long-name": _gzip_with_header_fields(_plain_tar(member(long_name), data={long_name: b"q" * 5000})),
        "gzip-name-comment-hcrc": _gzip_with_header_fields(_plain_tar(member("a"), data={"a": b"b"}),
                                                           name=b"x.tar", comment=b"c" * 100, hcrc=True),
        "bad-manifest": make_tarball({"x": "y"}, manifest='[hooks.health_check]\ncommand = ["true"]\ntimeout = -1\n'),
        "link-out": tar_of(tmp_path / "l.tar.gz", member("l", tarfile.SYMTYPE, "../outside")).read_bytes(),
        "device": tar_of(tmp_path / "d.tar.gz", member("dev", tarfile.CHRTYPE)).read_bytes(),
        "huge-pax": tar_of(tmp_path / "h.tar.gz", member("x"), data={"x": b"1"},
                           pax={"comment": "A" * (MAX_EXTENDED_HEADER + 10)}).read_bytes(),
        "text": b"this is not an archive\n",
        "gzip-text": gzip.compress(b"plain text, gzip-compressed, no tar inside" * 20),
        "truncated": make_tarball({"payload.bin": big})[:300_000],
        "not-deflate": b"\x1f\x8b\x08\x00" + b"\0" * 6 + os.urandom(5000),
        "empty-gzip": gzip.compress(b""),
    }
    return out


def _stored_tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=0) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.mark.parametrize("block", [1, 7, 512, 4099, 65536, 1 << 20])
def test_the_check_while_received_agrees_with_the_check_of_the_file(tmp_path: Path, block: int):
    from release_server.releases.artifacts import check_artifact_blocks

    verdicts = {}
    for name, data in _artifacts(tmp_path).items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        try:
            check_artifact(path)
            verdicts[name] = True
        except InvalidArtifactError:
            verdicts[name] = False
        assert check_artifact_blocks(blocks_of(data, block)) is verdicts[name], name
    assert sum(verdicts.values()) == 6 and len(verdicts) - sum(verdicts.values()) == 9


def test_the_check_while_received_leaves_zips_and_gzip_extra_fields_to_the_file_check(tmp_path: Path):
    from release_server.releases.artifacts import check_artifact_blocks

    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("app/main.py", "print(1)")
    path = tmp_path / "a.zip"
    path.write_bytes(z.getvalue())
    assert check_artifact(path).format == "zip"
    assert check_artifact_blocks(blocks_of(z.getvalue(), 4096)) is False  # its directory is at its end
    extra = make_tarball({"a": "b"})
    extra = extra[:3] + bytes([extra[3] | 4]) + extra[4:10] + b"\x02\x00XY" + extra[10:]
    assert check_artifact_blocks(blocks_of(extra, 4096)) is False


def test_the_check_while_received_reads_only_to_the_end_of_the_archive_and_keeps_memory_bounded():
    from release_server.releases.artifacts import check_artifact_blocks

    # a member of 64 MiB of zeros compresses to ~64 KiB: inflated in small pieces, never all at once
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    data = buf.getvalue() + b"trailing bytes after the gzip stream" * 1000
    seen = []

    def counted():
        for view in blocks_of(data, 8192):
            seen.append(len(view))
            yield view

    import tracemalloc

    tracemalloc.start()
    try:
        assert check_artifact_blocks(counted()) is True
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert sum(seen) < len(data)  # stopped at the end of the deflate data: the caller reads the rest
