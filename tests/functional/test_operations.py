"""What an operator watches: /metrics (Prometheus), /healthz and /readyz, request ids and log lines."""
from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests
from factories import create_component, enroll, publish
from prometheus_client.parser import text_string_to_metric_families
from release_server import close_app


def scrape(client: Any, **kwargs: Any) -> dict[str, list[Any]]:
    r = client.get("/metrics", **kwargs)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return families(r.get_data(as_text=True))


def families(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


def value(fams: dict[str, list[Any]], family: str, sample: str | None = None, **labels: str) -> float | None:
    for s in fams.get(family, []):
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture
def root_v1(app: Any, tmp_path: Any) -> bytes:
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        result = ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    return result.root_file.read_bytes()


@pytest.fixture
def fleet(client: Any, auth: Any, root_v1: bytes) -> dict[str, Any]:
    admin, staff = auth.headers("admin"), auth.headers("publisher")
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    create_component(client, staff, "server")
    assert publish(client, staff, "server", "1.0", channels=["stable"]).status_code == 201
    inst = enroll(client, admin, "Acme")
    return {"inst": inst, "bearer": {"Authorization": f"Bearer {inst['token']}"}, "admin": admin}


def test_metrics_scrape_has_every_series(app: Any, client: Any, fleet: dict[str, Any]) -> None:
    from release_server import metrics
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.support.models import MailMessage, Ticket
    from release_server.worker import acquire_lease, run_job, WorkerJob

    before = scrape(client)
    checks0 = value(before, "release_server_checks", "release_server_checks_total", result="offers") or 0
    nothing0 = value(before, "release_server_checks", "release_server_checks_total", result="nothing_new") or 0
    offers0 = value(before, "release_server_offers", "release_server_offers_total", component="server") or 0
    failed0 = value(before, "release_server_reports", "release_server_reports_total", outcome="failed") or 0
    dup0 = value(before, "release_server_reports", "release_server_reports_total", outcome="duplicate") or 0
    bytes0 = value(before, "release_server_bytes_served", "release_server_bytes_served_total", route="tuf_metadata") or 0

    b = fleet["bearer"]
    assert client.post("/api/v1/updates/check", json={"installed": {}, "components": ["server"]},
                       headers=b).json["offers"]
    assert client.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}}, headers=b).json["offers"] == []
    report = {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0", "to_version": "1.0",
              "outcome": "failed", "stage": "health_check", "error_code": "E1", "error_message": "db down"}
    assert client.post("/api/v1/reports", json={"reports": [report]}, headers=b).status_code == 200
    assert client.post("/api/v1/reports", json={"reports": [report]}, headers=b).status_code == 200  # again
    ts = client.get("/tuf/metadata/timestamp.json")
    assert ts.status_code == 200
    with app.app_context():
        db.session.add(MailMessage(direction="out", status="pending", to_addr="it@acme.example", subject="s",
                                   body="b", created_at=utcnow() - timedelta(seconds=120)))
        db.commit()
        assert acquire_lease("node-1:4242:abcd", 60)
        run_job(WorkerJob("metrics-probe-ok", 60, lambda: None))
        run_job(WorkerJob("metrics-probe-bad", 60, lambda: 1 / 0))
        tickets = {(t.status, t.kind) for t in db.session.query(Ticket)}
    metrics.count_bytes("artifact", 0)  # nothing counted for an empty body

    after = scrape(client)
    assert value(after, "release_server_checks", "release_server_checks_total", result="offers") == checks0 + 1
    assert value(after, "release_server_checks", "release_server_checks_total", result="nothing_new") == nothing0 + 1
    assert value(after, "release_server_offers", "release_server_offers_total", component="server") == offers0 + 1
    assert value(after, "release_server_reports", "release_server_reports_total", outcome="failed") == failed0 + 1
    assert value(after, "release_server_reports", "release_server_reports_total", outcome="duplicate") == dup0 + 1
    assert value(after, "release_server_bytes_served", "release_server_bytes_served_total",
                 route="tuf_metadata") == bytes0 + len(ts.data)
    assert value(after, "release_server_http_requests", "release_server_http_requests_total",
                 method="POST", route="/api/v1/updates/check", status="2xx") >= 2
    # state read from the database
    assert value(after, "release_server_failure_groups_open") == 1
    assert tickets and all(value(after, "release_server_tickets", status=s, kind=k) >= 1 for s, k in tickets)
    assert value(after, "release_server_outbox_depth") >= 1
    assert value(after, "release_server_outbox_oldest_age_seconds") >= 119
    for state in ("draft", "running", "paused", "halted", "completed"):
        assert value(after, "release_server_rollouts", state=state) is not None
    for role in ("root", "targets", "snapshot", "timestamp", "bins"):
        left = value(after, "release_server_tuf_role_expires_in_seconds", role=role)
        assert left is not None and left > 0, role
    assert 0 < value(after, "release_server_tuf_role_expires_in_seconds", role="timestamp") <= 86400
    assert value(after, "release_server_worker_lease_held", holder="node-1:4242:abcd") == 1
    assert 0 < value(after, "release_server_worker_lease_expires_in_seconds") <= 60
    assert value(after, "release_server_worker_job_runs", "release_server_worker_job_runs_total",
                 job="metrics-probe-ok") == 1
    assert value(after, "release_server_worker_job_failures", "release_server_worker_job_failures_total",
                 job="metrics-probe-bad") == 1
    assert value(after, "release_server_worker_job_failures", "release_server_worker_job_failures_total",
                 job="metrics-probe-ok") == 0
    assert value(after, "release_server_worker_job_last_duration_seconds", job="metrics-probe-ok") >= 0


