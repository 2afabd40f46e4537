"""Backups of the embedded store: the SQLite files in the data directory (``seekport.db``:
keys, tenants, users, usage records, the audit and content logs; ``knowledge.db``: knowledge
bases), copied with SQLite's online backup API while the server runs.

A backup is a directory ``seekport-backup-<UTC time>`` holding a copy of each file and a
``manifest.json`` (time, each file's size and SHA-256, its tables' row counts). Each copy is
one step of the backup API, so it is one consistent snapshot: in WAL mode the copy reads
alongside the writers without blocking them, and every transaction committed before it began
is in it. The copy is written under a temporary name, checked (``PRAGMA quick_check``) and
renamed into place; the manifest is written last, so a directory without one is not a backup.

A restore checks every file against the manifest, then copies it (the backup API again) into
a data directory that holds no store yet (or, with ``force``, moves the present one aside
first). PostgreSQL is backed up with its own tools (``pg_dump``; docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from seekport.errors import ConfigError

FILES = ("seekport.db", "knowledge.db")  # the data directory's stores, when present
MANIFEST = "manifest.json"
PREFIX = "seekport-backup-"
FORMAT = 1


class BackupError(ConfigError):
    """A backup that cannot be made or a restore that cannot be done (the reason says why)."""


@dataclass(frozen=True, slots=True)
class BackedUp:
    name: str
    bytes: int
    sha256: str
    rows: dict[str, int]


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    created_at: str  # ISO 8601, UTC
    files: list[BackedUp]

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            raw = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            files = [BackedUp(**f) for f in raw["files"]]
            manifest = cls(int(raw["format"]), str(raw["created_at"]), files)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{path} is not a seekport backup (no readable {MANIFEST})") from exc
        if manifest.format != FORMAT:
            raise BackupError(f"{path}: backup format {manifest.format}; this version reads 1")
        return manifest


def backup(data_dir: Path, dest: Path, *, now: dt.datetime | None = None) -> Path:
    """A consistent copy of the data directory's stores in a new directory under ``dest``;
    returns its path."""
    present = [n for n in FILES if (data_dir / n).is_file()]
    if not present:
        raise BackupError(f"{data_dir} holds no store ({', '.join(FILES)}) to back up")
    when = now or dt.datetime.now(dt.UTC)
    target = dest / f"{PREFIX}{when:%Y%m%dT%H%M%S%fZ}"
    target.mkdir(parents=True)
    try:
        files = [_copy_out(data_dir / name, target / name) for name in present]
        manifest = Manifest(FORMAT, when.isoformat(), files)
        tmp = target / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        os.replace(tmp, target / MANIFEST)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def backups(dest: Path) -> list[Path]:
    """The complete backups under ``dest``, oldest first."""
    if not dest.is_dir():
        return []
    found = [p for p in dest.iterdir() if p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(dest: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; the ones deleted."""
    old = backups(dest)[:-keep] if keep > 0 else []
    for p in old:
        shutil.rmtree(p)
    return old


def verify(source: Path) -> Manifest:
    """The backup's manifest, every file checked against it (BackupError if one differs)."""
    manifest = Manifest.read(source)
    for f in manifest.files:
        path = source / f.name
        if not path.is_file():
            raise BackupError(f"{source}: {f.name} is missing")
        if _sha256(path) != f.sha256:
            raise BackupError(f"{source}: {f.name} does not match its SHA-256 in the manifest")
    return manifest


def restore(source: Path, data_dir: Path, *, force: bool = False) -> Manifest:
    """Copy a verified backup into ``data_dir``. Refused while it holds a store, unless
    ``force``: then the present files are moved aside (``<name>.before-restore-<time>``)."""
    manifest = verify(source)
    data_dir.mkdir(parents=True, exist_ok=True)
    present = [f.name for f in manifest.files if (data_dir / f.name).exists()]
    if present and not force:
        raise BackupError(
            f"{data_dir} already holds {', '.join(present)}; restore into an empty data "
            "directory, or stop the server and pass --force (the present files are kept aside)"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for f in manifest.files:
        live = data_dir / f.name
        for suffix in ("", "-wal", "-shm"):
            old = live.with_name(live.name + suffix)
            if old.exists():
                os.replace(old, old.with_name(f"{old.name}.before-restore-{stamp}"))
        tmp = live.with_name(live.name + ".restoring")
        _copy(source / f.name, tmp)
        os.replace(tmp, live)
    return manifest


def _copy_out(src: Path, dst: Path) -> BackedUp:
    tmp = dst.with_name(dst.name + ".tmp")
    _copy(src, tmp)
    with sqlite3.connect(tmp) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        rows = {t: conn.execute(_count(t)).fetchone()[0] for t in tables}
    conn.close()
    os.replace(tmp, dst)
    return BackedUp(dst.name, dst.stat().st_size, _sha256(dst), rows)


def _count(table: str) -> str:
    """``SELECT count(*)`` of a table the copy's own schema names (quoted as an identifier)."""
    quoted = table.replace('"', '""')
    return f'SELECT count(*) FROM "{quoted}"'  # noqa: S608 - a name from sqlite_master


def _copy(src: Path, dst: Path) -> None:
    """One step of the online backup API (one consistent snapshot), then a quick check."""
    source = sqlite3.connect(src)  # read only by the backup; WAL readers block no writer
    target = sqlite3.connect(dst)
    try:
        source.backup(target)  # pages=-1: all in one step
        target.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal
        ok = target.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise BackupError(f"the copy of {src.name} failed its check: {ok}")
    finally:
        target.close()
        source.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
