"""Client-side commands of ``release-server``: they talk HTTP to a server with a token.

``publish`` streams the artifact (it is never read into memory; ``sendfile(2)`` over
plain HTTP) after its metadata, with a progress bar, stops as soon as the server refuses,
and turns every refusal into a one-line message and a non-zero exit code.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import select
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


@click.command("publish")
@click.option("--server", envvar="RELEASE_SERVER_URL", required=True, help="Server URL [env RELEASE_SERVER_URL].")
@click.option("--token", envvar="RELEASE_SERVER_TOKEN", required=True,
              help="Publisher API token [env RELEASE_SERVER_TOKEN].")
@click.option("--component", required=True)
@click.option("--version", "version", required=True, help="PEP 440 version.")
@click.option("--channel", "channels", multiple=True, help="Channel (repeatable); default beta.")
@click.option("--changelog", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Markdown file with this release's changes.")
@click.option("--critical", is_flag=True, help="Skips staged rollout schedules.")
@click.option("--min-from-version", default=None)
@click.option("--requires", "requires", multiple=True, metavar="COMPONENT=SPEC",
              help="Dependency, e.g. db-schema='>=5,<6' (repeatable).")
@click.option("--rollout-schedule", default=None, metavar="PERCENT:HOURS,...",
              help="Publish as a staged rollout, started at its first phase in the same step, e.g. 5:24,25:24,100:0.")
@click.option("--rollout-threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Failure rate that halts the rollout.")
@click.option("--rollout-min-attempts", type=click.IntRange(min=1), default=20, show_default=True,
              help="Attempts before the failure rate counts.")
@click.option("--rollout-draft", is_flag=True, help="Create the rollout as a draft (offered to nobody yet).")
@click.option("--fixes", "fixes", multiple=True, metavar="TICKET",
              help="A ticket this release fixes, e.g. OTK-000123 (repeatable).")
@click.option("--fixes-group", "fixes_groups", multiple=True, type=click.IntRange(min=1), metavar="GROUP",
              help="A failure group this release fixes, by number (repeatable); it is resolved in this version.")
@click.option("--restrict-to-affected", is_flag=True,
              help="Offer the release only to the installations affected by what it fixes.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--sign-with", "sign_with", default=None, metavar="KEY",
              help="Claimed components: sign the component's role here with this publisher key "
                   "(PEM file or securesystemslib signer URI).")
@click.option("--key-passphrase-env", metavar="VAR", help="Passphrase of the --sign-with key file.")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def publish(server: str, token: str, component: str, version: str, channels: tuple[str, ...],
            changelog: Path | None, critical: bool, min_from_version: str | None, requires: tuple[str, ...],
            rollout_schedule: str | None, rollout_threshold: float, rollout_min_attempts: int, rollout_draft: bool,
            fixes: tuple[str, ...], fixes_groups: tuple[int, ...], restrict_to_affected: bool,
            quiet: bool, sign_with: str | None, key_passphrase_env: str | None, artifact: Path) -> None:
    """Publish ARTIFACT as a new release of a component (optionally as a staged rollout, in one step)."""
    reqs = {}
    for item in requires:
        name, sep, spec = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected COMPONENT=SPEC", param_hint="--requires")
        reqs[name.strip()] = spec.strip()
    metadata = {"version": version, "channels": list(channels) or ["beta"], "critical": critical,
                "requires": reqs, "filename": artifact.name}
    if changelog is not None:
        metadata["changelog"] = changelog.read_text(encoding="utf-8")
    if restrict_to_affected and not (fixes or fixes_groups):
        raise click.UsageError("--restrict-to-affected needs --fixes or --fixes-group")
    if fixes:
        metadata["fixes"] = list(fixes)
    if fixes_groups:
        metadata["fixes_groups"] = list(fixes_groups)
    if restrict_to_affected:
        metadata["restrict_to_affected"] = True
    if min_from_version:
        metadata["min_from_version"] = min_from_version
    if rollout_schedule is not None:
        steps = []
        for part in filter(None, (p.strip() for p in rollout_schedule.split(","))):
            pct, sep, hours = part.partition(":")
            try:
                steps.append({"percent": float(pct), "min_hours": float(hours) if sep else 0.0})
            except ValueError:
                raise click.BadParameter(f"{part!r}: expected PERCENT:HOURS", param_hint="--rollout-schedule") \
                    from None
        if not steps:
            raise click.BadParameter("give at least one PERCENT:HOURS phase", param_hint="--rollout-schedule")
        metadata["rollout"] = {"schedule": steps, "failure_threshold": rollout_threshold,
                               "min_attempts": rollout_min_attempts, "start": not rollout_draft}

    size = artifact.stat().st_size
    metadata["size"] = size
    if sign_with is not None:
        metadata["tuf_role"] = _signed_publish_role(server, token, component, metadata, artifact, sign_with,
                                                    key_passphrase_env)
    show = not quiet and sys.stderr.isatty() or os.environ.get("RELEASE_SERVER_PROGRESS") == "1"
    url = f"{server.rstrip('/')}/api/v1/components/{component}/releases"
    try:
        status, reason, body = _stream_publish(url, token, metadata, artifact, size, show)
    except (OSError, http.client.HTTPException, ValueError) as e:
        click.echo(f"error: cannot reach {server}: {e}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    if status != 201:
        click.echo(f"error: publish refused: {_error_text(status, reason, body)}", err=True)
        sys.exit(EXIT_REFUSED)
    rel = json.loads(body)
    if rel.get("signatures_pending"):
        sigs = rel.get("signatures") or {}
        click.echo(f"uploaded {rel['component']} {rel['version']}: pending signatures "
                   f"({len(sigs.get('signed', []))} of {sigs.get('threshold')}); another publisher runs "
                   f"release-server sign --component {rel['component']} --version {rel['version']} --key KEY")
        return
    click.echo(f"published {rel['component']} {rel['version']} ({size} bytes, sha256 {rel['artifact']['sha256']}) "
               f"on {', '.join(rel['channels'])}" + (" as a staged rollout" if rollout_schedule is not None else ""))
    named = [*rel.get("fixes", []), *(f"group #{g}" for g in rel.get("fixes_groups", []))]
    if named:
        click.echo(f"fixes {', '.join(named)}" + (", offered only to the affected installations"
                                                   if restrict_to_affected else ""))


BLOCK = 4 * 1024 * 1024


def _error_text(status: int, reason: str, body: bytes) -> str:
    try:
        err = json.loads(body)["error"]
        field = f" [{err['field']}]" if err.get("field") else ""
        return f"{status} {err['code']}{field}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {reason}"


def _stream_publish(url: str, token: str, metadata: dict, artifact: Path, size: int,
                    show_progress: bool) -> tuple[int, str, bytes]:
    """POST the multipart body, metadata part first, then the file in large blocks.

    The server checks the metadata before it reads the artifact; between blocks the
    socket is polled, so a refusal (duplicate version, unknown component...) ends the
    upload at once instead of after the whole file. Over plain HTTP the file goes out
    with ``sendfile(2)``; the length is computed once, up front.
    """
    boundary = "rs-" + secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
            f"Content-Type: application/json\r\n\r\n").encode() + json.dumps(metadata).encode() + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; "
        f"filename=\"{artifact.name.replace(chr(34), '_')}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=3600)
    bar = None
    try:
        conn.timeout = 10
        conn.connect()
        conn.sock.settimeout(3600)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders(head)
        sock = conn.sock
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {artifact.name}",
                       file=sys.stderr)
        use_sendfile = parts.scheme == "http" and hasattr(os, "sendfile")
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        sent = 0
        refused = False
        try:
            with artifact.open("rb") as fh:
                while sent < size:
                    if select.select([sock], [], [], 0)[0]:
                        refused = True  # the server answered before the body was complete
                        break
                    if use_sendfile:
                        n = sock.sendfile(fh, sent, min(BLOCK, size - sent))
                    else:
                        n = fh.readinto(buf)
                        sock.sendall(view[:n])
                    if n == 0:
                        raise OSError(f"{artifact} shrank while it was being sent")
                    sent += n
                    if bar is not None:
                        bar.update(n)
            if not refused:
                sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed its side after answering: read that answer below
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.read()
    finally:
        if bar is not None:
            bar.close()
        conn.close()


def _api(server: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{server.rstrip('/')}/api/v1{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the operator's server URL
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": {"code": "http_error", "message": e.reason}}
    except (OSError, ValueError) as e:
        click.echo(f"error: cannot reach {server}: {e}", err=True)
        sys.exit(EXIT_UNREACHABLE)


def _ok(status: int, body: dict, what: str) -> dict:
    if status >= 400:
        err = body.get("error", {})
        field = f" [{err['field']}]" if err.get("field") else ""
        click.echo(f"error: {what} refused: {status} {err.get('code')}{field}: {err.get('message')}", err=True)
        sys.exit(EXIT_REFUSED)
    return body


def _signing_state(server: str, token: str, component: str) -> dict:
    """The server's account of a claimed component, checked against TUF when a trusted root is set."""
    state = _ok(*_api(server, token, "GET", f"/components/{component}/signing"), "reading the signing state")
    root_file = os.environ.get("RELEASE_SERVER_TRUSTED_ROOT")
    if root_file:
        from .signing import publisher

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "release-server" / \
            f"tuf-{urlsplit(server).netloc.replace(':', '_')}"
        try:
            trusted = Path(root_file).read_bytes()
        except OSError as e:
            click.echo(f"error: cannot read the trusted root {root_file}: {e.strerror}", err=True)
            sys.exit(EXIT_REFUSED)
        _or_refuse(lambda: publisher.verify_state(state, trusted, f"{server.rstrip('/')}/tuf/metadata/", cache))
    return state


