"""The agent's transfer choice (pure) and the patch format (build, apply, refuse)."""
from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pytest

from client_agent import deltapatch
from client_agent.delta import ArtifactStore, FileRef, KeptArtifact, SignedDelta, TransferPlan, choose_transfer

FULL = FileRef("f" * 64, 1000, "app/app-1.1.tar.gz")
INSTALLED = FileRef("e" * 64, 990, "app/app-1.0.tar.gz")


def delta(**changes) -> SignedDelta:
    fields = dict(path="app/deltas/1.0-1.1.rsdpatch", length=50, sha256="d" * 64, patch_format=deltapatch.FORMAT,
                  from_artifact=INSTALLED, to_artifact=FULL, base_tar=FileRef("b" * 64, 5000),
                  tar=FileRef("c" * 64, 5100))
    fields.update(changes)
    return SignedDelta(**fields)


KEPT = KeptArtifact("1.0", Path("/state/artifacts/app/1.0.x.tar.gz"))


def choose(**kw) -> TransferPlan:
    args = dict(full=FULL, installed_version="1.0", installed=INSTALLED, delta=delta(), kept=KEPT)
    args.update(kw)
    return choose_transfer(**args)


def test_the_patch_is_chosen_when_it_fits_and_is_smaller():
    plan = choose()
    assert plan.method == "delta" and plan.delta == delta() and plan.reason is None


@pytest.mark.parametrize("kw, reason", [
    ({"installed_version": None}, "nothing installed"),
    ({"delta": None}, "no patch from 1.0"),
    ({"delta": delta(patch_format="other/9")}, "unknown patch format"),
    ({"delta": delta(to_artifact=FileRef("0" * 64, 1000, FULL.path))}, "does not lead to the offered"),
    ({"delta": delta(from_artifact=FileRef("0" * 64, 990, INSTALLED.path))}, "not from the installed"),
    ({"installed": None}, "not from the installed"),
    ({"kept": None}, "artifact of 1.0 is not kept"),
    ({"kept": KeptArtifact("0.9", KEPT.path)}, "artifact of 1.0 is not kept"),
    ({"delta": delta(length=1000)}, "not smaller"),
])
def test_otherwise_the_full_artifact(kw, reason):
    plan = choose(**kw)
    assert plan.method == "full" and reason in plan.reason


def test_signed_delta_reads_only_well_formed_entries():
    from tuf.api.metadata import TargetFile

    custom = {"kind": "delta", "format": deltapatch.FORMAT,
              "from": {"path": INSTALLED.path, "sha256": INSTALLED.sha256, "length": INSTALLED.length},
              "to": {"path": FULL.path, "sha256": FULL.sha256, "length": FULL.length},
              "base_tar": {"sha256": "b" * 64, "length": 5000}, "tar": {"sha256": "c" * 64, "length": 5100}}
    info = TargetFile(50, {"sha256": "d" * 64}, "app/deltas/1.0-1.1.rsdpatch", {"custom": custom})
    assert SignedDelta.from_target(info) == delta()
    broken = TargetFile(50, {"sha256": "d" * 64}, info.path, {"custom": {**custom, "tar": {"sha256": "c"}}})
    assert SignedDelta.from_target(broken) is None
    artifact = TargetFile(50, {"sha256": "d" * 64}, info.path, {"custom": {"version": "1.1"}})
    assert SignedDelta.from_target(artifact) is None


