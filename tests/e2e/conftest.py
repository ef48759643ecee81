"""End-to-end fixtures: a live server with a bootstrapped TUF repository (see ``agent_harness``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.agent_harness import CUSTOMER, E2E


@pytest.fixture
def e2e(app: Any, client: Any, auth: Any, live_server: Any, tmp_path: Path) -> E2E:
    """A live server with a bootstrapped TUF repository and a customer to enroll under."""
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    headers = auth.headers("admin")
    resp = client.post("/api/v1/customers", json={"name": CUSTOMER}, headers=headers)
    assert resp.status_code == 201, resp.json
    return E2E(app, client, headers, live_server, tmp_path)
