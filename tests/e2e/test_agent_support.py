"""Support requests from the installation: report-issue and collect-logs against a real server."""
from __future__ import annotations

import io
import tarfile

import pytest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def bundle_members(e2e, number: str, attachment: dict) -> dict[str, bytes]:
    resp = e2e.client.get(f"/api/v1/tickets/{number}/attachments/{attachment['id']}", headers=e2e.headers)
    assert resp.status_code == 200
    data = resp.data
    resp.close()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def ticket(e2e, number: str) -> dict:
    resp = e2e.client.get(f"/api/v1/tickets/{number}", headers=e2e.headers)
    assert resp.status_code == 200, resp.json
    return resp.json


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_report_issue_with_screenshot_and_logs_then_collect_logs(e2e, tmp_path):
    e2e.publish("app", "1.0")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    app_log = tmp_path / "crm.log"
    app_log.write_text("old line\n" * 10 + "ERROR invoice export failed: timeout\n")
    e2e.set_config(log_files=[str(app_log), str(tmp_path / "missing.log")])
    shot = tmp_path / "failure.png"
    shot.write_bytes(PNG)

    proc = e2e.agent("report-issue", "--kind", "incident", "--subject", "Invoice export hangs",
                     "--description", "Since this morning the export never finishes.",
                     "--screenshot", str(shot), "--attach-logs", check=0)
    number = proc.stdout.strip()
    assert number.startswith("OTK-") and len(number) >= 10
    t = ticket(e2e, number)
    assert t["kind"] == "incident" and t["source"] == "agent" and t["customer"] == "Acme GmbH"
    assert t["installation_id"] == e2e.installation_id
    names = sorted(a["filename"] for a in t["attachments"])
    assert names[1] == "failure.png" and names[0].startswith("diagnostics-") and names[0].endswith(".tar.gz")
    bundle = next(a for a in t["attachments"] if a["filename"].startswith("diagnostics-"))
    members = bundle_members(e2e, number, bundle)
    assert b"ERROR invoice export failed" in members["logs/00-crm.log"]
    assert b'"app": "1.0"' in members["agent/installed.json"]
    assert b"missing.log" in members["system.json"]  # a configured log that is absent is noted
    assert not any("enrollment" in name or "config" in name for name in members)  # no secrets
    import json

    token = json.loads((e2e.state_dir / "enrollment.json").read_text())["token"].encode()
    assert all(token not in v for v in members.values())  # the installation's token never leaves

    # support asks for more information; the agent answers with a fresh bundle
    r = e2e.client.post(f"/api/v1/tickets/{number}/request-info", json={"body": "Please send the logs again."},
                        headers=e2e.headers)
    assert r.status_code == 200
    out = e2e.agent("collect-logs", "--ticket", number, "--output", str(tmp_path / "b.tar.gz"), check=0).stdout
    assert f"Attached to {number}." in out and (tmp_path / "b.tar.gz").exists()
    assert len(ticket(e2e, number)["attachments"]) == 3

    # bad input: a kind that does not exist, a missing screenshot, a ticket of another customer
    assert e2e.agent("report-issue", "--kind", "wish", "--subject", "x").returncode == 2
    proc = e2e.agent("report-issue", "--kind", "service", "--subject", "x", "--screenshot", str(tmp_path / "no.png"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    e2e.client.post("/api/v1/customers", json={"name": "Other Ltd"}, headers=e2e.headers)
    other = e2e.client.post("/api/v1/tickets", json={"subject": "theirs", "customer": "Other Ltd"},
                            headers=e2e.headers).json["number"]
    proc = e2e.agent("collect-logs", "--ticket", other)
    assert proc.returncode != 0
    assert len(ticket(e2e, other)["attachments"]) == 0
