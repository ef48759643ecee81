"""Demo data: ``release-server demo`` fills an empty instance with a believable month of work.

Everything is made through the same services the API and the console use (publishing,
enrollment, reports with their hooks, rollouts, the support desk), so the failure groups,
their tickets and the rollout that halted itself come from the real rules. Afterwards
the dates are moved back over the last month (installations enrolled, reports received,
tickets opened) and the days of adoption counted, so the adoption and ticket charts have a
history to show.

What it makes: four components with releases; five customers (one of them Russian) with
installations and one portal user each; a completed rollout, a running one, a paused one,
a draft, and one halted by failures (its failure groups opened tickets for the customers
hit, and an internal problem ticket); tickets of all four kinds in every status, with
replies, a request for information, internal notes and a screenshot.
"""
from __future__ import annotations

import io
import secrets
import struct
import tarfile
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .models_common import utcnow

COMPONENTS = {
    "server": "Application server (business logic, API)",
    "web": "Web interface",
    "db-schema": "Database schema migrations",
    "agent": "The update agent itself",
}

CHANGELOGS = {
    ("server", "2.3.0"): "### Added\n- Quarterly sales report\n- Export of invoices to PDF/A\n",
    ("server", "2.3.1"): "### Fixed\n- Invoice numbers no longer skip after a restart\n- Faster customer search "
                         "(**3x** on large databases)\n",
    ("server", "2.4.0"): "### Added\n- Warehouse module: stock transfers between sites\n\n### Changed\n- Needs "
                         "database schema **1.42** (migrates on install)\n",
    ("server", "2.4.1"): "### Fixed\n- The 2.4.0 migration failed on databases with archived warehouses\n",
    ("web", "5.1.0"): "### Changed\n- New navigation menu\n",
    ("web", "5.2.0"): "### Added\n- Dark theme\n- Keyboard shortcuts (press `?`)\n\n### Fixed\n- Date pickers in "
                      "Safari\n",
    ("db-schema", "1.41.0"): "- Indexes for the sales report\n",
    ("db-schema", "1.42.0"): "- Warehouse tables\n",
    ("db-schema", "1.42.1"): "### Fixed\n- Index creation no longer locks the *invoices* table on large databases\n",
    ("agent", "1.0.0"): "- First release of the update agent\n",
    ("agent", "1.1.0"): "- Honours maintenance windows\n- Smaller log uploads\n",
}

#: the claimed component and its three publishers (keys made by the demo, threshold 2)
CLAIMED = "payments"
PUBLISHERS = ("anna", "boris", "chen")
CHANGELOGS[(CLAIMED, "1.0.0")] = "- Card payments through the new acquirer\n"
CHANGELOGS[(CLAIMED, "1.1.0")] = "### Added\n- SEPA direct debit\n"

CUSTOMERS = [
    # name, contact, domain, portal user (email, name), number of installations
    ("Nordwind Logistics", "it@nordwind.example", "nordwind.example", ("anna.berg@nordwind.example", "Anna Berg"), 6),
    ("ООО «Ромашка»", "support@romashka.example", "romashka.example", ("i.petrova@romashka.example",
                                                                       "Ирина Петрова"), 5),
    ("Aurora Retail", "ops@aurora.example", "aurora.example", ("tom.hale@aurora.example", "Tom Hale"), 4),
    ("Baltic Freight", "admin@balticfreight.example", "balticfreight.example",
     ("lina.ozola@balticfreight.example", "Lina Ozola"), 4),
    ("Kama Pharma", "helpdesk@kamapharma.example", "kamapharma.example",
     ("d.safin@kamapharma.example", "Damir Safin"), 3),
]
#: a customer's default language and time zone for its contacts (by mail domain)
CUSTOMER_DEFAULTS = {"nordwind.example": ("en", "Europe/Berlin"), "romashka.example": ("ru", "Europe/Moscow"),
                     "aurora.example": ("en", "Europe/London"), "balticfreight.example": ("en", "Europe/Riga"),
                     "kamapharma.example": ("ru", "Europe/Samara")}
