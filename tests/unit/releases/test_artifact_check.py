"""The publish-time artifact check applies the agent's rules to the spooled file, streamed."""
from __future__ import annotations

import gzip
import io
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
