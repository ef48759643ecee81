"""Client-side commands of ``release-server``: they talk HTTP to a server with a token.

``publish`` streams the artifact (it is never read into memory) with a progress bar
and turns every refusal into a one-line message and a non-zero exit code.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


def _error_message(resp: requests.Response) -> str:
    try:
        err = resp.json()["error"]
        field = f" [{err['field']}]" if err.get("field") else ""
        return f"{resp.status_code} {err['code']}{field}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{resp.status_code} {resp.reason}"


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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def publish(server: str, token: str, component: str, version: str, channels: tuple[str, ...],
            changelog: Path | None, critical: bool, min_from_version: str | None, requires: tuple[str, ...],
            rollout_schedule: str | None, rollout_threshold: float, rollout_min_attempts: int, rollout_draft: bool,
            quiet: bool, artifact: Path) -> None:
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
    with artifact.open("rb") as fh:
        encoder = MultipartEncoder(fields={
            "metadata": json.dumps(metadata),
            "artifact": (artifact.name, fh, "application/octet-stream"),
        })
        bar = None
        if not quiet and sys.stderr.isatty() or os.environ.get("RELEASE_SERVER_PROGRESS") == "1":
            from tqdm import tqdm

            bar = tqdm(total=encoder.len, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=f"upload {artifact.name}", file=sys.stderr)
            last = [0]

            def progress(mon: MultipartEncoderMonitor) -> None:
                bar.update(mon.bytes_read - last[0])
                last[0] = mon.bytes_read

            body = MultipartEncoderMonitor(encoder, progress)
        else:
            body = encoder
        url = f"{server.rstrip('/')}/api/v1/components/{component}/releases"
        try:
            resp = requests.post(url, data=body, headers={"Content-Type": body.content_type,
                                                          "Authorization": f"Bearer {token}"}, timeout=(10, 3600))
        except requests.RequestException as e:
            click.echo(f"error: cannot reach {server}: {e}", err=True)
            sys.exit(EXIT_UNREACHABLE)
        finally:
            if bar is not None:
                bar.close()
    if resp.status_code != 201:
        click.echo(f"error: publish refused: {_error_message(resp)}", err=True)
        sys.exit(EXIT_REFUSED)
    rel = resp.json()
    click.echo(f"published {rel['component']} {rel['version']} ({size} bytes, sha256 {rel['artifact']['sha256']}) "
               f"on {', '.join(rel['channels'])}" + (" as a staged rollout" if rollout_schedule is not None else ""))
