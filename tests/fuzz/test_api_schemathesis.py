"""Schemathesis against the live server (gunicorn on a free port) under every identity.

For each of admin, publisher, support, an installation, a customer user and an anonymous
caller, schemathesis generates valid and invalid requests for every operation of
``/api/openapi.json`` within a time budget (``FUZZ_SECONDS_PER_IDENTITY``, 12 s by
default: about a minute and a half in all) and fails on any 5xx or on a response that
breaks its documented schema. The seed is random unless ``FUZZ_SEED`` is set, and is
printed so a failure can be replayed.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
from factories import create_component, enroll, publish

SECONDS = int(os.environ.get("FUZZ_SECONDS_PER_IDENTITY", "12"))
ALL_IDENTITIES = ("admin", "publisher", "support", "installation", "customer", "anonymous")
IDENTITIES = tuple(os.environ.get("FUZZ_IDENTITIES", ",".join(ALL_IDENTITIES)).split(","))


@pytest.fixture
def identities(app: Any, client: Any, auth: Any) -> Callable[[str], dict[str, str]]:
    """Fresh credentials for one identity (an earlier run may have revoked the last ones), over data each
    of them can reach."""
    from release_server.accounts import services as accounts
    from release_server.db import db

    admin = auth.headers("admin")
    pub, sup = auth.headers("publisher"), auth.headers("support")
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0", channels=["stable"]).status_code == 201
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    user = client.post("/api/v1/customer-users", json={"email": "ann@acme.example", "name": "Ann",
                                                       "customer": "Acme"}, headers=sup)
    assert client.post("/api/v1/tickets", json={"subject": "Export fails", "customer": "Acme"},
                       headers=sup).status_code == 201

    def fresh(who: str) -> dict[str, str]:
        if who in ("admin", "publisher", "support"):
            with app.app_context():
                issued = accounts.issue_token(db.session, name=f"fuzz {who}", role=who,
                                              user=accounts.get_user(db.session, f"{who}-user"))
                db.commit()
                return {"Authorization": f"Bearer {issued.secret}"}
        if who == "installation":
            return {"Authorization": f"Bearer {enroll(client, admin, 'Acme', installed={'server': '1.0'})['token']}"}
        if who == "customer":
            token = client.post(f"/api/v1/customer-users/{user.json['id']}/tokens", json={"name": "fuzz"},
                                headers=sup)
            return {"Authorization": f"Bearer {token.json['token']}"}
        return {}

    return fresh


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_no_server_error_and_no_schema_violation_under_any_identity(live_server: Any, identities: Callable,
                                                                    tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    seed = int(os.environ.get("FUZZ_SEED") or random.randrange(2**31))
    failures = []
    for who in IDENTITIES:
        args = [cli, "run", f"{live_server.url}/api/openapi.json", "--max-time", str(SECONDS), "--seed", str(seed),
                "--checks", "not_a_server_error,response_schema_conformance", "--workers", "1",
                "--phases", "examples,coverage,fuzzing", "--request-timeout", "30", "--no-color",
                "--suppress-health-check", "all", "--output-truncate", "true"]
        if who == "admin":  # revoking the token it runs with would end its own run
            args += ["--exclude-operation-id", "delete_/api/v1/tokens/{prefix}"]
        for name, value in identities(who).items():
            args += ["--header", f"{name}: {value}"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=SECONDS * 10 + 120, cwd=tmp_path,
                              env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"})
        print(f"--- as {who} (seed {seed}):\n{proc.stdout[-1500:]}")
        if proc.returncode != 0:
            failures.append(f"--- as {who} (seed {seed}), exit {proc.returncode}:\n{proc.stdout[-6000:]}"
                            f"\n{proc.stderr[-2000:]}")
    log = Path(live_server.log_path).read_text(errors="replace")
    assert not failures, "\n".join(failures) + "\n--- server log (tail):\n" + log[-4000:]
