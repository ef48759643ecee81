"""The staff command line: releases, components, customers and users commands; help, choices and --json."""
from __future__ import annotations

import json
from typing import Any

import click
from factories import create_component, enroll, publish


def walk(group: click.Group, ctx: click.Context, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        out.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            out.extend(walk(cmd, ctx, f"{prefix}{name} "))
    return out


def test_every_command_has_a_help_line_and_listings_have_json(app: Any) -> None:
    from release_server.server_cli import cli

    with app.app_context():
        ctx = click.Context(app.cli)
        commands = walk(app.cli, ctx) + [(n, cli.get_command(click.Context(cli), n)) for n in ("publish", "mailgate")]
    missing = [name for name, cmd in commands if not (cmd.help or cmd.short_help or "").strip()]
    assert not missing, f"commands without a help line: {missing}"
    listings = [(name, cmd) for name, cmd in commands if name.split()[-1] == "list"]
    assert len(listings) >= 8
    no_json = [name for name, cmd in listings if not any("--json" in p.opts for p in cmd.params)]
    assert not no_json, f"listings without --json: {no_json}"
    for name in ("releases list", "releases show", "releases yank", "releases unyank", "releases promote",
                 "components list", "customers list", "customers show", "users list", "users disable",
                 "users set-password", "rollouts show"):
        assert name in dict(commands), name


def test_enumerated_options_list_their_choices(runner: Any) -> None:
    r = runner.invoke(args=["tickets", "set", "--help"])
    assert r.exit_code == 0
    assert "new|in_progress|waiting_for_customer|processed|closed" in r.output
    assert "incident|problem|service|development" in r.output and "low|normal|high|urgent" in r.output
    r = runner.invoke(args=["tickets", "set", "OTK-000001", "--status", "done"])
    assert r.exit_code == 2 and "'done' is not one of" in r.output


def test_releases_commands(app: Any, client: Any, auth: Any, runner: Any) -> None:
    staff = auth.headers("publisher")
    create_component(client, staff, "server", "The CRM server")
    assert publish(client, staff, "server", "1.0", channels=["beta"], changelog="* first").status_code == 201
    assert publish(client, staff, "server", "1.1", channels=["beta"]).status_code == 201
    r = runner.invoke(args=["releases", "list"])
    assert r.exit_code == 0 and r.output.index("server 1.1") < r.output.index("server 1.0")
    listed = runner.invoke(args=["releases", "list", "--component", "server", "--json"])
    assert listed.exit_code == 0, (listed.output, repr(listed.exception))
    data = json.loads(listed.output)
    assert [d["version"] for d in data] == ["1.1", "1.0"] and data[0]["channels"] == ["beta"]
    shown = runner.invoke(args=["releases", "show", "server", "1.0"])
    assert shown.exit_code == 0 and "* first" in shown.output
    assert json.loads(runner.invoke(args=["releases", "show", "server", "1.0", "--json"]).output)["version"] == "1.0"
    r = runner.invoke(args=["releases", "promote", "server", "1.1", "--channel", "stable"])
    assert r.exit_code == 0, r.output
    assert "stable" in client.get("/api/v1/components/server/releases/1.1", headers=staff).json["channels"]
    r = runner.invoke(args=["releases", "yank", "server", "1.1", "--reason", "breaks invoices"])
    assert r.exit_code == 0 and "yanked: breaks invoices" in r.output
    assert client.get("/api/v1/components/server/releases/1.1", headers=staff).json["yanked"] is True
    assert runner.invoke(args=["releases", "unyank", "server", "1.1"]).exit_code == 0
    assert client.get("/api/v1/components/server/releases/1.1", headers=staff).json["yanked"] is False
    r = runner.invoke(args=["releases", "show", "server", "9.9"])
    assert r.exit_code == 1 and "error:" in r.output and "Traceback" not in r.output
    r = runner.invoke(args=["releases", "promote", "server", "1.1", "--channel", "nochannel"])
    assert r.exit_code == 1 and "nochannel" in r.output
    audit = client.get("/api/v1/audit", headers=auth.headers("admin")).json["items"]
    assert {"release.promote", "release.yank", "release.unyank"} <= {a["action"] for a in audit}
    comps = json.loads(runner.invoke(args=["components", "list", "--json"]).output)
    assert comps == [{"name": "server", "description": "The CRM server", "latest": "1.1", "releases": 2}]


def test_customers_commands(client: Any, auth: Any, runner: Any) -> None:
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    inst = enroll(client, admin, "Acme", name="head office", installed={"server": "1.0"})
    listed = json.loads(runner.invoke(args=["customers", "list", "--json"]).output)
    assert [(c["name"], c["installations"]) for c in listed] == [("Acme", 1)]
    shown = runner.invoke(args=["customers", "show", "Acme"])
    assert shown.exit_code == 0 and "head office" in shown.output and inst["installation_id"] in shown.output
    data = json.loads(runner.invoke(args=["customers", "show", "Acme", "--json"]).output)
    assert data["installations"][0]["versions"] == {"server": "1.0"}
    r = runner.invoke(args=["customers", "show", "Nobody"])
    assert r.exit_code == 1 and "error:" in r.output


def test_users_commands_and_a_lost_admin_password(app: Any, client: Any, runner: Any) -> None:
    from release_server.accounts import services
    from release_server.db import db

    assert runner.invoke(args=["users", "create", "olga", "--role", "support", "--password",
                               "first password 1"]).exit_code == 0
    token = runner.invoke(args=["tokens", "create", "--name", "t", "--role", "support", "--user", "olga"])
    secret = token.stdout.strip().splitlines()[0]
    h = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/components", headers=h).status_code == 200
    users = json.loads(runner.invoke(args=["users", "list", "--json"]).output)
    assert [(u["username"], u["role"], u["active"]) for u in users] == [("olga", "support", True)]
    assert runner.invoke(args=["users", "disable", "olga"]).exit_code == 0
    assert client.get("/api/v1/components", headers=h).status_code == 401
    with app.app_context():
        assert services.authenticate_user(db.session, "olga", "first password 1") is None
    assert "disabled" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "enable", "olga"]).exit_code == 0
    assert client.get("/api/v1/components", headers=h).status_code == 200
    # the lost password: a new one generated and printed once
    r = runner.invoke(args=["users", "set-password", "olga"])
    assert r.exit_code == 0
    new = r.output.split("password: ")[1].strip()
    with app.app_context():
        assert services.authenticate_user(db.session, "olga", "first password 1") is None
        assert services.authenticate_user(db.session, "olga", new) is not None
    r = runner.invoke(args=["users", "set-password", "olga", "--password", "short"])
    assert r.exit_code == 1 and "at least 10" in r.output
    r = runner.invoke(args=["users", "disable", "nobody"])
    assert r.exit_code == 1 and "no user" in r.output
    tokens = json.loads(runner.invoke(args=["tokens", "list", "--json"]).output)
    assert tokens[0]["user"] == "olga" and secret not in json.dumps(tokens)
