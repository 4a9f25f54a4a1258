"""On-disk archive of NG frames (and a sample of OK frames)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge.config.base import RecipePath, StrictModel


class ArchiveConfig(StrictModel):
    """What the background writer keeps and for how long."""

    enabled: bool = Field(True, description="Write NG frames with map, overlay and result JSON.")
    path: RecipePath = Field(Path("archive"), description="Archive folder.")
    ok_sample_rate: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of OK frames archived too.")
    max_total_mb: float = Field(2048, gt=0, description="Oldest entries are deleted beyond this total size.")
    max_age_days: float = Field(30, gt=0, description="Entries older than this are deleted.")
    queue_size: int = Field(64, ge=1, description="Frames waiting for the writer; when full, archiving is skipped and counted.")