SITES = ["Head office", "Warehouse", "Branch North", "Branch South", "Accounting", "Test server"]
MIGRATION_LOG = """2024-05-12 02:14:07 INFO  pre-install: backup of database crm (412 MB) done
2024-05-12 02:14:31 INFO  applying migration 0142_warehouse_transfers
2024-05-12 02:14:33 ERROR psycopg.errors.ForeignKeyViolation: insert or update on table "stock_transfer"
  violates foreign key constraint "fk_stock_transfer_site" DETAIL: Key (site_id)=(17) is not present in "site".
2024-05-12 02:14:33 ERROR post-install hook failed (exit 1); rolling back to 2.3.1
2024-05-12 02:14:41 INFO  health check of 2.3.1 passed"""


@dataclass
class DemoSummary:
    """What the demo made, for the command's output and for tests."""

    staff: list[tuple[str, str, str]] = field(default_factory=list)  # (username, password, role)
    customers: list[tuple[str, str, str]] = field(default_factory=list)  # (email, password, customer)
    halted_rollout_id: int | None = None
    running_rollout_id: int | None = None
    draft_rollout_id: int | None = None
    failure_ticket: str | None = None  # a new failure ticket of the first customer
    tickets: dict[str, str] = field(default_factory=dict)  # kind -> a ticket number of the first customer
    other_customer_ticket: str | None = None  # a ticket of the second customer
    publisher_keys: Path | None = None  # where the claimed component's publisher keys were written


class DemoNotEmptyError(Exception):
    pass