def test_the_store_keeps_one_artifact_per_component(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.kept("app") is None
    for v in ("1.0", "1.1"):
        f = tmp_path / f"dl-{v}.tar.gz"
        f.write_bytes(v.encode())
        store.keep("app", v, f)
        assert not f.exists()
    kept = store.kept("app")
    assert kept.version == "1.1" and kept.path.read_bytes() == b"1.1"
    assert sorted(p.name for p in (tmp_path / "artifacts" / "app").iterdir()) == ["1.1.dl-1.1.tar.gz", "kept.json"]

    # a .tar.gz is kept as its tar stream (no decompression while the next update waits)
    gz = tmp_path / "app-1.2.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        info = tarfile.TarInfo("VERSION")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"1.2"))
    store.keep("app", "1.2", gz)
    kept = store.kept("app")
    assert kept.path.name == "1.2.tar" and not deltapatch.is_gzip(kept.path) and tarfile.is_tarfile(kept.path)
    assert not gz.exists()


# --------------------------------------------------------------------------- the format


def tar_of(files: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


RNG = random.Random(3)
BIG = RNG.randbytes(100_000)
TEXT = "".join(f"line {i}: {RNG.random()}\n" for i in range(3000)).encode()


def test_a_patch_copies_unchanged_members_diffs_changed_ones_and_rebuilds_the_tar(tmp_path):
    old = tar_of({"lib/big.so": BIG, "app/code.py": TEXT, "gone.txt": b"bye"}, tmp_path / "old.tar")
    new = tar_of({"lib/moved.so": BIG, "app/code.py": TEXT.replace(b"line 10:", b"LINE 10:"),
                  "new.txt": RNG.randbytes(1000)}, tmp_path / "new.tar")
    stats = deltapatch.build_patch(old, new, tmp_path / "p")
    assert stats.copied == len(BIG) + 512  # found by content under another name; code.py's header is the same
    assert stats.diffed == len(TEXT)
    assert (tmp_path / "p").stat().st_size < 3000
    want = deltapatch.file_digest(new)
    got = deltapatch.apply_patch(old, tmp_path / "p", tmp_path / "out.tar", max_output=want.length)
    assert got == want and (tmp_path / "out.tar").read_bytes() == new.read_bytes()


def test_changed_members_over_the_limit_go_as_literals_unchanged_ones_as_copies(tmp_path):
    old = tar_of({"a": TEXT, "b": BIG}, tmp_path / "old.tar")
    new = tar_of({"a": TEXT + b"more", "b": BIG}, tmp_path / "new.tar")
    stats = deltapatch.build_patch(old, new, tmp_path / "p", member_limit=1000)
    assert stats.diffed == 0 and stats.copied == len(BIG) + 512  # b's content and its unchanged header
    assert stats.literal == new.stat().st_size - len(BIG) - 512
    want = deltapatch.file_digest(new)
    assert deltapatch.apply_patch(old, tmp_path / "p", tmp_path / "o", max_output=want.length) == want


def test_a_damaged_patch_or_a_wrong_base_is_an_error_not_a_wrong_file(tmp_path):
    old = tar_of({"a": TEXT, "b": BIG}, tmp_path / "old.tar")
    new = tar_of({"a": TEXT + b"x", "b": BIG}, tmp_path / "new.tar")
    deltapatch.build_patch(old, new, tmp_path / "p")
    want = deltapatch.file_digest(new)
    data = (tmp_path / "p").read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) // 2])
    with pytest.raises(deltapatch.PatchFormatError):
        deltapatch.apply_patch(old, tmp_path / "cut", tmp_path / "o", max_output=want.length)
    (tmp_path / "junk").write_bytes(b"not a patch at all")
    with pytest.raises(deltapatch.PatchFormatError):
        deltapatch.apply_patch(old, tmp_path / "junk", tmp_path / "o", max_output=want.length)
    with pytest.raises(deltapatch.PatchFormatError):  # output bounded by the signed length
        deltapatch.apply_patch(old, tmp_path / "p", tmp_path / "o", max_output=want.length - 1)
    short = tar_of({"a": TEXT}, tmp_path / "short.tar")  # copies past the end of a wrong base
    with pytest.raises(deltapatch.PatchFormatError):
        deltapatch.apply_patch(short, tmp_path / "p", tmp_path / "o", max_output=want.length)


def test_to_tar_refuses_what_is_not_a_tar(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04" + b"\0" * 600)
    with pytest.raises(deltapatch.PatchFormatError):
        deltapatch.to_tar(tmp_path / "x.zip", tmp_path / "x.tar")


# --------------------------------------------------------------------------- fetching, with an in-memory repository


class FakeSession:
    """Stands in for a TufSession: signed entries by path, downloads from memory."""

    def __init__(self, files: dict[str, tuple[bytes, dict]]) -> None:
        from tuf.api.metadata import TargetFile

        self.infos = {p: TargetFile.from_data(p, data) for p, (data, _) in files.items()}
        for p, (_, custom) in files.items():
            self.infos[p].unrecognized_fields["custom"] = custom
        self.data = {p: data for p, (data, _) in files.items()}
        self.downloads: list[str] = []
        self.corrupt: set[str] = set()

    def target(self, path):
        info = self.infos.get(path)
        return None if info is None else (info, None)

    def download(self, info, dest_dir, progress=None):
        from client_agent.trust import VerificationError

        self.downloads.append(info.path)
        if info.path in self.corrupt:
            raise VerificationError("verification_failed", "does not match the signed hashes", info.path)
        data = self.data[info.path]
        if progress:
            progress(0, len(data), 0)
            progress(len(data), len(data), 0)
        out = Path(dest_dir) / f"{info.hashes['sha256']}.{info.path.rpartition('/')[2]}"
        out.write_bytes(data)
        return out


def gz_of(tar: Path) -> bytes:
    import gzip

    return gzip.compress(tar.read_bytes(), mtime=0)


def repository(tmp_path: Path) -> tuple[FakeSession, Path, Path]:
    old = tar_of({"lib/big.so": BIG, "app/code.py": TEXT}, tmp_path / "old.tar")
    new = tar_of({"lib/big.so": BIG, "app/code.py": TEXT + b"# 1.1\n"}, tmp_path / "new.tar")
    deltapatch.build_patch(old, new, tmp_path / "patch")
    old_gz, new_gz, patch = gz_of(old), gz_of(new), (tmp_path / "patch").read_bytes()
    import hashlib

    def ref(path, data):
        return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}

    custom = {"kind": "delta", "format": deltapatch.FORMAT, "from": ref("app/app-1.0.tar.gz", old_gz),
              "to": ref("app/app-1.1.tar.gz", new_gz), "base_tar": deltapatch.file_digest(old).to_json(),
              "tar": deltapatch.file_digest(new).to_json()}
    session = FakeSession({"app/app-1.0.tar.gz": (old_gz, {"version": "1.0"}),
                           "app/app-1.1.tar.gz": (new_gz, {"version": "1.1"}),
                           "app/deltas/1.0-1.1.rsdpatch": (patch, custom)})
    return session, old, new


def fetch(session: FakeSession, tmp_path: Path, store: ArtifactStore):
    from client_agent.delta import fetch_release

    return fetch_release(session, session.infos["app/app-1.1.tar.gz"], component="app", installed_version="1.0",
                         installed_path="app/app-1.0.tar.gz", store=store, downloads=tmp_path / "dl")


def test_fetch_applies_the_patch_to_the_kept_tar_and_reuses_the_result(tmp_path):
    session, old, new = repository(tmp_path)
    store = ArtifactStore(tmp_path / "artifacts")
    (tmp_path / "kept.tar.gz").write_bytes(gz_of(old))
    store.keep("app", "1.0", tmp_path / "kept.tar.gz")
    got = fetch(session, tmp_path, store)
    assert got.method == "delta" and got.fallback is None
    assert got.path.read_bytes() == new.read_bytes()
    assert got.bytes_downloaded == len(session.data["app/deltas/1.0-1.1.rsdpatch"])
    assert got.bytes_full == len(session.data["app/app-1.1.tar.gz"])
    again = fetch(session, tmp_path, store)  # e.g. waiting for the maintenance window
    assert again.path == got.path and again.bytes_downloaded == 0
    assert session.downloads == ["app/deltas/1.0-1.1.rsdpatch"]


def test_fetch_falls_back_to_the_full_artifact_and_says_why(tmp_path):
    session, old, new = repository(tmp_path)
    store = ArtifactStore(tmp_path / "artifacts")
    damaged = bytearray(old.read_bytes())
    damaged[1000] ^= 0xFF  # same length, other bytes: the output cannot match its signed hash
    (tmp_path / "kept.tar").write_bytes(bytes(damaged))
    store.keep("app", "1.0", tmp_path / "kept.tar")
    got = fetch(session, tmp_path, store)
    assert got.method == "full" and "does not match its signed hash" in got.fallback
    assert got.path.read_bytes() == session.data["app/app-1.1.tar.gz"]
    assert got.report_details() == {"transfer": "full", "delta_fallback": got.fallback}

    session.corrupt.add("app/deltas/1.0-1.1.rsdpatch")  # TUF refuses the patch's bytes
    got = fetch(session, tmp_path, store)
    assert got.method == "full" and got.fallback.startswith("patch refused")