def test_rollout_failure_rate_is_exported(app: Any, client: Any, fleet: dict[str, Any], auth: Any) -> None:
    staff = auth.headers("publisher")
    assert publish(client, staff, "server", "1.1", channels=["stable"]).status_code == 201
    ro = client.post("/api/v1/rollouts", json={"component": "server", "version": "1.1", "channel": "stable"},
                     headers=staff)
    assert ro.status_code == 201, ro.json
    assert client.post(f"/api/v1/rollouts/{ro.json['id']}/start", json={"percent": 100}, headers=staff).status_code == 200
    from release_server.db import db
    from release_server.rollouts.models import Rollout

    with app.app_context():
        row = db.session.get(Rollout, ro.json["id"])
        row.attempts, row.failures = 10, 1
        db.commit()
    fams = scrape(client)
    assert value(fams, "release_server_rollouts", state="running") == 1
    assert value(fams, "release_server_rollout_failure_rate", rollout=str(ro.json["id"]), component="server",
                 version="1.1", state="running") == pytest.approx(0.1)


def test_metrics_access_token_or_loopback(app: Any, client: Any) -> None:
    away = {"environ_base": {"REMOTE_ADDR": "10.1.2.3"}}
    r = client.get("/metrics", **away)
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    # a proxy on this host connects from loopback for anyone: not enough
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert client.get("/metrics", headers={header: "203.0.113.7"}).status_code == 403
    app.config["METRICS_TOKEN"] = "s3cret-metrics"
    r = client.get("/metrics")  # loopback is not enough once a token is set
    assert r.status_code == 401 and r.json["error"]["field"] == "Authorization"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-metrics"}).status_code == 401
    scrape(client, headers={"Authorization": "Bearer s3cret-metrics"}, **away)


def test_counters_add_up_across_gunicorn_workers(client: Any, fleet: dict[str, Any], live_server: Any) -> None:
    b = fleet["bearer"]
    session = requests.Session()
    n = 24
    for _ in range(n):  # two workers answer these
        r = session.post(live_server.url + "/api/v1/updates/check", json={"installed": {"server": "1.0"}}, headers=b)
        assert r.status_code == 200
    text = session.get(live_server.url + "/metrics").text
    fams = families(text)
    assert value(fams, "release_server_checks", "release_server_checks_total", result="nothing_new") == n
    assert value(fams, "release_server_tuf_role_expires_in_seconds", role="timestamp") > 0


# ---------------------------------------------------------------- health

