"""Test data builders shared by the test modules."""
from __future__ import annotations

import io
import json
import tarfile
from typing import Any


def make_tarball(files: dict[str, bytes | str], *, manifest: str | None = None) -> bytes:
    """A .tar.gz artifact holding ``files`` (and an ``update.toml`` when given)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        items = dict(files)
        if manifest is not None:
            items["update.toml"] = manifest
        for name, content in items.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def random_tarball(size: int) -> bytes:
    """A valid .tar.gz artifact of about ``size`` bytes (one member of random, incompressible content)."""
    import os

    return make_tarball({"payload.bin": os.urandom(size)})


def publish(client: Any, headers: dict[str, str], component: str, version: str, *,
            artifact: bytes | None = None, filename: str | None = None, **metadata: Any) -> Any:
    """POST a release through the API test client; returns the response."""
    meta = {"version": version, **metadata}
    body = artifact if artifact is not None else make_tarball({"VERSION": version})
    data = {"metadata": json.dumps(meta), "artifact": (io.BytesIO(body), filename or f"{component}-{version}.tar.gz")}
    return client.post(f"/api/v1/components/{component}/releases", data=data, headers=headers,
                       content_type="multipart/form-data")


def create_component(client: Any, headers: dict[str, str], name: str, description: str = "") -> Any:
    return client.post("/api/v1/components", json={"name": name, "description": description}, headers=headers)


def enroll(client: Any, staff_headers: dict[str, str], customer: str, *, name: str = "main office",
           channel: str = "stable", installed: dict[str, str] | None = None, tags: list[str] | None = None,
           **extra: Any) -> dict[str, Any]:
    """Create an enrollment token for ``customer`` and enroll one installation with it."""
    token = client.post(f"/api/v1/customers/{customer}/enrollment-tokens", json={}, headers=staff_headers)
    assert token.status_code == 201, token.json
    resp = client.post("/api/v1/enroll", json={"enrollment_token": token.json["token"], "name": name,
                                               "channel": channel, "installed": installed or {},
                                               "tags": tags or [], **extra})
    assert resp.status_code == 201, resp.json
    return resp.json


def timeline_in(app: Any, locale: str, number: str) -> list[str]:
    """A ticket's timeline as a reader of ``locale`` sees it in the console (system texts rendered from their codes)."""
    from sqlalchemy import select

    from release_server.db import db
    from release_server.messages import text_of
    from release_server.support.models import Ticket, TicketEvent

    with app.test_request_context():
        t = db.session.scalar(select(Ticket).where(Ticket.number == number))
        events = db.session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id).order_by(TicketEvent.id))
        return [text_of(e, "body", locale) for e in events]


def statements_run(app: Any, fn: Any) -> list[tuple[str, int]]:
    """(statement, rows it returned where the driver tells: PostgreSQL) of each SQL statement ``fn`` runs."""
    from sqlalchemy import event

    seen: list[tuple[str, int]] = []

    def after(conn, cursor, statement, *args: Any) -> None:  # noqa: ANN001
        seen.append((statement, cursor.rowcount))

    engine = app.extensions["db_engine"]
    event.listen(engine, "after_cursor_execute", after)
    try:
        fn()
    finally:
        event.remove(engine, "after_cursor_execute", after)
    return seen
