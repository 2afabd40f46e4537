"""``seekport backup`` and ``seekport restore``: the embedded store (``store/backup.py``),
while the server runs (backup) or into a fresh data directory (restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seekport.cli.client import fail
from seekport.cli.common import ConfigOpt, DataDirOpt, load
from seekport.store.backup import BackupError, Manifest
from seekport.store.backup import backup as make_backup
from seekport.store.backup import restore as restore_backup

PG_HINT = (
    "the main store is PostgreSQL (database_url): back it up with pg_dump (docs/operations.md)"
)


def _summary(manifest: Manifest) -> None:
    for f in manifest.files:
        rows = sum(f.rows.values())
        typer.echo(f"  {f.name}: {f.bytes} bytes, {len(f.rows)} tables, {rows} rows")


def backup(
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Directory to write the backup under (default: backup.dir)."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Back up the embedded store (SQLite's online backup: safe while the server runs)."""
    settings = load(config, data_dir=data_dir)
    dest = to or settings.backup.dir
    if dest is None:
        raise fail("give --to DIR (or set backup.dir in the config)", 2)
    postgres = bool(settings.database_url) and not settings.resolved_database_url.startswith(
        "sqlite"
    )
    if postgres:
        typer.echo(f"note: {PG_HINT}; backing up what is in {settings.data_dir}", err=True)
    try:
        made = make_backup(settings.data_dir, dest.expanduser())
    except BackupError as exc:
        raise fail(exc.message + (f"; {PG_HINT}" if postgres else "")) from exc
    typer.echo(str(made))
    _summary(Manifest.read(made))


def restore(
    source: Annotated[Path, typer.Argument(help="A backup directory (seekport-backup-…).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a store the data directory holds (stop the server first; the "
            "present files are kept aside as *.before-restore-<time>).",
        ),
    ] = False,
) -> None:
    """Restore a backup into a data directory (checked against its manifest first)."""
    settings = load(config, data_dir=data_dir)
    try:
        manifest = restore_backup(source, settings.data_dir, force=force)
    except BackupError as exc:
        raise fail(exc.message) from exc
    typer.echo(f"restored {source.name} ({manifest.created_at}) into {settings.data_dir}")
    _summary(manifest)
