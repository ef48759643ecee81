"""Commands ``release-server keys ...``, ``release-server tuf ...`` and ``release-server worker``.

``keys`` is the key ceremony and key rotation (run where the root keys are);
``tuf`` loads a root into the server, refreshes, exports and reports the repository.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from securesystemslib.signer import Key, Signer

from ..errors import ReleaseServerError
from . import ceremony
from . import keys as keys_mod
from . import services


def _fail(e: ReleaseServerError) -> None:
    click.echo(f"error: {e.message}", err=True)
    sys.exit(1)


def _env_secret(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise click.UsageError(f"environment variable {name} is empty or not set")
    return value


def _new_passphrase(passphrase_env: str | None, no_passphrase: bool, what: str) -> str | None:
    if no_passphrase:
        return None
    value = _env_secret(passphrase_env)
    if value is None:
        value = click.prompt(f"Passphrase for the {what}", hide_input=True, confirmation_prompt=True)
    return value


def _load_root_signers(paths: tuple[Path, ...], passphrase_env: str | None) -> list[Signer]:
    passphrase = _env_secret(passphrase_env)
    signers: list[Signer] = []
    for path in paths:
        secret = passphrase
        if secret is None and keys_mod.is_encrypted(path):
            secret = click.prompt(f"Passphrase for {path}", hide_input=True)
        signers.append(keys_mod.load_private_file(path, secret))
    return signers


def _settings() -> services.RepositorySettings:
    return services.settings()


# ---------------------------------------------------------------- keys


@click.group("keys", help="TUF key ceremony and key rotation.")
def keys_group() -> None:
    pass


@keys_group.command("init-root")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the private root keys and 1.root.json (ideally removable, offline media).")
@click.option("--keys", "n_keys", type=click.IntRange(3, 15), default=3, show_default=True)
@click.option("--threshold", type=click.IntRange(2, 15), default=2, show_default=True)
@click.option("--passphrase-env", metavar="VAR", help="Read the root keys' passphrase from this variable.")
@click.option("--no-passphrase", is_flag=True, help="Write the root keys unencrypted (local trials only).")
@click.option("--online-public-keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File from 'keys export-online' (offline ceremony). Default: the instance key folder, "
                   "creating missing online keys.")
@click.option("--if-missing", is_flag=True, help="Do nothing when OUT already holds a root (for scripts).")
@with_appcontext
def keys_init_root(out_dir: Path, n_keys: int, threshold: int, passphrase_env: str | None, no_passphrase: bool,
                   online_public_keys: Path | None, if_missing: bool) -> None:
    """Create the root keys and sign root v1 naming the online keys."""
    if if_missing and (out_dir / ceremony.ROOT_FILE).exists():
        click.echo(f"root keys already in {out_dir}")
        return
    try:
        if online_public_keys is not None:
            online: dict[str, Key] = ceremony.read_online_public_keys(online_public_keys)
        else:
            folder = keys_mod.key_dir(current_app.config, current_app.instance_path)
            online = {r: s.public_key for r, s in keys_mod.ensure_online_keys(folder).items()}
            click.echo(f"online keys (targets, snapshot, timestamp) in {folder}")
        passphrase = _new_passphrase(passphrase_env, no_passphrase, "root keys")
        result = ceremony.init_root(out_dir, online=online, now=services.utcnow(),
                                    expires_seconds=_settings().root_expiry, n_keys=n_keys, threshold=threshold,
                                    passphrase=passphrase)
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"root keys ({n_keys}, threshold {threshold}) written to {out_dir.resolve()}:")
    for f in result.key_files:
        click.echo(f"  {f.resolve()}")
    click.echo(f"root v1: {result.root_file.resolve()}")
    click.echo("Keep the root keys offline; give the server 1.root.json: release-server tuf bootstrap "
               f"{result.root_file}")


@keys_group.command("export-online")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Default: standard output.")
@with_appcontext
def keys_export_online(out_file: Path | None) -> None:
    """Write the online public keys (creating missing online keys) for an offline ceremony."""
    folder = keys_mod.key_dir(current_app.config, current_app.instance_path)
    text = ceremony.online_public_keys_json({r: s.public_key for r, s in keys_mod.ensure_online_keys(folder).items()})
    if out_file is None:
        click.echo(text)
    else:
        out_file.write_text(text + "\n")
        click.echo(f"online public keys written to {out_file}")


@keys_group.command("rotate-root")
@click.option("--root-key", "root_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A current root key (repeat up to the current threshold).")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase of the current root keys.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the new root keys.")
@click.option("--keys", "n_keys", type=click.IntRange(3, 15), default=3, show_default=True)
@click.option("--threshold", type=click.IntRange(2, 15), default=2, show_default=True)
@click.option("--new-passphrase-env", metavar="VAR", help="Passphrase for the new root keys.")
@click.option("--no-passphrase", is_flag=True, help="Write the new root keys unencrypted.")
@with_appcontext
def keys_rotate_root(root_keys: tuple[Path, ...], passphrase_env: str | None, out_dir: Path, n_keys: int,
                     threshold: int, new_passphrase_env: str | None, no_passphrase: bool) -> None:
    """Replace the root keys: the new root is signed by the current threshold and the new one."""
    from ..db import db

    if ceremony.root_key_files(out_dir):
        _fail(ReleaseServerError(f"{out_dir} already holds root keys; choose an empty folder"))
    try:
        current = _load_root_signers(root_keys, passphrase_env)
        passphrase = _new_passphrase(new_passphrase_env, no_passphrase, "new root keys")
        new = [keys_mod.generate_signer() for _ in range(n_keys)]
        root = services.rotate_root(db.session, current_signers=current, new_signers=new, threshold=threshold)
        files = ceremony.write_root_keys(out_dir, new, passphrase)
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    click.echo(f"root v{root.signed.version} signed; new root keys in {out_dir.resolve()}:")
    for f in files:
        click.echo(f"  {f.resolve()}")
    click.echo("The old root keys no longer sign anything: destroy them once the new ones are safe.")


@keys_group.command("rotate-online")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(keys_mod.ONLINE_ROLES))
@click.option("--root-key", "root_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A root key (up to the threshold).")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase of the root keys.")
@click.option("--key-file", "key_files", multiple=True, metavar="ROLE=PEM",
              help="Use this private key for ROLE instead of generating one (already copied to every node).")
@with_appcontext
def keys_rotate_online(roles: tuple[str, ...], root_keys: tuple[Path, ...], passphrase_env: str | None,
                       key_files: tuple[str, ...]) -> None:
    """Replace online keys (root N+1 with old and new keys, re-sign, root N+2 without the old keys)."""
    from ..db import db

    given: dict[str, Path] = {}
    for item in key_files:
        role, sep, path = item.partition("=")
        if not sep or role not in roles:
            raise click.BadParameter(f"{item!r}: expected ROLE=PEM for a rotated role", param_hint="--key-file")
        given[role] = Path(path)
    folder = keys_mod.key_dir(current_app.config, current_app.instance_path)
    try:
        root_signers = _load_root_signers(root_keys, passphrase_env)
        new: dict[str, Signer] = {}
        for role in roles:
            signer = keys_mod.load_private_file(given[role]) if role in given else keys_mod.generate_signer()
            keys_mod.save_online_key(folder, role, signer)
            new[role] = signer
        versions = services.rotate_online_keys(db.session, root_signers=root_signers, new_signers=new)
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    click.echo(f"rotated {', '.join(roles)}: root v{versions[0]} (old and new keys), metadata re-signed, "
               f"root v{versions[1]} (new keys only); new keys in {folder}")


# ---------------------------------------------------------------- tuf


@click.group("tuf", help="The TUF repository: bootstrap, refresh, export, status.")
def tuf_group() -> None:
    pass


@tuf_group.command("bootstrap")
@click.argument("root_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--if-needed", is_flag=True, help="Do nothing when the repository is already bootstrapped.")
@with_appcontext
def tuf_bootstrap(root_file: Path, if_needed: bool) -> None:
    """Load ROOT_FILE (root v1 from the key ceremony) and sign the first metadata."""
    from ..db import db

    if if_needed and services.repository_ready(db.session):
        click.echo(f"TUF repository ready (root v{services.root_version(db.session)})")
        return
    try:
        root = services.bootstrap(db.session, root_file.read_bytes())
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    click.echo(f"TUF repository bootstrapped with root v{root.signed.version}; "
               "metadata served under /tuf/metadata/, targets under /tuf/targets/")


@tuf_group.command("refresh")
@click.option("--force", is_flag=True, help="Re-sign every online role, due or not.")
@with_appcontext
def tuf_refresh(force: bool) -> None:
    """Re-sign the roles close to expiry."""
    from ..db import db

    try:
        roles = services.refresh(db.session, force=force)
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    click.echo(f"re-signed: {', '.join(roles)}" if roles else "nothing due")


@tuf_group.command("export")
@click.argument("dest")
@with_appcontext
def tuf_export(dest: str) -> None:
    """Copy metadata/ and targets/ to DEST (a folder or s3://bucket/prefix) for static serving."""
    from ..db import db

    try:
        summary = services.export_tree(db.session, dest)
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"exported to {dest}: {summary.written} written, {summary.skipped} unchanged")