def _tarball(component: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("VERSION", version), ("update.toml", f'component = "{component}"\nversion = "{version}"\n'),
                           (f"{component}/README", f"{component} {version}\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def screenshot_png(width: int = 480, height: int = 300) -> bytes:
    """A small PNG that looks like a screenshot of an error dialog (no image library needed)."""
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            if y < 28:
                px = (30, 64, 175)  # title bar
            elif 70 <= y < 230 and 60 <= x < 420:
                if 70 <= y < 96:
                    px = (185, 28, 28)  # dialog title
                elif 190 <= y < 216 and 300 <= x < 400:
                    px = (37, 99, 235)  # OK button
                elif 110 <= y < 170 and 80 <= x < 400 and (y - 110) % 18 < 6 and x < 400 - (y % 7) * 20:
                    px = (100, 116, 139)  # text lines
                else:
                    px = (255, 255, 255)
            elif 40 <= y < 60 and x % 120 < 100:
                px = (203, 213, 225)
            else:
                px = (241, 245, 249)
            row += bytes(px)
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def is_empty(session: Session) -> bool:
    from .fleet.models import Customer
    from .releases.models import Release
    from .support.models import Ticket

    return not any(session.scalar(select(func.count()).select_from(m)) for m in (Release, Customer, Ticket))


class _Builder:
    def __init__(self, session: Session, now: datetime, staff_password: str | None,
                 customer_password: str | None) -> None:
        from .storage import get_storage

        self.s = session
        self.now = now
        self.storage = get_storage()
        self.staff_password = staff_password
        self.customer_password = customer_password
        self.summary = DemoSummary()
        self.installations: dict[str, list[Any]] = {}
        self.customers: list[Any] = []
        self.customer_users: list[Any] = []

    # ------------------------------------------------------------ people
    def staff(self) -> None:
        from .accounts import services as accounts
        from .accounts.models import User

        for username, role, email in (("maria.release", "publisher", "maria@vendor.example"),
                                      ("oleg.support", "support", "oleg@vendor.example"),
                                      ("sara.support", "support", "sara@vendor.example")):
            if self.s.scalar(select(User).where(User.username == username)) is not None:
                continue
            password = self.staff_password or secrets.token_urlsafe(10)
            user = accounts.create_user(self.s, username, password, role, email)
            if username == "sara.support":  # the name customers see on her replies (the others show "Support team")
                from .support.desk import set_display_name

                set_display_name(self.s, user, "Sara, support")
            accounts.audit(self.s, "demo", "user.create", f"user:{username}", {"role": role})
            self.summary.staff.append((username, password, role))
        from .support import desk

        if not desk.canned_replies(self.s):
            desk.add_canned_reply(self.s, "Agent log, please",
                                  "Please send us the agent's diagnostic bundle: on the installation, run "
                                  "'client-agent collect-logs --ticket <this request's number>'.",
                                  "sara.support")

    # ------------------------------------------------------------ releases
    def releases(self) -> None:
        from .accounts.services import audit
        from .releases import services as releases
        from .releases.schemas import PublishMetadata

        for name, description in COMPONENTS.items():
            releases.create_component(self.s, name, description)
            audit(self.s, "demo", "component.create", f"component:{name}")
        plan = [("server", "2.3.0", ["beta", "stable"], {}), ("server", "2.3.1", ["beta", "stable"], {}),
                ("server", "2.4.0", ["beta", "stable"], {"db-schema": ">=1.42"}),
                ("server", "2.4.1", ["beta"], {"db-schema": ">=1.42"}),
                ("web", "5.1.0", ["beta", "stable"], {}), ("web", "5.2.0", ["beta", "stable"], {}),
                ("db-schema", "1.41.0", ["beta", "stable"], {}), ("db-schema", "1.42.0", ["beta", "stable"], {}),
                ("db-schema", "1.42.1", ["beta", "stable"], {}),
                ("agent", "1.0.0", ["beta", "stable"], {}), ("agent", "1.1.0", ["beta", "stable"], {})]
        for comp, version, channels, requires in plan:
            meta = PublishMetadata(version=version, channels=channels, changelog=CHANGELOGS[(comp, version)],
                                   requires=requires, critical=(comp, version) == ("server", "2.4.1"))
            p = releases.plan_publish(self.s, comp, meta)
            blob = self.storage.put_stream(io.BytesIO(_tarball(comp, version)))
            rel = releases.create_release(self.s, p, blob, f"{comp}-{version}.tar.gz", "maria.release")
            audit(self.s, "maria.release", "release.publish", f"release:{comp}/{rel.version}",
                  {"sha256": blob.sha256, "size": blob.size, "channels": channels})

    # ------------------------------------------------------------ a claimed component
    def claimed(self, root_keys: Path, key_dir: Path) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        from .accounts.services import audit
        from .releases import services as releases
        from .releases.schemas import PublishMetadata
        from .signing import ceremony, claims, publisher
        from .signing import keys as keys_mod
        from .signing.services import repository_ready

        if not repository_ready(self.s):
            return
        releases.create_component(self.s, CLAIMED, "Payments module: signed by its own team's keys, "
                                                   "never by the server")
        audit(self.s, "demo", "component.create", f"component:{CLAIMED}")
        signers = {}
        for name in PUBLISHERS:
            signer = keys_mod.generate_signer()
            keys_mod.write_private_file(key_dir / f"{name}.pem", keys_mod.private_pem(signer))
            pub = signer._private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)  # noqa: SLF001
            (key_dir / f"{name}.pem.pub").write_bytes(pub)
            signers[name] = signer
        claims.claim(self.s, CLAIMED, [s.public_key for s in signers.values()], 2,
                     root_signers=ceremony.load_root_keys(root_keys), actor="demo")
        audit(self.s, "demo", "component.claim", f"component:{CLAIMED}", {"threshold": 2})
        for version, who in (("1.0.0", PUBLISHERS[:2]), ("1.1.0", PUBLISHERS[:1])):
            changelog = CHANGELOGS[(CLAIMED, version)]
            body = _tarball(CLAIMED, version)
            meta = PublishMetadata(version=version, channels=["beta", "stable"] if version == "1.0.0" else ["beta"],
                                   changelog=changelog)
            blob = self.storage.put_stream(io.BytesIO(body))
            rel = releases.create_release(self.s, releases.plan_publish(self.s, CLAIMED, meta), blob,
                                          f"{CLAIMED}-{version}.tar.gz", "maria.release")
            role = publisher.publish_role(claims.publisher_state(self.s, CLAIMED), component=CLAIMED, version=version,
                                          filename=f"{CLAIMED}-{version}.tar.gz", sha256=blob.sha256,
                                          length=blob.size, channels=meta.channels, critical=False,
                                          min_from_version=None, requires={}, changelog=changelog)
            for name in who:
                role.sign(signers[name], append=True)
            claims.submit(self.s, CLAIMED, "publish", role.to_dict(), actor="maria.release", release=rel)
            audit(self.s, "maria.release", "release.publish", f"release:{CLAIMED}/{rel.version}",
                  {"sha256": blob.sha256, "size": blob.size, "channels": meta.channels})
        self.summary.publisher_keys = key_dir

    # ------------------------------------------------------------ fleet
    def fleet(self) -> None:
        from .accounts.services import audit
        from .fleet import services as fleet
        from .fleet.schemas import EnrollRequest
        from .support import customers as customer_users

        n = 0
        for c_index, (name, contact, domain, (email, person), count) in enumerate(CUSTOMERS):
            cust = fleet.create_customer(self.s, name, contact, [domain])
            cust.locale, cust.timezone = CUSTOMER_DEFAULTS.get(domain, (None, None))
            audit(self.s, "demo", "customer.create", f"customer:{cust.id}", {"name": name})
            self.customers.append(cust)
            password = self.customer_password or secrets.token_urlsafe(10)
            user = customer_users.create_customer_user(self.s, cust, email, person, password)
            self.customer_users.append(user)
            self.summary.customers.append((email, password, name))
            token, secret = fleet.create_enrollment_token(self.s, cust, actor="demo", max_uses=50)
            audit(self.s, "demo", "enrollment.create", f"enrollment:{token.prefix}", {"customer": name})
            insts = []
            for i in range(count):
                n += 1
                channel = "beta" if (c_index == 3 and i == 0) else "stable"
                server = "2.3.0"
                req = EnrollRequest(
                    enrollment_token=secret, name=f"{SITES[i % len(SITES)]}", hostname=f"crm{i + 1}.{domain}",
                    platform="linux-x86_64 (Debian 12)" if i % 3 else "linux-x86_64 (Ubuntu 22.04)",
                    agent_version="1.0.0", channel=channel, tags=["production"] if i < count - 1 else ["test"],
                    maintenance_window="01:00-05:00" if i % 2 == 0 else None,
                    installed={"server": server, "web": "5.1.0", "db-schema": "1.41.0", "agent": "1.0.0"})
                inst, _secret = fleet.enroll(self.s, req)
                inst.enrolled_at = self.now - timedelta(days=40 - n % 9)
                # most checked in recently; a few have gone quiet (stale)
                inst.last_seen_at = self.now - (timedelta(days=3 + n % 4) if n % 7 == 3
                                                else timedelta(minutes=5 + 11 * n))
                insts.append(inst)
            self.installations[name] = insts
        self.s.flush()

    def all_installations(self, channel: str | None = None) -> list[Any]:
        rows = [i for insts in self.installations.values() for i in insts]
        return [i for i in rows if channel is None or i.channel == channel]

    # ------------------------------------------------------------ reports
    def report(self, inst: Any, component: str, frm: str, to: str, outcome: str, when: datetime, **extra: Any) -> str:
        from .fleet import services as fleet
        from .fleet.models import UpdateReport
        from .fleet.schemas import ReportIn
        from .support.models import FailureGroupReport

        rid = str(uuid.uuid4())
        fleet.store_reports(self.s, inst, [ReportIn(id=rid, component=component, from_version=frm, to_version=to,
                                                   outcome=outcome, duration_seconds=extra.pop("duration", 42.0),
                                                   started_at=when - timedelta(minutes=1), **extra)])
        self.s.flush()
        self.s.execute(update(UpdateReport).where(UpdateReport.id == rid).values(received_at=when))
        self.s.execute(update(FailureGroupReport).where(FailureGroupReport.report_id == rid).values(received_at=when))
        self.s.commit()  # one report batch, one request: what it made is there for the next (as over the API)
        return rid

    def rollouts(self) -> None:
        from .accounts.services import audit
        from .rollouts import services as rollouts

        def made(ro: Any, action: str, **details: Any) -> None:
            audit(self.s, "maria.release", f"rollout.{action}", f"rollout:{ro.id}",
                  {"release": f"{ro.release.component.name}/{ro.release.version}", "channel": ro.channel, **details})

        stable = self.all_installations("stable")
        # 1. server 2.3.1: rolled out over a week, completed
        ro = rollouts.create_rollout(self.s, "server", "2.3.1", "stable", actor="maria.release",
                                     schedule=[{"percent": 10, "min_hours": 24}, {"percent": 50, "min_hours": 48},
                                               {"percent": 100, "min_hours": 0}], min_attempts=10)
        made(ro, "create")
        rollouts.start(self.s, ro)
        made(ro, "start", percent=10)
        for k, inst in enumerate(stable[:-3]):
            day = 26 - (k * 9) // max(len(stable), 1)
            self.report(inst, "server", "2.3.0", "2.3.1", "success", self.now - timedelta(days=day, hours=k % 5))
        rollouts.complete(self.s, ro)
        made(ro, "complete")
        ro.created_at = self.now - timedelta(days=27)
        # db-schema and web follow
        for k, inst in enumerate(stable[:-5]):
            self.report(inst, "db-schema", "1.41.0", "1.42.0", "success", self.now - timedelta(days=14 - k % 4))
        # 2. web 5.2.0: running, widened to 40 %
        ro = rollouts.create_rollout(self.s, "web", "5.2.0", "stable", actor="maria.release",
                                     schedule=[{"percent": 20, "min_hours": 24}, {"percent": 40, "min_hours": 48},
                                               {"percent": 100, "min_hours": 0}], min_attempts=15)
        made(ro, "create")
        rollouts.start(self.s, ro)
        made(ro, "start", percent=20)
        for k, inst in enumerate(stable[: len(stable) // 2]):
            outcome = "rolled_back" if k == 4 else "success"
            extra = {"stage": "health-check", "error_code": "health_timeout",
                     "error_message": "web did not answer on :8080 within 60 s",
                     "log_tail": "GET /health -> timeout after 60 s"} if outcome != "success" else {}
            self.report(inst, "web", "5.1.0", "5.2.0", outcome, self.now - timedelta(days=6 - k % 6, hours=k), **extra)
        rollouts.set_percentage(self.s, ro, 40)
        made(ro, "widen", percent=40)
        ro.created_at = self.now - timedelta(days=7)
        self.summary.running_rollout_id = ro.id
        # 3. server 2.4.0: halted by failures
        ro = rollouts.create_rollout(self.s, "server", "2.4.0", "stable", actor="maria.release",
                                     schedule=[{"percent": 10, "min_hours": 24}, {"percent": 100, "min_hours": 0}],
                                     failure_threshold=0.2, min_attempts=8)
        made(ro, "create")
        rollouts.start(self.s, ro, 30)
        made(ro, "start", percent=30)
        ro.created_at = self.now - timedelta(days=3)
        first = self.customers[0].name
        hit = self.installations[first][:4] + self.installations[self.customers[1].name][:2]
        fine = [i for i in stable if i not in hit][:4]
        k = 0
        last_when = self.now
        for inst in fine + hit:
            if ro.state == "halted":
                break
            when = self.now - timedelta(days=2, hours=20) + timedelta(hours=7 * k)
            if inst in hit:
                outcome = "failed" if k % 5 == 4 else "rolled_back"
                self.report(inst, "server", "2.3.1", "2.4.0", outcome, when, stage="post-install",
                            error_code="migration_failed",
                            error_message='insert or update on table "stock_transfer" violates foreign key '
                                          'constraint "fk_stock_transfer_site"', log_tail=MIGRATION_LOG)
            else:
                self.report(inst, "server", "2.3.1", "2.4.0", "success", when)
            k += 1
            last_when = when
            self.s.refresh(ro)
        ro.halted_at = ro.updated_at = last_when
        if ro.state != "halted":  # the figures above always halt it; keep the demo honest if the rules change
            rollouts.halt(self.s, ro, "failure rate above the threshold", automatic=True)
        self.summary.halted_rollout_id = ro.id
        # 4. agent 1.1.0: paused at 50 %
        ro = rollouts.create_rollout(self.s, "agent", "1.1.0", "stable", actor="maria.release", min_attempts=20)
        made(ro, "create")
        rollouts.start(self.s, ro, 50)
        made(ro, "start", percent=50)
        rollouts.pause(self.s, ro)
        made(ro, "pause")
        ro.created_at = self.now - timedelta(days=10)
        # 5. server 2.4.1 on beta: a draft waiting for its start
        ro = rollouts.create_rollout(self.s, "server", "2.4.1", "beta", actor="maria.release")
        made(ro, "create")
        self.summary.draft_rollout_id = ro.id

    # ------------------------------------------------------------ tickets
    def tickets(self) -> None:
        from .accounts.auth import Principal
        from .accounts.models import User
        from .storage import get_storage
        from .support import services as support
        from .support.customers import CustomerPrincipal
        from .support.models import Ticket

        def staff(username: str) -> Any:
            user = self.s.scalar(select(User).where(User.username == username))
            return support.actor_of(Principal("demo", user.role, username, user.id))

        def customer(i: int) -> Any:
            u = self.customer_users[i]
            return support.actor_of(CustomerPrincipal(u.id, u.customer_id, u.email, u.name))

        oleg, sara = staff("oleg.support"), staff("sara.support")

        def open_(i: int, kind: str, subject: str, text: str, days_ago: float, inst: int | None = 0) -> Any:
            actor = customer(i)
            cust = self.customers[i]
            installation = self.installations[cust.name][inst].id if inst is not None else None
            t = support.create_ticket(self.s, actor, subject=subject, description=text, kind=kind, customer=cust,
                                      requester_email=actor.email, requester_name=self.customer_users[i].name,
                                      source="portal", installation_id=installation)
            return t, days_ago

        made: list[tuple[Any, float]] = []
        t, d = open_(0, "incident", "Invoice PDF shows the wrong VAT rate",
                     "Since this morning the PDF of invoice 2024-1187 shows 20 % VAT instead of 10 % for books. "
                     "Screenshot attached.", 9)
        blob = get_storage().put_stream(io.BytesIO(screenshot_png()))
        support.add_attachment(self.s, t, customer(0), blob, "vat-error.png", "image/png")
        support.update_ticket(self.s, t, oleg, {"assignee": "oleg.support"})
        support.staff_reply(self.s, t, oleg, "Thank you. This is fixed in server 2.3.1; your installation will "
                                             "receive it tonight in the maintenance window.")
        support.update_ticket(self.s, t, oleg, {"status": "processed",
                                                "comment": "Fixed by the automatic update to 2.3.1."})
        made.append((t, d))
        self.summary.tickets["incident"] = t.number
        t, d = open_(0, "service", "How do we move the test server to the beta channel?",
                     "We would like to try new versions on our test server first.", 6, inst=None)
        support.request_information(self.s, t, sara, "Of course. Which installation is the test server? Please send "
                                                     "its name or the output of `client-agent status`.")
        made.append((t, d))
        self.summary.tickets["service"] = t.number
        t, d = open_(0, "development", "Export of stock levels to CSV",
                     "Our accountants need a CSV export of stock levels per warehouse, monthly.", 15, inst=None)
        support.add_note(self.s, t, sara, "Product team: candidate for 2.5. Similar request from Aurora Retail.")
        support.update_ticket(self.s, t, sara, {"assignee": "sara.support", "status": "in_progress"})
        made.append((t, d))
        self.summary.tickets["development"] = t.number
        t, d = open_(0, "problem", "Application does not start after power failure",
                     "After a power cut the application shows 'database is locked' and does not start.", 2)
        support.update_ticket(self.s, t, oleg, {"priority": "urgent", "assignee": "oleg.support"})
        support.request_information(self.s, t, oleg, "Please send the event logs of the server component "
                                                     "(/var/log/crm/server.log) from the time of the power cut.")
        support.customer_message(self.s, t, customer(0), "Logs attached. We restarted twice, same error.")
        made.append((t, d))
        self.summary.tickets["problem"] = t.number
        t, d = open_(1, "incident", "Отчёт о продажах открывается пустым",
                     "Квартальный отчёт о продажах открывается без данных с 1 числа.", 4)
        support.staff_reply(self.s, t, oleg, "Спасибо, проверяем. Какая версия сервера у вас установлена?")
        made.append((t, d))
        self.summary.other_customer_ticket = t.number
        t, d = open_(1, "development", "Печать накладных на принтере Zebra", "Нужна печать этикеток 58 мм.", 20, None)
        support.update_ticket(self.s, t, sara, {"status": "closed", "comment": "Планируется в версии 2.6."})
        made.append((t, d))
        t, d = open_(2, "service", "Which ports does the agent need?", "Our firewall team asks.", 12, None)
        support.update_ticket(self.s, t, oleg, {"status": "processed", "comment": "Only outgoing HTTPS (443) to the "
                                                                                  "update server."})
        made.append((t, d))
        t, d = open_(2, "incident", "Login page slow on Monday mornings", "Takes 20-30 s to log in at 9:00.", 1)
        made.append((t, d))
        t, d = open_(3, "problem", "Warehouse module missing after update", "We expected the new module.", 5, 1)
        support.staff_reply(self.s, t, sara, "The warehouse module comes with server 2.4, which is not offered yet.")
        made.append((t, d))
        t, d = open_(4, "service", "Training for new accountants", "Do you offer a training session in June?", 17,
                     None)
        support.update_ticket(self.s, t, sara, {"status": "processed", "comment": "Yes: 12 June, online."})
        made.append((t, d))
        for i, (kind, subject, days) in enumerate((("incident", "Printing of delivery notes stops after 50 pages", 23),
                                                   ("service", "Licence for two more users", 19),
                                                   ("incident", "Wrong currency symbol in the Kazakh locale", 11),
                                                   ("development", "Mobile-friendly order form", 8))):
            t, d = open_(2 + i % 3, kind, subject, subject + ".", days, None)
            made.append((t, d))
        self.s.flush()
        # spread the history over the month: each ticket's timeline moves back as a whole
        for ticket, days_ago in made:
            delta = (self.now - timedelta(days=days_ago, hours=(ticket.id * 5) % 11)) - ticket.created_at
            self._shift(ticket, delta)
        # the failure tickets (from the halted rollout) opened on the days their reports came in
        from .fleet.models import UpdateReport
        from .support.models import FailureGroupReport

        for ticket in list(self.s.scalars(select(Ticket).where(Ticket.source == "failure_report"))):
            group_ids = [ticket.failure_group_id] if ticket.failure_group_id else []
            first = self.s.scalar(select(func.min(UpdateReport.received_at))
                                  .join(FailureGroupReport, FailureGroupReport.report_id == UpdateReport.id)
                                  .where(FailureGroupReport.group_id.in_(group_ids))) if group_ids else None
            if first is None and ticket.rollout_id:  # the halt ticket: when the rollout halted
                from .rollouts.models import Rollout

                first = self.s.get(Rollout, ticket.rollout_id).halted_at
            if isinstance(first, str):
                first = datetime.fromisoformat(first)
            if first is not None and first.tzinfo is None:
                from datetime import timezone

                first = first.replace(tzinfo=timezone.utc)
            if first is not None:
                self._shift(ticket, first - ticket.created_at)
            if ticket.customer_id == self.customers[0].id and self.summary.failure_ticket is None:
                self.summary.failure_ticket = ticket.number

    def _shift(self, ticket: Any, delta: timedelta) -> None:
        from .support.models import TicketEvent

        ticket.created_at = ticket.created_at + delta
        ticket.updated_at = ticket.updated_at + delta
        if ticket.processed_at:
            ticket.processed_at = ticket.processed_at + delta
        if ticket.closed_at:
            ticket.closed_at = ticket.closed_at + delta
        for ev in self.s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)):
            ev.at = ev.at + delta


def load(session: Session, *, staff_password: str | None = None, customer_password: str | None = None,
         now: datetime | None = None, root_keys: Path | None = None,
         publisher_keys: Path | None = None) -> DemoSummary:
    """Fill an empty instance, committing step by step like the API requests it imitates.

    With ``root_keys`` (the ceremony folder of a bootstrapped repository) the component
    ``payments`` is claimed for three publisher keys (threshold 2) written to
    ``publisher_keys``: its 1.0.0 is signed by two publishers, its 1.1.0 by one and waits
    for a second signature (``release-server sign``).

    Raises DemoNotEmptyError (and changes nothing) if the instance is not empty.
    """
    if not is_empty(session):
        raise DemoNotEmptyError("the instance already has releases, customers or tickets")
    b = _Builder(session, now or utcnow(), staff_password, customer_password)
    for step in (b.staff, b.releases, b.fleet, b.rollouts, b.tickets):
        step()
        session.commit()  # each step as its own requests would have committed it
    if root_keys is not None:
        b.claimed(root_keys, publisher_keys or root_keys.parent / "publisher-keys")
        session.commit()
    # from now on nothing reaches every stable installation at once: releases start staged
    from .releases import services as release_services

    release_services.set_channel_settings(session, "stable", require_staged_rollout=True)
    session.commit()
    # the month moved back is counted now, as the worker would count it day by day
    from .releases.models import Component
    from .rollouts.figures import count_missing_days

    count_missing_days(session, session, list(session.scalars(select(Component.name))), b.now.date())
    return b.summary


@click.command("demo")
@click.option("--password", default=None, help="Password for every demo user (default: a random one each).")
@click.option("--root-keys", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Root key folder of the bootstrapped repository: also claim the component 'payments' "
                   "(publisher keys written beside it, in publisher-keys/).")
@with_appcontext
def demo_command(password: str | None, root_keys: Path | None) -> None:
    """Fill an empty instance with demo customers, installations, releases, rollouts and tickets."""
    import sys

    from .db import db

    try:
        summary = load(db.session, staff_password=password, customer_password=password,
                       root_keys=root_keys if root_keys is not None and root_keys.is_dir() else None)
        db.commit()
    except DemoNotEmptyError as e:
        click.echo(f"demo: nothing done: {e}", err=True)
        sys.exit(1)
    click.echo("Demo data loaded. Logins (shown once):")
    click.echo("  Staff console (/console/login):")
    for username, pw, role in summary.staff:
        click.echo(f"    {username:<16} {pw:<18} {role}")
    click.echo("  Customer portal (/portal/login):")
    for email, pw, cust in summary.customers:
        click.echo(f"    {email:<36} {pw:<18} {cust}")
    if summary.publisher_keys is not None:
        click.echo(f"  Claimed component '{CLAIMED}' (2 of 3 publisher signatures): 1.1.0 waits for a second "
                   f"signature; publisher keys in {summary.publisher_keys}. Sign with:")
        click.echo(f"    release-server sign --server URL --token PUBLISHER_TOKEN --component {CLAIMED} "
                   f"--version 1.1.0 --key {summary.publisher_keys / 'boris.pem'}")


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_command)
