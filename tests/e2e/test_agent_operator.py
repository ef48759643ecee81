"""The agent as an operator meets it: one server URL, a warning for an unknown component, what `run` says,
and a status that forgets an offer once it is installed."""
from __future__ import annotations

import json


def test_agent_explains_itself(e2e):
    e2e.publish("app", "1.0", changelog="* First release")
    # enroll for a component the server knows and one it does not: a warning, still enrolled
    proc = e2e.agent("enroll", "--server", e2e.server.url, "--token", e2e.enrollment_token(),
                     "--install-dir", str(e2e.install_dir), "--name", "test machine",
                     "--component", "app", "--component", "nosuch", check=0)
    assert "knows no component named nosuch" in proc.stderr
    assert "app" not in proc.stderr.split("named", 1)[1].split(";")[0]
    e2e.installation_id = json.loads((e2e.state_dir / "enrollment.json").read_text())["installation_id"]

    # the server URL lives in config.json only
    enrollment = json.loads((e2e.state_dir / "enrollment.json").read_text())
    config = json.loads((e2e.state_dir / "config.json").read_text())
    assert "server_url" not in enrollment and config["server_url"] == e2e.server.url

    # `check` records the offer; `run --once` says what it does, one line per check and per install
    e2e.agent("check", check=0)
    assert [o["version"] for o in e2e.status()["offers"]] == ["1.0"]
    proc = e2e.agent("run", "--once", check=0)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("INFO: ")]
    assert any(line.startswith("INFO: check: 1 offer(s): app - -> 1.0") for line in lines), proc.stderr
    assert any(line == "INFO: install app - -> 1.0: success" for line in lines), proc.stderr
    assert len([line for line in lines if line.startswith("INFO: install ")]) == 1
    # ... and status no longer shows the offer it just installed
    status = e2e.status()
    assert status["offers"] == []
    proc = e2e.agent("run", "--once", check=0)
    assert any(line.startswith("INFO: check: nothing new") for line in proc.stderr.splitlines()), proc.stderr
    # other commands stay quiet at the default level
    assert "INFO:" not in e2e.agent("check", check=0).stderr

    # report-issue reaches the server named in config.json (an old enrollment.json's URL is ignored)
    stale = dict(enrollment, server_url="http://127.0.0.1:9")
    (e2e.state_dir / "enrollment.json").write_text(json.dumps(stale))
    proc = e2e.agent("report-issue", "--kind", "incident", "--subject", "Invoices print blank", check=0)
    assert "OTK-" in proc.stdout
