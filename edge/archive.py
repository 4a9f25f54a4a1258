"""Background archive of NG frames (and a sample of OK frames) for the quality engineer.

Each entry is a folder ``<root>/<YYYY-MM-DD>/<HHMMSS_mmm>_<session>_<trigger>_<verdict>/``:

* ``frame.png``   the frame as acquired (8 or 16 bit, gray or BGR),
* ``map.png``     the anomaly map as 16-bit PNG, ``value = png / MAP_SCALE`` (scale in result.json),
* ``overlay.png`` heat map + region boxes (``edge.overlay.render_overlay``),
* ``result.json`` the same full result that goes to MQTT ``result``.

Why a writer thread with a bounded queue: PNG encoding and disk writes take
milliseconds to seconds (a slow SD card, a full disk) and must never delay a
decision. When the queue is full the entry is skipped and counted; when a write
fails (e.g. ENOSPC, disk full) the error is counted and reported on ``status``
and the line keeps running. An entry is written into a hidden ``.tmp-`` folder
and renamed when complete, so readers never see half an entry and retention
never counts one. Retention deletes entries older than ``max_age_days`` and then
the oldest ones while the total exceeds ``max_total_mb``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config.archive import ArchiveConfig
from edge.overlay import render_overlay
from edge.realtime import background_thread
from edge.types import Frame, InspectionResult

log = logging.getLogger(__name__)

MAP_SCALE = 30000.0  # map.png stores round(value * MAP_SCALE) as uint16 (values up to ~2.18)


@dataclass
class _Job:
    entry: Path
    frame: Frame
    result: InspectionResult | None
    body: dict[str, Any]
    pixel_threshold: float


class Archive:
    """Asynchronous, size- and age-bounded archive writer."""

    def __init__(self, cfg: ArchiveConfig, session: str):
        self.cfg = cfg
        self.root = Path(cfg.path)
        self.session = session
        self.written = 0
        self.skipped = 0
        self.errors = 0
        self.deleted = 0
        self.last_error: str | None = None
        self._ok_seen = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=cfg.queue_size)
        self._entries: list[tuple[float, int, Path]] = []  # (mtime, bytes, path), oldest first
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._started = False

    # ------------------------------------------------------------------ API
    def start(self) -> Archive:
        if self.cfg.enabled and not self._started:
            self._started = True
            self._thread.start()
        return self

    def wants(self, verdict: str) -> bool:
        """Whether a frame with this verdict goes to the archive (all NG, an even sample of OK)."""
        if not self.cfg.enabled:
            return False
        if verdict != "OK":
            return True
        rate = self.cfg.ok_sample_rate
        self._ok_seen += 1
        return int(self._ok_seen * rate) > int((self._ok_seen - 1) * rate)

    def entry_for(self, frame: Frame, verdict: str, when: float | None = None) -> Path:
        """The folder an entry for this frame will get (so result JSON can name it before it exists)."""
        when = time.time() if when is None else when
        stamp = time.strftime("%H%M%S", time.localtime(when)) + f"_{int(when * 1000) % 1000:03d}"
        day = time.strftime("%Y-%m-%d", time.localtime(when))
        return self.root / day / f"{stamp}_{self.session}_{frame.trigger_id}_{verdict}"

    def submit(self, entry: Path, frame: Frame, result: InspectionResult | None, body: dict[str, Any],
               pixel_threshold: float) -> bool:
        """Queue an entry without waiting; False (and counted) when the writer is behind."""
        if not self._started:
            return False
        try:
            self._queue.put_nowait(_Job(entry, frame, result, body, pixel_threshold))
            return True
        except queue.Full:
            self.skipped += 1
            return False

    def queue_depth(self) -> int:
        """Entries waiting for the writer thread."""
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "skipped_queue_full": self.skipped,
            "errors": self.errors,
            "deleted_by_retention": self.deleted,
            "last_error": self.last_error,
            "total_mb": round(sum(e[1] for e in self._entries) / 1e6, 3),
        }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``) and stop the writer."""
        if not self._started:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._started = False

    # ------------------------------------------------------------------ writer
    def _run(self) -> None:
        background_thread()  # image encoding after the decision: never real-time beside the decision path
        try:
            self._scan_existing()
        except OSError as exc:
            self._record_error(exc, "scanning the archive")
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                size = self._write(job)
                self._entries.append((time.time(), size, job.entry))
                self.written += 1
                self._apply_retention()
            except OSError as exc:
                self._record_error(exc, f"writing {job.entry}")
                shutil.rmtree(self._tmp_path(job.entry), ignore_errors=True)
            except Exception as exc:  # an archive bug must never stop the line
                self._record_error(exc, f"writing {job.entry}")
                shutil.rmtree(self._tmp_path(job.entry), ignore_errors=True)

    def _record_error(self, exc: BaseException, what: str) -> None:
        self.errors += 1
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            self.last_error = f"disk full (ENOSPC) while {what}; archiving continues when space is free"
        else:
            self.last_error = f"{type(exc).__name__} while {what}: {exc}"
        log.warning("archive: %s", self.last_error)

    @staticmethod
    def _tmp_path(entry: Path) -> Path:
        return entry.parent / f".tmp-{entry.name}"

    @staticmethod
    def _write_bytes(path: Path, data: bytes) -> int:
        with open(path, "wb") as fh:
            fh.write(data)
        return len(data)

    @staticmethod
    def _png(image: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"PNG encoding failed for an image of shape {image.shape} dtype {image.dtype}")
        return buf.tobytes()

    def _write(self, job: _Job) -> int:
        tmp = self._tmp_path(job.entry)
        tmp.mkdir(parents=True, exist_ok=True)
        size = 0
        image = job.frame.image
        body = dict(job.body)
        if isinstance(image, np.ndarray) and image.size and image.dtype in (np.uint8, np.uint16):
            size += self._write_bytes(tmp / "frame.png", self._png(image))
        if job.result is not None:
            amap = np.asarray(job.result.anomaly_map, dtype=np.float32)
            size += self._write_bytes(tmp / "map.png", self._png(np.clip(np.rint(amap * MAP_SCALE), 0, 65535).astype(np.uint16)))
            body["map_scale"] = MAP_SCALE
            overlay = self._overlay(image, job.result, job.pixel_threshold)
            if overlay is not None:
                size += self._write_bytes(tmp / "overlay.png", self._png(overlay))
        size += self._write_bytes(tmp / "result.json", json.dumps(body, indent=1, default=str).encode())
        os.replace(tmp, job.entry)
        return size

    @staticmethod
    def _overlay(image: np.ndarray, result: InspectionResult, pixel_threshold: float) -> np.ndarray | None:
        return render_overlay(image, result.anomaly_map, result.regions, pixel_threshold)

    def _scan_existing(self) -> None:
        if not self.root.is_dir():
            return
        found = []
        for day in self.root.iterdir():
            if not day.is_dir():
                continue
            for entry in day.iterdir():
                if entry.name.startswith(".tmp-"):
                    shutil.rmtree(entry, ignore_errors=True)  # half-written by a crashed run
                    continue
                if entry.is_dir():
                    size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
                    found.append((entry.stat().st_mtime, size, entry))
        found.sort()
        self._entries = found
        self._apply_retention()

    def _apply_retention(self) -> None:
        now = time.time()
        max_age = self.cfg.max_age_days * 86400.0
        max_bytes = self.cfg.max_total_mb * 1e6
        total = sum(e[1] for e in self._entries)
        keep: list[tuple[float, int, Path]] = []
        for i, (mtime, size, path) in enumerate(self._entries):
            too_old = now - mtime > max_age
            too_big = total > max_bytes and i < len(self._entries) - 1  # never delete the newest entry
            if too_old or too_big:
                shutil.rmtree(path, ignore_errors=True)
                total -= size
                self.deleted += 1
                try:
                    path.parent.rmdir()  # drop the day folder when it became empty
                except OSError:
                    pass
            else:
                keep.append((mtime, size, path))
        self._entries = keep
