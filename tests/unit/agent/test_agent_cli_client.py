"""The HTTP client's error mapping and the resumable, verified download, without sockets."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import requests
from tuf.api.metadata import TargetFile

from client_agent.client import (ApiClient, ApiError, AuthRejectedError, ProtocolError, ServerBusyError,
                                 ServerUnavailableError)
from client_agent.trust import DownloadInterruptedError, VerificationError, download_paths, download_target


def response(status: int, body=None, headers=None, raw: bytes | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else (raw if raw is not None else b"")
    r.headers.update(headers or {})
    r.url = "http://server/x"
    r._content_consumed = True
    r.raw = io.BytesIO(r._content or b"")
    return r


class FakeSession:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[tuple[str, dict]] = []
        self.headers: dict[str, str] = {}

    def post(self, url, json=None, headers=None, timeout=None):
        self.requests.append((url, {"json": json, "headers": headers}))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self):
        pass


def client(*answers) -> tuple[ApiClient, FakeSession]:
    session = FakeSession(*answers)
    return ApiClient("http://server/", "rsi_token", session=session), session


OFFER = {"component": "app", "version": "1.1", "from_version": "1.0", "target_path": "app/app-1.1.tar.gz",
         "sha256": "0" * 64, "length": 10, "critical": False, "downgrade": False, "changelog": "* x"}


def test_check_parses_offers_and_sends_the_token():
    api, session = client(response(200, {"offers": [OFFER], "poll_interval": 900, "maintenance_window": None}))
    result = api.check({"app": "1.0"}, components=["web"], agent_version="0.1.0", state="idle")
    assert result.offers[0].version == "1.1" and result.poll_interval == 900
    url, req = session.requests[0]
    assert url == "http://server/api/v1/updates/check"
    assert req["headers"]["Authorization"] == "Bearer rsi_token"
    assert req["json"] == {"installed": {"app": "1.0"}, "components": ["web"], "agent_version": "0.1.0",
                           "state": "idle"}


@pytest.mark.parametrize("answer, error, attrs", [
    (response(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "120"}),
     ServerBusyError, {"retry_after": 120.0, "status_code": 429}),
    (response(503, None, {"Retry-After": "7"}), ServerBusyError, {"retry_after": 7.0}),
    (response(502), ServerUnavailableError, {"retry_after": None}),
    (requests.ConnectionError("refused"), ServerUnavailableError, {"reason": "connection failed"}),
    (requests.Timeout("slow"), ServerUnavailableError, {"reason": "timed out"}),
    (response(401, {"error": {"code": "unauthorized", "message": "bad token"}}), AuthRejectedError,
     {"status_code": 401}),
    (response(400, {"error": {"code": "invalid", "message": "bad version", "field": "installed"}}), ApiError,
     {"code": "invalid", "field": "installed"}),
    (response(200, raw=b"<html>"), ProtocolError, {}),
    (response(200, {"offers": [{"component": "app"}]}), ProtocolError, {}),
])
def test_errors_are_typed(answer, error, attrs):
    api, _ = client(answer)
    with pytest.raises(error) as info:
        api.check({})
    for key, value in attrs.items():
        assert getattr(info.value, key) == value


# ---------------------------------------------------------------- downloads


class BreakingRaw(io.BytesIO):
    """A response body that breaks off after ``limit`` bytes."""

    def __init__(self, data: bytes, limit: int | None) -> None:
        super().__init__(data)
        self.limit = limit

    def read(self, n=-1, **_kw):
        if self.limit is not None and self.tell() >= self.limit:
            raise requests.exceptions.ChunkedEncodingError("connection reset")
        if self.limit is not None:
            n = min(n if n > 0 else self.limit, self.limit - self.tell())
        return super().read(n)


class FileServer:
    """A fake session serving one file, honouring Range, optionally breaking off once."""

    def __init__(self, data: bytes, *, break_at: int | None = None, ranges: bool = True) -> None:
        self.data = data
        self.break_at = break_at
        self.ranges = ranges
        self.seen: list[str | None] = []

    def get(self, url, headers=None, stream=True, timeout=None):
        rng = (headers or {}).get("Range")
        self.seen.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng and self.ranges else 0
        body = self.data[start:]
        r = response(206 if start else 200)
        limit, self.break_at = self.break_at, None
        r.raw = BreakingRaw(body, None if limit is None else max(0, limit - start))
        r._content = False
        r._content_consumed = False
        return r


def target(data: bytes) -> TargetFile:
    return TargetFile(len(data), {"sha256": hashlib.sha256(data).hexdigest()}, "app/app-1.0.tar.gz")


DATA = bytes(range(256)) * 4096  # 1 MiB


def test_interrupted_download_keeps_the_part_and_resumes_with_range(tmp_path: Path):
    server = FileServer(DATA, break_at=300_000)
    info = target(DATA)
    with pytest.raises(DownloadInterruptedError) as err:
        download_target(server, "http://s/t", info, tmp_path)
    final, part = download_paths(info, tmp_path)
    assert err.value.received == part.stat().st_size > 0
    have = part.stat().st_size

    seen = []
    path = download_target(server, "http://s/t", info, tmp_path, progress=lambda r, t, s: seen.append((r, s)))
    assert path == final and path.read_bytes() == DATA and not part.exists()
    assert server.seen[-1] == f"bytes={have}-"
    assert seen[0] == (have, have) and seen[-1][0] == len(DATA)
    # a verified file is not fetched again
    assert download_target(server, "http://s/t", info, tmp_path) == final
    assert len(server.seen) == 2


def test_server_without_range_support_restarts_from_zero(tmp_path: Path):
    info = target(DATA)
    _, part = download_paths(info, tmp_path)
    part.write_bytes(DATA[:1000])
    server = FileServer(DATA, ranges=False)
    assert download_target(server, "http://s/t", info, tmp_path).read_bytes() == DATA


def test_bad_bytes_are_refused_and_a_bad_partial_is_fetched_again(tmp_path: Path):
    info = target(DATA)
    _, part = download_paths(info, tmp_path)
    part.write_bytes(b"\xff" * 1000)  # corrupt partial: resumed result does not verify -> full refetch
    server = FileServer(DATA)
    assert download_target(server, "http://s/t", info, tmp_path).read_bytes() == DATA
    assert server.seen == ["bytes=1000-", None]

    tampered = bytearray(DATA)
    tampered[5] ^= 1
    with pytest.raises(VerificationError) as err:
        download_target(FileServer(bytes(tampered)), "http://s/t", target(DATA), tmp_path / "other")
    assert err.value.code == "verification_failed"
    assert not any((tmp_path / "other").iterdir())

    with pytest.raises(VerificationError):  # longer than signed: stopped at once
        download_target(FileServer(DATA + b"extra"), "http://s/t", target(DATA), tmp_path / "third")