def test_healthz_and_readyz_when_all_is_well(client: Any, root_v1: bytes) -> None:
    assert client.get("/healthz").json["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "ready"
    assert {c["name"] for c in r.json["checks"]} == {"database", "migrations", "storage", "signing keys",
                                                       "tuf expiry"}


def failing(client: Any) -> dict[str, dict[str, Any]]:
    r = client.get("/readyz")
    assert r.status_code == 503, r.json
    assert r.json["status"] == "not ready"
    return {c["name"]: c for c in r.json["checks"] if not c["ok"]}


def test_readyz_without_a_tuf_root(client: Any) -> None:
    bad = failing(client)
    assert list(bad) == ["signing keys"] and "tuf bootstrap" in bad["signing keys"]["fix"]


def test_readyz_when_an_online_key_is_missing(app: Any, client: Any, root_v1: bytes) -> None:
    from pathlib import Path

    from release_server.signing.keys import key_dir

    for pem in key_dir(app.config, app.instance_path).glob("snapshot-*.pem"):
        pem.unlink()
    app.extensions.pop("health_keys_cache", None)
    bad = failing(client)
    assert list(bad) == ["signing keys"] and "snapshot" in bad["signing keys"]["detail"]
    assert Path(app.instance_path).exists()


def test_readyz_when_a_tuf_role_nears_expiry(app: Any, client: Any, root_v1: bytes) -> None:
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.signing.models import TufRole

    with app.app_context():
        db.session.get(TufRole, "timestamp").expires = utcnow() + timedelta(minutes=30)
        db.commit()
    bad = failing(client)
    assert list(bad) == ["tuf expiry"] and "timestamp" in bad["tuf expiry"]["detail"]
    assert "tuf refresh" in bad["tuf expiry"]["fix"]


def test_readyz_when_a_migration_is_missing(app: Any, client: Any, root_v1: bytes) -> None:
    import sqlalchemy as sa

    from release_server.db import db
    from release_server.migrations import script_heads, script_directory

    head = next(h for h in script_heads() if script_directory().get_revision(h).down_revision)
    parent = script_directory().get_revision(head).down_revision
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("update alembic_version set version_num = :p where version_num = :h"),
                         {"p": parent, "h": head})
        try:
            bad = failing(client)
        finally:
            with db.engine.begin() as conn:
                conn.execute(sa.text("update alembic_version set version_num = :h where version_num = :p"),
                             {"p": parent, "h": head})
    assert list(bad) == ["migrations"] and head in bad["migrations"]["detail"]
    assert "db upgrade" in bad["migrations"]["fix"]


def test_readyz_when_blob_storage_is_unreachable(app: Any, client: Any, root_v1: bytes) -> None:
    from conftest import free_port

    from release_server.storage.s3 import S3Storage

    good = app.extensions["storage"]
    app.extensions["storage"] = S3Storage(bucket="gone", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                          access_key_id="x", secret_access_key="x")
    try:
        bad = failing(client)
    finally:
        app.extensions["storage"] = good
    assert "storage" in bad and "STORAGE_BACKEND" in bad["storage"]["fix"]
    assert "database" not in bad and "migrations" not in bad


def test_readyz_when_the_database_is_unreachable(tmp_path: Any) -> None:
    from conftest import free_port

    from release_server import create_app

    app = create_app({"INSTANCE_PATH": str(tmp_path / "inst"), "SECRET_KEY": "x",
                      "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none"})
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200  # the process itself answers
        bad = failing(client)
        assert "database" in bad and "DATABASE_URL" in bad["database"]["fix"]
    finally:
        close_app(app)


# ---------------------------------------------------------------- request ids and logs