@tuf_group.command("status")
@with_appcontext
def tuf_status() -> None:
    """Version and expiry of every role."""
    from ..db import db

    if not services.repository_ready(db.session):
        click.echo("not bootstrapped")
        sys.exit(1)
    for s in services.status(db.session):
        click.echo(f"{s.name:<16} v{s.version:<8} expires {s.expires.isoformat()}")


@tuf_group.command("root")
@with_appcontext
def tuf_root() -> None:
    """Print the current root metadata (what agents are bootstrapped with)."""
    from ..db import db

    try:
        click.echo(services.trusted_root_json(db.session).decode())
    except ReleaseServerError as e:
        _fail(e)


@tuf_group.command("claim")
@click.argument("component")
@click.option("--public-key", "public_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A publisher's public key (PEM; repeat for each publisher).")
@click.option("--threshold", type=click.IntRange(1, 64), required=True,
              help="How many publisher signatures a change of the component needs.")
@click.option("--root-key", "root_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A root key (up to the root threshold): the top-level targets role is signed with them.")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase of the root keys.")
@with_appcontext
def tuf_claim(component: str, public_keys: tuple[Path, ...], threshold: int, root_keys: tuple[Path, ...],
              passphrase_env: str | None) -> None:
    """Claim COMPONENT for publisher keys: its role is signed by them, never by the server.

    Run where the root keys are. The first claim moves the repository to the claimed
    layout by a root rotation (top-level targets signed with the root keys).
    """
    from ..accounts.services import audit
    from ..db import db
    from . import claims

    try:
        keys = [claims.parse_public_key(p.read_bytes()) for p in public_keys]
        signers = _load_root_signers(root_keys, passphrase_env)
        result = claims.claim(db.session, component, keys, threshold, root_signers=signers, actor="cli")
        audit(db.session, "cli", "component.claim", f"component:{result.component}",
              {"keyids": [k.keyid for k in keys], "threshold": threshold, "root_version": result.root_version})
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    if result.root_version is not None:
        click.echo(f"root v{result.root_version}: top-level targets is now signed offline with the root keys")
    click.echo(f"claimed {result.component} for {len(keys)} publisher key(s), threshold {threshold} "
               f"(targets v{result.targets_version})")
    if result.pending_releases:
        click.echo(f"{result.pending_releases} existing release(s) wait for the publishers' signatures: "
                   f"release-server sign --component {result.component} --key KEY")


