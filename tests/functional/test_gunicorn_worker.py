"""The shipped gunicorn worker: a client slow to close its connection never stalls the other requests."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer

from release_server.gunicorn_worker import linger


def _get(port: int, path: str, *, close: bool) -> tuple[socket.socket, bytes]:
    """One HTTP/1.1 GET on a new connection; returns the socket (still open) and the whole response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{'Connection: close' if close else ''}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before the headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed before the end of the body"
        body += chunk
    return s, head + b"\r\n\r\n" + body


@pytest.fixture
def one_worker(app: Any, app_config: dict, tmp_path: Path) -> Any:
    server = LiveServer(app_config, tmp_path / "server.log", workers=1).start()
    yield server
    server.stop()


def test_clients_that_keep_closed_connections_open_do_not_stall_the_worker(one_worker: Any) -> None:
    port = one_worker.port
    # Three clients read their whole answer (Connection: close) and then keep the socket open,
    # like a slow reader at the end of a download: the server waits for them to close.
    held = [_get(port, "/healthz", close=True)[0] for _ in range(3)]
    try:
        started = time.monotonic()
        for _ in range(5):  # meanwhile, new requests on the same (single) worker
            s, answer = _get(port, "/healthz", close=False)
            s.close()
            assert answer.startswith(b"HTTP/1.1 200")
        elapsed = time.monotonic() - started
        # the event loop lingering on each held client would take 2 s apiece
        assert elapsed < 1.5, f"5 requests took {elapsed:.2f} s while 3 clients held their closed connections"
    finally:
        for s in held:
            s.close()


def test_a_closing_answer_still_reaches_a_slow_reader_whole(one_worker: Any) -> None:
    s, answer = _get(one_worker.port, "/api/openapi.json", close=True)
    try:
        assert answer.startswith(b"HTTP/1.1 200") and answer.rstrip().endswith(b"}")
        s.settimeout(5)
        assert s.recv(1) == b""  # then the server's end of the connection is closed
    finally:
        s.close()


def test_linger_waits_for_the_peer_and_leaves_no_read_to_block() -> None:
    ours, theirs = socket.socketpair()
    try:
        started = time.monotonic()
        linger(ours, seconds=0.3)  # the peer neither sends nor closes: the wait is bounded
        assert 0.25 <= time.monotonic() - started < 2.0
        assert theirs.recv(10) == b""  # our side was half-closed
        ours.settimeout(0.5)
        assert ours.recv(10) == b""  # and reading it again returns at once
    finally:
        ours.close()
        theirs.close()
    ours, theirs = socket.socketpair()
    try:
        threading.Timer(0.1, theirs.close).start()
        started = time.monotonic()
        linger(ours, seconds=5.0)  # the peer closes after 0.1 s: linger ends then
        assert time.monotonic() - started < 2.0
    finally:
        ours.close()
    closed, peer = socket.socketpair()
    closed.close()
    linger(closed)  # a closed socket: nothing to do, no error
    peer.close()
