"""Fixtures for the TUF repository tests: a bootstrapped repository and an in-process TUF client.

``tuf_repo`` runs the non-interactive key ceremony for the ``app`` fixture (ed25519
keys in a temporary folder) and bootstraps the repository. ``tuf_client`` builds a
stock ``tuf.ngclient.Updater`` whose fetcher calls the Flask test client, so the
client side is the real python-tuf without opening a socket.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface


@dataclass
class TufRepo:
    app: Any
    root_dir: Path
    root_v1: bytes

    def root_signers(self) -> list[Any]:
        from release_server.signing import ceremony

        return ceremony.load_root_keys(self.root_dir)


def bootstrap_repository(app: Any, root_dir: Path) -> TufRepo:
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        result = ceremony.local_trial(db.session, root_dir)
        db.commit()
    return TufRepo(app, root_dir, result.root_file.read_bytes())


@pytest.fixture
def tuf_repo(app: Any, tmp_path: Path) -> TufRepo:
    return bootstrap_repository(app, tmp_path / "root-keys")


class TestClientFetcher(FetcherInterface):
    """Fetches through a Flask test client (or any ``get(path) -> response``); counts bytes."""

    __test__ = False

    def __init__(self, client: Any) -> None:
        self.client = client
        self.bytes = 0
        self.urls: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = urlsplit(url).path
        self.urls.append(path)
        resp = self.client.get(path)
        try:
            data = resp.get_data()
        finally:
            resp.close()
        if resp.status_code != 200:
            raise DownloadHTTPError(f"{path}: HTTP {resp.status_code}", resp.status_code)
        self.bytes += len(data)
        return iter([data])


@pytest.fixture
def tuf_client(app: Any, tuf_repo: TufRepo, tmp_path: Path) -> Callable[..., Updater]:
    """A factory of fresh Updaters sharing one local metadata cache (like an agent's checks)."""
    cache = tmp_path / "client-metadata"
    cache.mkdir()
    targets = tmp_path / "client-targets"

    def make(bootstrap: bytes | None = None, fetcher: FetcherInterface | None = None) -> Updater:
        return Updater(str(cache), "http://repo/tuf/metadata/", str(targets), "http://repo/tuf/targets/",
                       fetcher=fetcher or TestClientFetcher(app.test_client()),
                       bootstrap=bootstrap if bootstrap is not None else tuf_repo.root_v1)

    return make


@pytest.fixture
def fetcher_class() -> type[TestClientFetcher]:
    return TestClientFetcher


@pytest.fixture
def bootstrap() -> Callable[[Any, Path], TufRepo]:
    return bootstrap_repository