def _load_publisher_signer(state: dict, key: str, passphrase_env: str | None):  # noqa: ANN202
    from .errors import ReleaseServerError
    from .signing import publisher

    passphrase = os.environ.get(passphrase_env) if passphrase_env else None
    try:
        return publisher.load_signer(key, publisher.signing_keys(state), passphrase)
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(EXIT_REFUSED)


def _signed_publish_role(server: str, token: str, component: str, metadata: dict, artifact: Path, key: str,
                         passphrase_env: str | None) -> dict:
    """Build the component role's next version with this release and sign it here."""
    from .errors import ReleaseServerError
    from .releases.schemas import normalise_version
    from .signing import publisher

    state = _signing_state(server, token, component)
    signer = _load_publisher_signer(state, key, passphrase_env)
    sha, length = publisher.file_sha256(artifact)
    try:
        role = publisher.publish_role(
            state, component=component, version=normalise_version(metadata["version"]), filename=artifact.name,
            sha256=sha, length=length, channels=metadata["channels"], critical=metadata["critical"],
            min_from_version=metadata.get("min_from_version"), requires=metadata["requires"],
            changelog=metadata.get("changelog", ""))
        return publisher.sign(role, signer)
    except (ReleaseServerError, ValueError) as e:
        click.echo(f"error: {getattr(e, 'message', e)}", err=True)
        sys.exit(EXIT_REFUSED)


