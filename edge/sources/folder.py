"""Images from a folder, in name order: replaying recorded production, or offline trials."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.errors import BadFrameError, IadError
from edge.imageio import IMAGE_SUFFIXES, read_image
from edge.types import Frame


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``folder`` matching ``pattern``, sorted by name."""
    if not folder.is_dir():
        raise IadError(f"{folder}: no such image folder")
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FolderSource:
    """Yields every image once (or forever with ``loop``); an unreadable file becomes a frame with ``meta['error']``.

    A bad file is reported by the lane as a fail-safe decision for that
    trigger, never skipped silently and never fatal.
    """

    def __init__(self, cfg: object):
        self.cfg = cfg
        self.paths = list_images(Path(cfg.path), cfg.pattern)  # type: ignore[attr-defined]
        if not self.paths:
            raise IadError(f"{cfg.path}: no images matching {cfg.pattern!r}")  # type: ignore[attr-defined]
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        period = 1.0 / self.cfg.rate_hz if self.cfg.rate_hz else 0.0  # type: ignore[attr-defined]
        trigger = 0
        while not self._closed:
            for path in self.paths:
                if self._closed:
                    return
                if period:
                    time.sleep(period)
                try:
                    image, meta = read_image(path), {}
                except BadFrameError as exc:
                    image, meta = np.zeros((0, 0), dtype=np.uint8), {"error": str(exc)}
                yield Frame(image=image, trigger_id=trigger, trigger_time=time.time(), source="folder", name=path.stem, meta=meta)
                trigger += 1
            if not self.cfg.loop:  # type: ignore[attr-defined]
                return

    def close(self) -> None:
        self._closed = True
