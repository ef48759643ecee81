"""The threaded gunicorn worker, with a closing connection's linger moved off the event loop.

Gunicorn's ``gthread`` worker (27.x) closes a connection that ends with its response
(the client sent ``Connection: close``, or the worker closes after a download) on the
worker's main thread, the one that accepts connections and hands readable ones to the
thread pool. That close is graceful: it half-closes and then waits up to 2 s for the
client to close its side, so that the kernel does not reset a response the client is
still reading. A slow client that has not yet read the end of a large download keeps
that wait going for its whole 2 s, and meanwhile the worker accepts and dispatches
nothing: every check, report and page on the worker stalls. With 40 downloads at
2 MB/s finishing together, ``scripts/bench/mass_download.py`` saw every request wait
about 2 s.

:class:`ThreadWorker` does the same linger in the pool thread that served the request,
before handing the connection back: it half-closes, reads until the client closes
(at most 2 s and 64 KiB, as gunicorn does), and if the client is still there it shuts
the read side too. The main thread's close then finds nothing to wait for. Each
lingering client costs one pool thread for its own 2 s at most, not the worker's
event loop.
"""
from __future__ import annotations

import socket
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024


def linger(sock: socket.socket, seconds: float = LINGER_SECONDS, max_bytes: int = LINGER_MAX_BYTES) -> None:
    """Half-close ``sock`` and wait for the peer's close; afterwards no read on it blocks. Never closes it."""
    if sock.fileno() == -1:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # already gone
        return
    deadline = time.monotonic() + seconds
    drained = 0
    try:
        while drained < max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            data = sock.recv(4096)
            if not data:
                return  # the client closed: a later read sees the end at once
            drained += len(data)
    except OSError:  # timeout, reset
        pass
    try:
        sock.shutdown(socket.SHUT_RD)  # the client lingers on: make any later read return at once
    except OSError:
        pass


class ThreadWorker(_GunicornThreadWorker):
    """``gthread`` with the closing linger in the request's own thread (see the module docstring)."""

    def handle(self, conn: Any) -> Any:
        result = super().handle(conn)
        if result is False:  # the connection ends here (True: kept alive; otherwise deferred)
            linger(conn.sock)
        return result
