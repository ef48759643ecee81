"""The scale-out layout under load and faults: ``scripts/cluster`` starts three gunicorn nodes
and two workers on one PostgreSQL database and moto's S3 server, behind Debian's nginx with the
shipped configuration; every test here goes through that one cluster (started once per module).

Nothing a node keeps in memory may disagree with another node for long: TUF versions,
ticket numbers, report ids, credentials, the catalog, login throttles, the worker lease
and the outbox's claims all live in PostgreSQL. Skipped without PostgreSQL, nginx or
moto, unless REQUIRE_POSTGRES / REQUIRE_NGINX / REQUIRE_S3 make that a failure (CI).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from conftest import PG_ADMIN_URL, free_port, skip_or_fail
from factories import make_tarball

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "cluster"
LEASE_SECONDS = 4.0
TICK_SECONDS = 0.5
pytestmark = [pytest.mark.postgres, pytest.mark.s3]

sys.path.insert(0, str(ROOT / "scripts" / "bench"))
import failure_storm  # noqa: E402


# ---------------------------------------------------------------- an SMTP sink that is slow on purpose

class Sink:
    """Records every accepted message; each recipient takes a moment, so a worker can die mid-send.

    The delay is before DATA: a sender killed during it never delivered the message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        await asyncio.sleep(0.15)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def message_ids(self) -> Counter:
        with self.lock:
            return Counter(m["Message-ID"] for m in self.messages)


# ---------------------------------------------------------------- the cluster