@click.command("sign")
@click.option("--server", envvar="RELEASE_SERVER_URL", required=True, help="Server URL [env RELEASE_SERVER_URL].")
@click.option("--token", envvar="RELEASE_SERVER_TOKEN", required=True,
              help="Publisher API token [env RELEASE_SERVER_TOKEN].")
@click.option("--component", required=True)
@click.option("--version", "version", default=None, help="The release waiting for signatures (checked).")
@click.option("--key", "key", required=True, help="Publisher key: PEM file or securesystemslib signer URI.")
@click.option("--key-passphrase-env", metavar="VAR", help="Passphrase of the key file.")
@click.option("--yes", is_flag=True, help="Sign without asking.")
@click.option("--renew-days", type=click.IntRange(1, 3 * 365), default=None,
              help="Nothing pending: propose the role again, unchanged, expiring in this many days.")
def sign(server: str, token: str, component: str, version: str | None, key: str, key_passphrase_env: str | None,
         yes: bool, renew_days: int | None) -> None:
    """Add your signature to the change of a claimed component that waits for signatures."""
    from tuf.api.metadata import Metadata

    from .signing import publisher

    state = _signing_state(server, token, component)
    pending = state.get("pending")
    if renew_days is not None:
        if pending:
            click.echo(f"error: a {pending['action']} of {component} is waiting for signatures; sign it first",
                       err=True)
            sys.exit(EXIT_REFUSED)
        signer = _load_publisher_signer(state, key, key_passphrase_env)
        role = _or_refuse(lambda: publisher.change_role(state, component=component, version="", days=renew_days))
        body = _ok(*_api(server, token, "POST", f"/components/{component}/signing/proposals",
                         {"action": "renew", "tuf_role": publisher.sign(role, signer)}), "renewal")
        _say_outcome(component, body)
        return
    if not pending:
        click.echo(f"error: nothing of {component} is waiting for signatures", err=True)
        sys.exit(EXIT_REFUSED)
    if version is not None and pending.get("version") is not None:
        from .releases.schemas import normalise_version

        if normalise_version(version) != pending["version"]:
            click.echo(f"error: the pending change is {pending['action']} of {pending['version']}, not {version}",
                       err=True)
            sys.exit(EXIT_REFUSED)
    signer = _load_publisher_signer(state, key, key_passphrase_env)
    if state.get("role") is not None:
        publisher.current_role(state)  # the base it builds on is one the publishers signed
    click.echo(f"{component}: {pending['action']} {pending.get('version') or ''} proposed by {pending['created_by']}")
    for line in publisher.describe(pending["role"], state.get("role")):
        click.echo(f"  {line}")
    if not yes and not click.confirm("Sign this?", default=False):
        sys.exit(EXIT_REFUSED)
    role = Metadata.from_dict(json.loads(json.dumps(pending["role"])))
    sig = role.sign(signer, append=True)
    body = _ok(*_api(server, token, "POST", f"/components/{component}/signing/signatures",
                     {"signatures": [sig.to_dict()]}), "signing")
    _say_outcome(component, body)


