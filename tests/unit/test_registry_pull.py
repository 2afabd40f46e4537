"""The model registry and ``pull`` against the suite's own file server (tests/fileserver.py):
a connection that drops mid-file is resumed with ranges, a corrupted transfer is refused and
deleted, a wrong expected hash and a missing one are clear errors, an interrupted pull carries
on from its part file, and a server that ignores ranges is read again from the start."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from seekport.store.pull import PullError, pull, source_of
from seekport.store.registry import Registry, RegistryError
from tests.fileserver import Faults, FileServer, serve_files

BLOB = os.urandom(1_000_003)  # not a multiple of the chunk size
DIGEST = hashlib.sha256(BLOB).hexdigest()


def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_a_dropped_connection_is_resumed_with_ranges(tmp_path: Path) -> None:
    fs = FileServer({"m/model.gguf": BLOB}, Faults(drop_after=300_000, drops=3))
    with serve_files(fs):
        entry = pull(registry(tmp_path), fs.url("m/model.gguf"), sha256=DIGEST, backoff_s=0.01)
    ranges = [r for p, r in fs.hits if p == "m/model.gguf"]
    assert ranges == [None, "bytes=300000-", "bytes=600000-", "bytes=900000-"]
    reg = registry(tmp_path)
    assert (entry.name, entry.version, entry.sha256, entry.size) == (
        "model",
        "1",
        DIGEST,
        len(BLOB),
    )
    assert reg.resolve("model@1").read_bytes() == BLOB
    assert entry.source == fs.url("m/model.gguf")
    assert not any(reg.downloads().iterdir())  # the part became the registered file


def test_a_corrupted_transfer_is_refused_and_deleted(tmp_path: Path) -> None:
    fs = FileServer({"model.gguf": BLOB}, Faults(corrupt_at=123_456))
    reg = registry(tmp_path)
    with serve_files(fs), pytest.raises(PullError, match="SHA-256 mismatch") as err:
        pull(reg, fs.url("model.gguf"), sha256=DIGEST)
    assert DIGEST in str(err.value)
    assert reg.entries() == []
    assert not any(reg.downloads().iterdir())  # nothing half-trusted is kept


def test_the_expected_hash_comes_from_a_manifest_or_a_file_beside_it(tmp_path: Path) -> None:
    sums = f"{'0' * 64}  other.gguf\n{DIGEST}  model.gguf\n".encode()
    files = {"model.gguf": BLOB, "SHA256SUMS": sums, "b/model.gguf": BLOB}
    files["b/model.gguf.sha256"] = f"{DIGEST}  model.gguf\n".encode()
    files["OTHERSUMS"] = f"{DIGEST}  other.gguf\n".encode()
    fs = FileServer(files)
    reg = registry(tmp_path)
    with serve_files(fs):
        a = pull(reg, fs.url("model.gguf"), manifest=fs.url("SHA256SUMS"), name="a")
        b = pull(reg, fs.url("b/model.gguf"), name="b")
        with pytest.raises(PullError, match=r"no SHA-256 for model\.gguf"):
            pull(reg, fs.url("model.gguf"), manifest=fs.url("OTHERSUMS"))
    assert a.sha256 == b.sha256 == DIGEST


def test_without_an_expected_hash_the_pull_is_refused_unless_asked(tmp_path: Path) -> None:
    fs = FileServer({"model.gguf": BLOB})
    reg = registry(tmp_path)
    with serve_files(fs):
        with pytest.raises(PullError, match="--sha256"):
            pull(reg, fs.url("model.gguf"))
        assert [p for p, _ in fs.hits] == ["model.gguf.sha256"]  # no byte of the model
        entry = pull(reg, fs.url("model.gguf"), verify=False)
    assert entry.sha256 == DIGEST


def test_an_interrupted_pull_carries_on_from_its_part(tmp_path: Path) -> None:
    fs = FileServer({"model.gguf": BLOB}, Faults(drop_after=400_000, drops=10))
    reg = registry(tmp_path)
    with serve_files(fs):
        with pytest.raises(PullError, match="run the same pull again to resume"):
            pull(reg, fs.url("model.gguf"), sha256=DIGEST, attempts=2, backoff_s=0.01)
        fs.faults.drops = 0
        fs.hits.clear()
        entry = pull(reg, fs.url("model.gguf"), sha256=DIGEST)
    assert fs.hits == [("model.gguf", "bytes=800000-")]  # 2 × 400 kB were kept
    assert reg.resolve(entry.ref).read_bytes() == BLOB


def test_a_server_that_ignores_ranges_is_read_from_the_start(tmp_path: Path) -> None:
    fs = FileServer({"model.gguf": BLOB}, Faults(drop_after=500_000, drops=1, ignore_range=True))
    reg = registry(tmp_path)
    with serve_files(fs):
        entry = pull(reg, fs.url("model.gguf"), sha256=DIGEST, backoff_s=0.01)
    assert reg.resolve(entry.ref).read_bytes() == BLOB


def test_errors_name_what_to_do(tmp_path: Path) -> None:
    fs = FileServer({})
    reg = registry(tmp_path)
    with serve_files(fs), pytest.raises(PullError, match="HTTP 404"):
        pull(reg, fs.url("missing.gguf"), sha256=DIGEST)
    with pytest.raises(PullError, match="http"):
        source_of("ftp://example/x.gguf")
    with pytest.raises(PullError, match="not a SHA-256"):
        pull(reg, "http://127.0.0.1:9/x.gguf", sha256="abc")
    hf = source_of("hf:owner/repo/sub/model.Q8_0.gguf@v2", "http://127.0.0.1:1/")
    assert hf.url == "http://127.0.0.1:1/owner/repo/resolve/v2/sub/model.Q8_0.gguf"
    assert hf.filename == "model.Q8_0.gguf"
    assert source_of("https://u:secret@host/x.gguf").shown == "https://host/x.gguf"


def test_registry_versions_references_and_removal(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF-one")
    reg = registry(tmp_path)
    one = reg.add("m", src, source=str(src))
    src.write_bytes(b"GGUF-two")
    two = reg.add("m", src, source=str(src), parent=one.ref, quantization="Q8_0")
    named = reg.add("m", src, source=str(src), version="q8")
    assert [e.version for e in reg.entries("m")] == ["1", "2", "q8"]
    assert reg.get("m").ref == "m@q8" and reg.get("m@1").sha256 == one.sha256
    assert reg.resolve("m@2").read_bytes() == b"GGUF-two" and two.parent == "m@1"
    with pytest.raises(RegistryError, match="exists already"):
        reg.add("m", src, source="x", version="q8")
    with pytest.raises(RegistryError, match="versions: 1, 2, q8"):
        reg.get("m@7")
    with pytest.raises(RegistryError, match="registered: m"):
        reg.get("other")
    with pytest.raises(RegistryError, match="invalid model name"):
        reg.add("../escape", src, source="x")
    with pytest.raises(RegistryError, match="several versions"):
        reg.remove("m")
    with pytest.raises(RegistryError, match="SHA-256 mismatch"):
        reg.add("m", src, source="x", sha256="0" * 64)
    reg.path_of(named).write_bytes(b"tampered")
    with pytest.raises(RegistryError, match=r"missing or changed|does not match"):
        reg.verify("m@q8")
    reg.remove("m@1")
    assert [e.version for e in reg.entries("m")] == ["2", "q8"]
    assert not (reg.root / "m" / "1").exists()
    assert Registry(tmp_path / "models").get("m@2").quantization == "Q8_0"  # from the index
