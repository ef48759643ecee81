#!/usr/bin/env python3
"""How much TUF metadata a client downloads, with many releases in the repository.

Builds a throw-away instance (SQLite + local disk in a temporary folder), bootstraps
the TUF repository with the local key ceremony, publishes RELEASES releases through the
release services (each one signed by the same hook the API uses, one transaction each),
and then measures the bytes a stock ``tuf.ngclient.Updater`` downloads (through the
Flask test client, no sockets) in three situations:

* a client with an up-to-date cache checks and nothing is new;
* the same client checks after one new release and fetches that target's info;
* a new client, bootstrapped with root v1 only, fetches that one target's info.

Usage: python scripts/bench/tuf_metadata_size.py [--releases 10000] [--components 10] [--keep DIR]
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BUDGET = 100 * 1024


def build_fetcher(app: Any) -> Any:
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.ngclient.fetcher import FetcherInterface

    class CountingFetcher(FetcherInterface):
        """Fetches through the app's test client and records every download."""

        def __init__(self) -> None:
            self.client = app.test_client()
            self.log: list[tuple[str, int, int]] = []

        def _fetch(self, url: str):  # type: ignore[no-untyped-def]
            path = urlsplit(url).path
            resp = self.client.get(path)
            try:
                data = resp.get_data()
            finally:
                resp.close()
            self.log.append((path.rsplit("/", 1)[-1], resp.status_code, len(data)))
            if resp.status_code != 200:
                raise DownloadHTTPError(f"{path}: HTTP {resp.status_code}", resp.status_code)
            return iter([data])

        def reset(self) -> None:
            self.log.clear()

        @property
        def metadata_bytes(self) -> int:
            return sum(n for _, status, n in self.log if status == 200)

    return CountingFetcher()


def publish_release(app: Any, component: str, version: str) -> str:
    from release_server.db import db
    from release_server.releases import services
    from release_server.releases.schemas import PublishMetadata
    from release_server.storage import get_storage

    with app.app_context():
        meta = PublishMetadata(version=version, channels=["stable"], changelog=f"* changes in {version}\n")
        plan = services.plan_publish(db.session, component, meta)
        blob = get_storage().put_stream(io.BytesIO(f"{component} {version}".encode()))
        release = services.create_release(db.session, plan, blob, f"{component}-{version}.tar.gz", "bench")
        db.commit()
        return f"{component}/{release.artifact_filename}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--keep", type=Path, default=None, help="Build the instance here and keep it.")
    args = parser.parse_args()

    from tuf.ngclient import Updater

    from release_server import create_app
    from release_server.db import db
    from release_server.migrations import upgrade
    from release_server.releases import services as releases
    from release_server.signing import ceremony

    work = args.keep or Path(tempfile.mkdtemp(prefix="tuf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    app = create_app({"INSTANCE_PATH": str(work / "instance"), "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
                      "STORAGE_PATH": str(work / "blobs"), "SECRET_KEY": "bench"})
    try:
        with app.app_context():
            upgrade(db.engine)
            root_v1 = ceremony.local_trial(db.session, work / "root-keys").root_file.read_bytes()
            components = [f"c{i}" for i in range(args.components)]
            for name in components:
                releases.create_component(db.session, name)
            db.commit()

        started = time.monotonic()
        for n in range(args.releases):
            publish_release(app, components[n % len(components)], f"1.{n // len(components)}.0")
            if (n + 1) % 1000 == 0:
                print(f"  published {n + 1} releases ({time.monotonic() - started:.0f}s)", file=sys.stderr)
        publish_seconds = time.monotonic() - started

        fetcher = build_fetcher(app)
        cache = work / "client-cache"
        cache.mkdir(exist_ok=True)

        def updater(cache_dir: Path) -> Updater:
            return Updater(str(cache_dir), "http://bench/tuf/metadata/", str(work / "dl"),
                           "http://bench/tuf/targets/", fetcher=fetcher, bootstrap=root_v1)

        updater(cache).refresh()  # the client is up to date
        rows = []

        fetcher.reset()
        updater(cache).refresh()
        rows.append(("check, nothing new", list(fetcher.log), fetcher.metadata_bytes))

        new_path = publish_release(app, components[0], "9.0.0")
        fetcher.reset()
        u = updater(cache)
        u.refresh()
        assert u.get_targetinfo(new_path) is not None
        rows.append(("check + one new target", list(fetcher.log), fetcher.metadata_bytes))

        fresh = work / "fresh-cache"
        fresh.mkdir(exist_ok=True)
        fetcher.reset()
        u = updater(fresh)
        u.refresh()
        assert u.get_targetinfo(new_path) is not None
        rows.append(("new client, one target", list(fetcher.log), fetcher.metadata_bytes))

        print(f"\nTUF metadata downloaded with {args.releases + 1} releases "
              f"({2 * (args.releases + 1)} targets: artifacts and changelogs), 256 hash bins; "
              f"built in {publish_seconds:.0f}s\n")
        print(f"{'scenario':<26} {'bytes':>8} {'of 100 KB':>10}  files (name status bytes)")
        for name, log, total in rows:
            files = ", ".join(f"{f} {s} {n}" for f, s, n in log)
            print(f"{name:<26} {total:>8} {total / BUDGET:>9.1%}  {files}")
        worst = max(total for _, _, total in rows)
        print(f"\nlargest: {worst} bytes = {worst / BUDGET:.1%} of the 100 KB budget "
              f"(ratio {worst / BUDGET:.3f})")
        return 0 if worst < BUDGET else 1
    finally:
        app.extensions["db_engine"].dispose()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