def _say_outcome(component: str, body: dict) -> None:
    if body["applied"]:
        click.echo(f"signed; threshold met: {component} role v{body['role_version']} is published")
    else:
        click.echo(f"signed ({len(body['signed'])} of {body['threshold']}); awaited: "
                   + ", ".join(k[:16] for k in body["awaited"]))


def _or_refuse(build):  # noqa: ANN001, ANN202
    from .errors import ReleaseServerError

    try:
        return build()
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(EXIT_REFUSED)


def _release_change(action: str, server: str, token: str, component: str, version: str, key: str | None,
                    passphrase_env: str | None, body: dict, **change: object) -> None:
    """Yank, unyank or promote; a claimed component's role is re-signed here with ``key``."""
    from .releases.schemas import normalise_version
    from .signing import publisher

    if key is not None:
        state = _signing_state(server, token, component)
        signer = _load_publisher_signer(state, key, passphrase_env)
        role = _or_refuse(lambda: publisher.change_role(state, component=component,
                                                        version=normalise_version(version), **change))
        body = {**body, "tuf_role": publisher.sign(role, signer)}
    rel = _ok(*_api(server, token, "POST", f"/components/{component}/releases/{version}/{action}", body), action)
    if rel.get("signatures_pending") and rel.get("signatures"):
        sigs = rel["signatures"]
        click.echo(f"{action} of {component} {rel['version']}: pending signatures ({len(sigs['signed'])} of "
                   f"{sigs['threshold']}); another publisher runs release-server sign --component {component} "
                   f"--version {rel['version']} --key KEY")
    else:
        click.echo(f"{action}: {component} {rel['version']} (channels {', '.join(rel['channels'])}"
                   f"{', yanked' if rel['yanked'] else ''})")


_COMMON = [
    click.option("--server", envvar="RELEASE_SERVER_URL", required=True, help="Server URL [env RELEASE_SERVER_URL]."),
    click.option("--token", envvar="RELEASE_SERVER_TOKEN", required=True,
                 help="Publisher API token [env RELEASE_SERVER_TOKEN]."),
    click.option("--component", required=True),
    click.option("--version", "version", required=True),
    click.option("--sign-with", "sign_with", default=None, metavar="KEY",
                 help="Claimed components: your publisher key (PEM file or signer URI)."),
    click.option("--key-passphrase-env", metavar="VAR", help="Passphrase of the key file."),
]


def _common(fn):  # noqa: ANN001, ANN202
    for opt in reversed(_COMMON):
        fn = opt(fn)
    return fn


@click.command("yank")
@_common
@click.option("--reason", required=True)
def yank_cmd(server: str, token: str, component: str, version: str, sign_with: str | None,
             key_passphrase_env: str | None, reason: str) -> None:
    """Yank a release (a claimed component's yank is signed by its publishers)."""
    _release_change("yank", server, token, component, version, sign_with, key_passphrase_env, {"reason": reason},
                    yanked=True)


@click.command("unyank")
@_common
def unyank_cmd(server: str, token: str, component: str, version: str, sign_with: str | None,
               key_passphrase_env: str | None) -> None:
    """Undo a yank."""
    _release_change("unyank", server, token, component, version, sign_with, key_passphrase_env, {}, yanked=False)


@click.command("promote")
@_common
@click.option("--channel", required=True)
def promote_cmd(server: str, token: str, component: str, version: str, sign_with: str | None,
                key_passphrase_env: str | None, channel: str) -> None:
    """Add a release to a channel."""
    _release_change("promote", server, token, component, version, sign_with, key_passphrase_env,
                    {"channel": channel}, add_channel=channel)
