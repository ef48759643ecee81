"""The ``release-server`` command line.

Its commands are a Flask CLI group bound to the app factory (:mod:`.server_cli`). The
client commands (:data:`CLIENT_COMMANDS`: ``publish``, ``sign``, ``yank``, ``unyank``,
``promote``) talk HTTP to a server; when one is named first on the command line it runs
on its own, without loading Flask or the application, so a CI job publishing a release
pays for the imports of the command it runs only (about a tenth of a second less). With
options before it (``--instance``, ``-v``), or for ``--help``, the whole group runs and
the same commands are found in it.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

#: client command -> (module, attribute); none of those modules loads Flask, SQLAlchemy or the application
CLIENT_COMMANDS: dict[str, tuple[str, str]] = {
    "publish": ("release_server.client_cli", "publish"),
    "sign": ("release_server.client_cli", "sign"),
    "yank": ("release_server.client_cli", "yank_cmd"),
    "unyank": ("release_server.client_cli", "unyank_cmd"),
    "promote": ("release_server.client_cli", "promote_cmd"),
}


def client_command(name: str) -> Any:
    """The click command of client command ``name``."""
    module, attribute = CLIENT_COMMANDS[name]
    return getattr(importlib.import_module(module), attribute)


def load_dotenv() -> None:
    """Read ``.env`` and ``.flaskenv`` as the whole group does (Flask's CLI): the nearest of each
    from the working folder up, never over what the environment already has (``.env`` first,
    so it wins), and not at all when ``FLASK_SKIP_DOTENV`` is set to anything but 0, false or no."""
    skip = os.environ.get("FLASK_SKIP_DOTENV")
    if skip and skip.lower() not in ("0", "false", "no"):
        return
    try:
        import dotenv
    except ImportError:  # python-dotenv is optional for Flask too
        return
    for name in (".env", ".flaskenv"):
        path = dotenv.find_dotenv(name, usecwd=True)
        if path:
            dotenv.load_dotenv(path, encoding="utf-8", override=False)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CLIENT_COMMANDS:
        from .errors import ReleaseServerError

        load_dotenv()  # RELEASE_SERVER_URL / _TOKEN may come from there, as through the group
        try:
            client_command(args[0]).main(args[1:], prog_name=f"release-server {args[0]}")
        except ReleaseServerError as e:  # as the whole group words it (server_cli.ReleaseServerGroup)
            print(f"error: {e.message}", file=sys.stderr)
            sys.exit(1)
        return
    from .server_cli import cli

    cli.main(args, prog_name="release-server")


if __name__ == "__main__":
    main()
