"""The ``backup:`` section: scheduled backups of the embedded store (``seekport backup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# minutes that divide the hour evenly (a cron step), or every hour
Every = Literal[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]


class BackupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(
        default=None,
        description="Back the SQLite store up into this directory on a schedule (none: no "
        "scheduled backups). Put it on another disk or a mounted off-site volume.",
    )
    every_minutes: Every = Field(
        default=15,
        description="Minutes between backups: the most that a lost disk loses (RPO 15 min by "
        "default).",
    )
    keep: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=96, description="The newest backups kept; older ones are deleted (96: a day)."
    )