class Cluster:
    def __init__(self, state_dir: Path, env: dict[str, str]) -> None:
        self.dir = state_dir
        self.env = env
        self.refresh()
        creds = (state_dir / "admin-credentials").read_text()
        self.admin = {"Authorization": "Bearer " + re.search(r"API token:\s*(\S+)", creds).group(1)}
        self.engine = sa.create_engine(self.state["database_url"])

    def refresh(self) -> None:
        self.state = json.loads((self.dir / "cluster.json").read_text())
        self.url = self.state["nginx"]
        self.nodes = {n["name"]: n["url"] for n in self.state["nodes"]}

    def run(self, *args: str) -> None:
        out = subprocess.run([str(CLUSTER), *args, "--state-dir", str(self.dir)], env=self.env, capture_output=True,
                             text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        self.refresh()

    def pid(self, name: str) -> int | None:
        return next(p["pid"] for p in self.state["processes"] if p["name"] == name)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def app(self, tmp: Path) -> Any:
        """A local app on the cluster's database and S3 store, for set-up and checks."""
        from release_server import create_app

        env = {}
        for line in (self.dir / "node.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = v
        config = {"INSTANCE_PATH": str(tmp), "DATABASE_URL": env["DATABASE_URL"], "SECRET_KEY": "x",
                  "STORAGE_BACKEND": "s3"}
        for k, v in env.items():
            if k.startswith("RELEASE_SERVER_S3_"):
                config[k[len("RELEASE_SERVER_"):]] = v
        return create_app(config)


def _needs() -> None:
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        skip_or_fail("REQUIRE_NGINX", "nginx is not installed (apt-get install nginx)")
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        skip_or_fail("REQUIRE_POSTGRES", f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e.__class__.__name__}")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        skip_or_fail("REQUIRE_S3", "moto[server] is not installed")


@pytest.fixture(scope="module")
def sink() -> Any:
    from aiosmtpd.controller import Controller

    inbox = Sink()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield inbox, ctl.port
    ctl.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, sink: Any) -> Any:
    _needs()
    state_dir = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_") and k != "DATABASE_URL"}
    env.update(CLUSTER_POSTGRES_ADMIN_URL=PG_ADMIN_URL, RELEASE_SERVER_MAIL_BACKEND="smtp",
               RELEASE_SERVER_SMTP_HOST="127.0.0.1", RELEASE_SERVER_SMTP_PORT=str(sink[1]),
               RELEASE_SERVER_SMTP_TIMEOUT="5", RELEASE_SERVER_MAIL_OUTBOX_INTERVAL="1",
               RELEASE_SERVER_SUPPORT_ADDRESS="help@vendor.example", RELEASE_SERVER_LOGIN_MAX_FAILURES="3",
               RELEASE_SERVER_LOG_LEVEL="WARNING")
    out = subprocess.run([str(CLUSTER), "up", "--state-dir", str(state_dir), "--lease-seconds", str(LEASE_SECONDS),
                          "--tick", str(TICK_SECONDS), "--export-interval", "1"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    c = Cluster(state_dir, env)
    try:
        yield c
    finally:
        c.engine.dispose()
        down = subprocess.run([str(CLUSTER), "down", "--state-dir", str(state_dir)], env=env, capture_output=True,
                              text=True, timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        state = json.loads((state_dir / "cluster.json").read_text())
        assert state["state"] == "down" and all(p["pid"] is None for p in state["processes"])


def publish(http: requests.Session, url: str, headers: dict, component: str, version: str) -> requests.Response:
    meta = {"version": version, "channels": ["beta"], "changelog": f"release {version}"}
    files = {"metadata": (None, json.dumps(meta)),
             "artifact": (f"{component}-{version}.tar.gz", make_tarball({"v": version}))}
    return http.post(f"{url}/api/v1/components/{component}/releases", files=files, headers=headers, timeout=120)


def enroll(url: str, admin: dict, customer: str, installed: dict[str, str]) -> dict:
    tok = requests.post(f"{url}/api/v1/customers/{customer}/enrollment-tokens", json={}, headers=admin, timeout=30)
    assert tok.status_code == 201, tok.text
    r = requests.post(f"{url}/api/v1/enroll", json={"enrollment_token": tok.json()["token"], "name": "office",
                                                    "channel": "beta", "installed": installed}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def check(url: str, token: str, installed: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}/api/v1/updates/check", json={"installed": installed},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def customer(cluster: Cluster, name: str) -> None:
    r = requests.post(f"{cluster.url}/api/v1/customers", json={"name": name, "contact_email": f"it@{name}.example"},
                      headers=cluster.admin, timeout=30)
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------- the tests

def test_cluster_answers_through_nginx_on_every_node(cluster: Cluster) -> None:
    assert len(cluster.nodes) == 3
    for url in [cluster.url, *cluster.nodes.values()]:
        assert requests.get(url + "/readyz", timeout=10).status_code == 200
    holder = cluster.scalar("select holder from worker_leases where name = 'worker' and expires_at > now()")
    workers = {p["pid"] for p in cluster.state["processes"] if p["kind"] == "worker"}
    assert len(workers) == 2 and int(holder.split(":")[1]) in workers  # exactly one of the two holds the lease


def test_two_nodes_publish_at_once_and_a_stock_client_sees_every_release(cluster: Cluster, tmp_path: Path) -> None:
    from tuf.api.metadata import Metadata
    from tuf.ngclient import Updater

    r = requests.post(f"{cluster.url}/api/v1/components", json={"name": "server"}, headers=cluster.admin, timeout=30)
    assert r.status_code == 201, r.text
    errors: list[str] = []
    start = threading.Barrier(2)

    def publisher(i: int, url: str) -> None:
        start.wait()
        with requests.Session() as http:
            for n in range(20):
                resp = publish(http, url, cluster.admin, "server", f"{i + 1}.{n}")
                if resp.status_code != 201:
                    errors.append(f"{i + 1}.{n}: {resp.status_code} {resp.text[:300]}")

    threads = [threading.Thread(target=publisher, args=(i, cluster.nodes[f"node-{i + 1}"])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    # the lease holder exports the repository; nginx serves the export: wait for it to catch up
    live = Metadata.from_bytes(requests.get(cluster.nodes["node-3"] + "/tuf/metadata/timestamp.json", timeout=10)
                               .content).signed.version
    deadline = time.monotonic() + 30
    while True:
        static = requests.get(cluster.url + "/tuf/metadata/timestamp.json", timeout=10)
        if static.status_code == 200 and Metadata.from_bytes(static.content).signed.version >= live:
            break
        assert time.monotonic() < deadline, "the static export did not catch up"
        time.sleep(0.2)
    root_v1 = Path(cluster.state["root_json"]).read_bytes()
    (tmp_path / "cache").mkdir()
    (tmp_path / "dl").mkdir()
    updater = Updater(str(tmp_path / "cache"), f"{cluster.url}/tuf/metadata/", str(tmp_path / "dl"),
                      f"{cluster.url}/tuf/targets/", bootstrap=root_v1)
    updater.refresh()
    for i in range(2):
        for n in range(20):
            info = updater.get_targetinfo(f"server/server-{i + 1}.{n}.tar.gz")
            assert info is not None and info.custom["version"] == f"{i + 1}.{n}"
    info = updater.get_targetinfo("server/server-2.19.tar.gz")
    with tarfile.open(updater.download_target(info)) as tar:  # verified by TUF on the way
        assert tar.extractfile("v").read() == b"2.19"
    # every snapshot version from 1 on, each signed by the snapshot key and never going back
    root = Metadata.from_bytes(root_v1)
    meta_dir = Path(cluster.state["state_dir"]) / "srv" / "tuf" / "metadata"
    versions = sorted(int(p.name.split(".")[0]) for p in meta_dir.glob("*.snapshot.json"))
    # (the export may already hold a newer one than the timestamp read above: a node's lazy re-sign)
    assert versions == list(range(1, versions[-1] + 1)) and versions[-1] >= max(live, 41)
    previous: dict[str, int] = {}
    for v in versions:
        snap = Metadata.from_bytes((meta_dir / f"{v}.snapshot.json").read_bytes())
        root.verify_delegate("snapshot", snap)
        for name, meta in snap.signed.meta.items():
            assert meta.version >= previous.get(name, 0)
            previous[name] = meta.version
            assert (meta_dir / f"{meta.version}.{name}").exists()


def test_revocation_on_one_node_holds_on_the_others_and_enrollment_at_once(cluster: Cluster) -> None:
    a, b, c = (cluster.nodes[f"node-{i}"] for i in (1, 2, 3))
    customer(cluster, "revokeco")
    inst = enroll(a, cluster.admin, "revokeco", {"server": "1.0"})
    assert check(c, inst["token"], {"server": "1.0"}).status_code == 200  # enrolled on A, checks on C at once
    for _ in range(6):  # every gunicorn process of B and C has the credential cached now
        assert check(b, inst["token"], {"server": "1.0"}).status_code == 200
        assert check(c, inst["token"], {"server": "1.0"}).status_code == 200
    r = requests.post(f"{a}/api/v1/installations/{inst['installation_id']}/revoke", headers=cluster.admin, timeout=30)
    assert r.status_code == 200, r.text
    revoked_at = time.monotonic()
    # each gunicorn process of B and C learns it on its own: wait until eight checks in a row on each are refused
    while not all(check(url, inst["token"], {"server": "1.0"}).status_code == 401 for url in (b, c) * 8):
        assert time.monotonic() - revoked_at < 5.0, "B or C still accepts a token revoked on node A"
        time.sleep(0.05)
    assert time.monotonic() - revoked_at < 5.0
    # a process that re-read the versions just before the revocation may serve for one more
    # CATALOG_RECHECK_SECONDS (1 s); past twice that, no process anywhere may accept it
    time.sleep(max(0.0, revoked_at + 2.0 - time.monotonic()))
    for _ in range(6):  # and it stays refused everywhere
        for url in (b, c, cluster.url):
            assert check(url, inst["token"], {"server": "1.0"}).status_code == 401


def test_tickets_created_at_once_through_three_nodes_get_gap_free_numbers(cluster: Cluster) -> None:
    customer(cluster, "ticketco")
    urls = list(cluster.nodes.values())

    def create(i: int) -> str:
        r = requests.post(f"{urls[i % 3]}/api/v1/tickets", json={"subject": f"request {i}", "customer": "ticketco"},
                          headers=cluster.admin, timeout=60)
        assert r.status_code == 201, r.text
        return r.json()["number"]

    with ThreadPoolExecutor(24) as pool:
        numbers = list(pool.map(create, range(200)))
    values = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    assert len(set(numbers)) == 200
    assert values == list(range(values[0], values[0] + 200))


def test_report_storm_while_a_node_is_killed_stores_each_report_once(cluster: Cluster, tmp_path: Path) -> None:
    from release_server.db import db

    app = cluster.app(tmp_path / "instance")
    try:
        with app.app_context():
            fleet = failure_storm.build_fleet(db.session, 6, 60)
        plan = failure_storm.make_plan(fleet, 600)
        before = cluster.scalar("select count(*) from update_reports")
        result: dict[str, Any] = {}
        storm = threading.Thread(target=lambda: result.update(r=failure_storm.run_storm(cluster.url, plan, 8, 12)))
        storm.start()
        deadline = time.monotonic() + 60
        while cluster.scalar("select count(*) from update_reports") - before < 100:
            assert time.monotonic() < deadline and storm.is_alive(), "the storm did not get going"
            time.sleep(0.05)
        cluster.run("kill", "node-2", "--signal", "KILL")
        assert cluster.pid("node-2") is None
        cluster.run("start", "node-2")
        storm.join(300)
        res = result["r"]
        assert not res.errors, res.errors[:5]
        # Every report was answered, and none was answered "accepted" twice. A request the killed
        # node stored but could not answer is retried and its reports come back as duplicates, so
        # the accepted count may fall short of the plan; what was stored may not.
        planned = {str(uuid.UUID(r["id"])) for _, reports in plan.batches for r in reports}
        assert len(planned) == plan.unique_reports
        assert res.answered_ids == planned
        assert max(res.accepted_ids.values()) == 1 and set(res.accepted_ids) <= planned
        assert res.accepted == plan.unique_reports or res.retries > 0
        assert cluster.scalar("select count(*) from update_reports") - before == plan.unique_reports
        with app.app_context():
            assert failure_storm.verify(db.session, plan) == []
        assert requests.get(cluster.nodes["node-2"] + "/healthz", timeout=10).status_code == 200
    finally:
        app.extensions["seen_buffer"].stop()
        app.extensions["db_engine"].dispose()


def _holder(cluster: Cluster) -> str | None:
    holder = cluster.scalar("select holder from worker_leases where name = 'worker' and expires_at > now()")
    if holder is None:
        return None
    pid = int(holder.split(":")[1])
    return next((p["name"] for p in cluster.state["processes"] if p["pid"] == pid), None)


def test_lease_holder_killed_the_other_worker_takes_over_and_every_mail_goes_once(cluster: Cluster,
                                                                                  sink: Any) -> None:
    inbox, _ = sink
    customer(cluster, "mailco")
    holder = _holder(cluster)
    assert holder in ("worker-1", "worker-2")
    other = "worker-2" if holder == "worker-1" else "worker-1"
    already = sum(inbox.message_ids().values())
    for i in range(16):  # each new ticket queues its acknowledgement to its requester
        r = requests.post(f"{cluster.url}/api/v1/tickets", json={"subject": f"mail {i}", "customer": "mailco",
                                                                 "requester_email": f"user{i}@mailco.example"},
                          headers=cluster.admin, timeout=30)
        assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while sum(inbox.message_ids().values()) - already < 4:
        assert time.monotonic() < deadline, "the outbox is not being sent"
        time.sleep(0.02)
    cluster.run("kill", holder, "--signal", "KILL")
    killed_at = time.monotonic()
    # what the killed worker had claimed: one of these may have reached the server before the kill without
    # its "sent" being committed (no transaction spans SMTP and the database)
    with cluster.engine.connect() as conn:
        in_flight = {f"<{mid}>" for (mid,) in conn.execute(sa.text(
            "select message_id from mail_messages where direction = 'out' and status = 'sending'"))}
    while _holder(cluster) != other:
        assert time.monotonic() - killed_at < LEASE_SECONDS + 3 * TICK_SECONDS + 2, "no takeover within the lease"
        time.sleep(0.1)
    deadline = time.monotonic() + 90
    while cluster.scalar("select count(*) from mail_messages where direction = 'out' "
                         "and status in ('pending', 'sending')"):
        assert time.monotonic() < deadline, "queued mail was not all sent"
        time.sleep(0.2)
    with cluster.engine.connect() as conn:
        rows = conn.execute(sa.text("select message_id, status from mail_messages where direction = 'out'")).all()
    sent = {f"<{mid}>" for mid, status in rows if status == "sent"}
    assert not [r for r in rows if r[1] not in ("sent", "suppressed")]
    got = inbox.message_ids()
    assert set(got) == sent  # every queued mail arrived
    # and none twice, except at most one mail the killed worker was handing over at the moment of the kill:
    # it arrives again under the same Message-ID, so the recipient's mail system can drop the copy
    twice = [mid for mid, n in got.items() if n > 1]
    assert len(twice) <= 1 and set(twice) <= in_flight, (twice, in_flight)
    assert all(got[mid] == 2 for mid in twice)
    assert len(sent) >= 16
    cluster.run("start", holder)  # whole again for the tests after this one


def test_a_node_with_an_older_catalog_in_memory_never_offers_a_yanked_release(cluster: Cluster) -> None:
    a, c = cluster.nodes["node-1"], cluster.nodes["node-3"]
    r = requests.post(f"{cluster.url}/api/v1/components", json={"name": "web"}, headers=cluster.admin, timeout=30)
    assert r.status_code == 201, r.text
    with requests.Session() as http:
        for v in ("1.0", "2.0"):
            assert publish(http, a, cluster.admin, "web", v).status_code == 201
    customer(cluster, "yankco")
    old = enroll(a, cluster.admin, "yankco", {"web": "1.0"})
    new = enroll(a, cluster.admin, "yankco", {"web": "2.0"})
    for _ in range(6):  # both processes of node C hold the catalog with 2.0 in it
        offers = check(c, old["token"], {"web": "1.0"}).json()["offers"]
        assert [(o["component"], o["version"]) for o in offers] == [("web", "2.0")]
    cluster.run("kill", "node-3", "--signal", "STOP")  # node C keeps its memory but misses the yank
    try:
        r = requests.post(f"{a}/api/v1/components/web/releases/2.0/yank", json={"reason": "corrupts data"},
                          headers=cluster.admin, timeout=30)
        assert r.status_code == 200, r.text
        time.sleep(1.2)  # longer than CATALOG_RECHECK_SECONDS: C's catalog is now older than the database
    finally:
        cluster.run("kill", "node-3", "--signal", "CONT")
    for _ in range(10):
        offers = check(c, old["token"], {"web": "1.0"}).json()["offers"]
        assert [o["version"] for o in offers] == []
        down = check(c, new["token"], {"web": "2.0"}).json()["offers"]
        assert [(o["version"], o["downgrade"]) for o in down] == [("1.0", True)]


def test_login_throttling_holds_for_one_address_across_nodes(cluster: Cluster) -> None:
    from requests_toolbelt.adapters.source import SourceAddressAdapter

    def attempt(url: str, password: str, headers: dict | None = None, source: str | None = None) -> int:
        with requests.Session() as http:
            if source:  # another loopback address: another client as far as nginx can tell
                http.mount("http://", SourceAddressAdapter(source))
            page = http.get(f"{url}/console/login", timeout=30, headers=headers)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            return http.post(f"{url}/console/login", data={"username": "admin", "password": password,
                                                           "csrf_token": token},
                             headers=headers, allow_redirects=False, timeout=30).status_code

    for url in cluster.nodes.values():  # three failures, one on each node (LOGIN_MAX_FAILURES=3)
        assert attempt(url, "wrong password") == 401
    password = re.search(r"password:\s*(\S+)", (cluster.dir / "admin-credentials").read_text()).group(1)
    for url in [cluster.url, *cluster.nodes.values()]:
        assert attempt(url, password) == 429  # every node throttles the address now
    # a forged X-Forwarded-For does not give a client a fresh address: nginx appends the real one
    assert attempt(cluster.url, password, {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"}) == 429
    # while another client behind the same nginx is not throttled: the nodes see its own address
    # (TRUSTED_PROXIES=1), not nginx's
    assert attempt(cluster.url, password, source="127.0.0.2") == 302
