"""A zip's entry count is read from its end records before ``zipfile`` builds the directory, zip64 included."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from client_agent.errors import UnsafeArchiveError
from client_agent.package import extract_archive
from client_agent.package_rules import zip_directory_entries
from release_server.releases.artifacts import InvalidArtifactError, check_artifact


def _zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"f{i}", b"")
    return buf.getvalue()


def _forged_zip64(claimed: int) -> bytes:
    """One real entry, but zip64 end records that claim ``claimed`` entries (the directory itself is tiny)."""
    real = _zip(1)
    eocd_at = real.rfind(b"PK\x05\x06")
    body, eocd = real[:eocd_at], real[eocd_at:]
    cd_size, cd_offset = struct.unpack("<II", eocd[12:20])
    record_at = len(body)
    record = (b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, claimed, claimed, cd_size, cd_offset))
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, record_at, 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


def test_the_count_of_a_plain_zip_comes_from_its_end_record() -> None:
    assert zip_directory_entries(io.BytesIO(_zip(3))) == 3


def test_a_zip64_archive_is_counted_from_its_zip64_record() -> None:
    data = _zip(70_000)  # more than 65,535 entries: zipfile writes the zip64 records
    assert struct.unpack("<H", data[data.rfind(b"PK\x05\x06") + 10:][:2])[0] == 0xFFFF
    assert zip_directory_entries(io.BytesIO(data)) == 70_000


def test_a_zip64_claim_is_refused_before_zipfile_reads_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "forged.zip"
    path.write_bytes(_forged_zip64(50_000_000))
    assert zip_directory_entries(io.BytesIO(path.read_bytes())) == 50_000_000
    # zipfile alone would stop at the directory it cannot find; the count stops it first, and says why
    with pytest.raises(UnsafeArchiveError, match="more than 1000 members"):
        extract_archive(path, tmp_path / "out", max_members=1000)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidArtifactError, match="more than 1000 members"):
        check_artifact(path, max_members=1000)


@pytest.mark.parametrize("data", [b"PK\x03\x04 no end record", b"PK\x05\x06"[:3],
                                  b"x" * 30 + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0, 0, 0)],
                         ids=["no-end-record", "truncated", "zip64-without-locator"])
def test_broken_end_records_are_refused(data: bytes) -> None:
    with pytest.raises(UnsafeArchiveError):
        zip_directory_entries(io.BytesIO(data))