@keys_group.command("new-publisher-key")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Private key file to write (PEM, mode 0600); the public key goes to OUT.pub.")
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the private key with this variable's value.")
def keys_new_publisher_key(out_file: Path, passphrase_env: str | None) -> None:
    """Create a publisher's key pair on the publisher's own machine (ed25519)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if out_file.exists():
        _fail(ReleaseServerError(f"{out_file} exists; refusing to overwrite a key"))
    signer = keys_mod.generate_signer()
    keys_mod.write_private_file(out_file, keys_mod.private_pem(signer, _env_secret(passphrase_env)))
    pub = signer._private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)  # noqa: SLF001
    out_file.with_name(out_file.name + ".pub").write_bytes(pub)
    click.echo(f"private key {out_file} (keep it on this machine); public key {out_file}.pub "
               f"(keyid {signer.public_key.keyid[:16]}): give it to the operator for 'tuf claim'")


@tuf_group.command("claim-keys")
@click.argument("component")
@click.option("--add-key", "add_keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A new publisher's public key (PEM; repeatable).")
@click.option("--remove-key", "remove_keys", multiple=True, metavar="KEYID",
              help="A publisher key to remove, by keyid (at least its first 8 characters; repeatable).")
@click.option("--threshold", type=click.IntRange(1, 64), default=None, help="The new signature threshold.")
@click.option("--root-key", "root_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A root key (up to the threshold).")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase of the root keys.")
@with_appcontext
def tuf_claim_keys(component: str, add_keys: tuple[Path, ...], remove_keys: tuple[str, ...], threshold: int | None,
                   root_keys: tuple[Path, ...], passphrase_env: str | None) -> None:
    """Add, remove or rotate a claimed component's publisher keys, or change its threshold."""
    from ..accounts.services import audit
    from ..db import db
    from . import claims

    if not (add_keys or remove_keys or threshold):
        raise click.UsageError("give --add-key, --remove-key or --threshold")
    try:
        add = [claims.parse_public_key(p.read_bytes()) for p in add_keys]
        signers = _load_root_signers(root_keys, passphrase_env)
        result = claims.change_keys(db.session, component, add=add, remove=remove_keys, threshold=threshold,
                                    root_signers=signers, actor="cli")
        audit(db.session, "cli", "component.claim_keys", f"component:{component}",
              {"keyids": result.keyids, "threshold": result.threshold, "applied": result.applied})
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    keys = ", ".join(k[:16] for k in result.keyids)
    if result.applied:
        click.echo(f"{component}: publisher keys {keys}, threshold {result.threshold} (targets v{result.targets_version})")
    else:
        click.echo(f"{component}: the new keys ({keys}, threshold {result.threshold}) take effect once "
                   f"{result.threshold} of them re-sign the role: release-server sign --component {component} --key KEY")


@tuf_group.command("renew-targets")
@click.option("--root-key", "root_keys", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A root key (up to the threshold).")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase of the root keys.")
@with_appcontext
def tuf_renew_targets(root_keys: tuple[Path, ...], passphrase_env: str | None) -> None:
    """Re-sign the offline top-level targets role with a new expiry (claimed layout)."""
    from ..db import db
    from . import claims

    try:
        version = claims.renew_targets(db.session, root_signers=_load_root_signers(root_keys, passphrase_env))
        db.commit()
    except ReleaseServerError as e:
        db.rollback()
        _fail(e)
    click.echo(f"targets v{version} signed with the root keys")