def test_request_id_is_echoed_and_a_sane_one_kept(client: Any) -> None:
    r = client.get("/healthz")
    rid = r.headers["X-Request-ID"]
    assert len(rid) == 32
    assert client.get("/healthz").headers["X-Request-ID"] != rid
    assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"}).headers["X-Request-ID"] == "lb-7f3a.42"
    for bad in ("x" * 300, "bad id with spaces", "<script>", "\u00e9t\u00e9"):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert got != bad and len(got) == 32
    # on API errors too
    r = client.get("/api/v1/components", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "abc-123"


@pytest.fixture
def json_log() -> Any:
    from release_server.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_one_json_line_per_request_and_per_job(app: Any, client: Any, json_log: io.StringIO) -> None:
    from release_server.worker import WorkerJob, run_job

    client.get("/healthz", headers={"X-Request-ID": "req-1"})
    with app.app_context():
        run_job(WorkerJob("log-probe", 60, lambda: None))
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    requests_ = [x for x in lines if x["logger"] == "release_server.request"]
    assert len(requests_) == 1
    line = requests_[0]
    assert line["request_id"] == "req-1" and line["method"] == "GET" and line["path"] == "/healthz"
    assert line["status"] == 200 and line["duration_ms"] >= 0 and line["route"] == "/healthz"
    jobs = [x for x in lines if x["logger"] == "release_server.job"]
    assert len(jobs) == 1 and jobs[0]["job"] == "log-probe" and jobs[0]["ok"] is True
    assert jobs[0]["duration_s"] >= 0 and jobs[0]["run_id"]


def test_no_secret_in_any_log_line(app: Any, client: Any, auth: Any, json_log: io.StringIO) -> None:
    """Tokens, passwords and mail bodies stay out of the log, however they pass through."""
    from release_server.accounts import services
    from release_server.db import db
    from release_server.support import mailout

    admin = auth.headers("admin")
    admin_token = admin["Authorization"].split()[1]
    password = "correct horse battery staple 42"
    with app.app_context():
        services.create_user(db.session, "olga", password, "support")
        db.commit()
    # a console login with the password (right and wrong), API calls with tokens
    page = client.get("/console/login")
    import re

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    client.post("/console/login", data={"username": "olga", "password": password + "x", "csrf_token": csrf})
    client.post("/console/login", data={"username": "olga", "password": password, "csrf_token": csrf})
    client.get("/api/v1/components", headers=admin)
    client.get("/api/v1/components", headers={"Authorization": "Bearer rst_abcdefgh_" + "z" * 32})
    created = client.post("/api/v1/tokens", json={"name": "ci", "role": "publisher"}, headers=admin).json["token"]
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    enrollment = client.post("/api/v1/customers/Acme/enrollment-tokens", json={}, headers=admin).json["token"]
    enrolled = client.post("/api/v1/enroll", json={"enrollment_token": enrollment, "name": "x",
                                                   "channel": "stable", "installed": {}}).json
    # a ticket with a mail to the customer, delivered by the outbox (console backend)
    body = "The invoice printer on floor 3 prints blank pages since Monday (mail body marker 9931)."
    r = client.post("/api/v1/tickets", json={"kind": "incident", "subject": "Printer", "description": body,
                                             "customer": "Acme", "requester_email": "it@acme.example"},
                    headers=admin)
    assert r.status_code == 201, r.json
    reply = client.post(f"/api/v1/tickets/{r.json['number']}/replies", json={"body": "Reply marker 5512: try again"},
                        headers=admin)
    assert reply.status_code in (200, 201), reply.json
    sink = mailout_backend_sink()
    with app.app_context():
        mailout.deliver_outbox(backend=sink)
    assert sink.sent  # mails went out (their bodies hold the markers)
    # a library or our own code that logs a secret by mistake is masked too
    logging.getLogger("somewhere").warning("calling with token=%s password=%s", created, password)
    logging.getLogger("somewhere").warning("header Authorization: Bearer %s", enrolled["token"])

    text = json_log.getvalue()
    assert "release_server.request" in text  # the lines are there ...
    for secret in (admin_token, created, enrollment, enrolled["token"], password, "z" * 32):
        assert secret not in text, secret  # ... but no secret in any of them
    assert "mail body marker 9931" not in text and "Reply marker 5512" not in text
    assert "[redacted]" in text


def mailout_backend_sink() -> Any:
    from release_server.support.mailbackends import MailBackend

    class Sink(MailBackend):
        sent: list[Any] = []

        def send(self, message: Any, on_accepted: Any = None) -> None:
            self.sent.append(message)
            if on_accepted is not None:
                on_accepted()

    return Sink()


@pytest.mark.parametrize("line", [
    "token rst_abcd1234_AbCdEfGhIjKlMnOpQrStUvWx",
    "Authorization: Bearer abc.def.ghi",
    '{"password": "hunter2-hunter2"}',
    "password=hunter2-hunter2&user=x",
    "SMTP_PASSWORD = 'hunter2-hunter2'",
    "enroll with rse_0a1b2c3d_verysecretpart",
])
def test_redact_masks_credentials(line: str) -> None:
    from release_server.logs import redact

    out = redact(line)
    assert "hunter2-hunter2" not in out and "AbCdEfGhIjKlMnOpQrStUvWx" not in out and "abc.def.ghi" not in out
    assert "verysecretpart" not in out and "[redacted]" in out
