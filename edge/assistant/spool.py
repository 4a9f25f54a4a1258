"""The spool: a local folder through which the real-time lane hands NG parts to the assistant.

Why a folder and not a queue or a socket: it survives either process crashing
or restarting, needs no connection (the lane never waits for the assistant),
and makes a backlog inspectable with ``ls``. One job = ``<name>.png`` (the
frame as acquired) + ``<name>.json`` (written last, atomically: the JSON's
existence means the job is complete). ``<name>`` starts with a nanosecond
timestamp, so name order is arrival order.

Lane side: :class:`SpoolWriter` (``lane.add_observer(writer.observe)``) encodes
and writes in its own thread with a bounded queue: a slow disk costs the lane
nothing; overflow is counted, never waited for.

Assistant side: :class:`SpoolReader` claims a job by renaming its JSON to
``.json.work`` (so two assistants never take the same job), and deletes both
files when the job is done or skipped. A ``.work`` file left by a crash is
re-queued at start-up, once: a job that crashed the assistant twice is
reported as failed instead of crashing it forever.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


def write_job(spool: Path, body: dict[str, Any], image: np.ndarray | None = None) -> Path:
    """Write one job (frame PNG first, JSON last) and return the JSON path. ``body`` needs ``kind``."""
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{body.get('kind', 'explain')}-{body.get('trigger_id', 'x')}"
    body = dict(body, attempts=int(body.get("attempts", 0)))
    if image is not None:
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise ValueError("cannot encode the frame as PNG")
        write_bytes_atomic(spool / f"{name}.png", buf.tobytes(), fsync=False)
        body["spool_image"] = f"{name}.png"  # its own key: a request's "image" path is never the spool's to delete
    path = spool / f"{name}.json"
    write_bytes_atomic(path, json.dumps(body, default=str).encode(), fsync=False)
    return path


class SpoolWriter:
    """Lane-side: turns NG decisions (and, for the self-test, a few good frames) into spool jobs.

    ``observe`` has the lane observer signature ``(frame, result, decision)`` and
    only enqueues; the writer thread does the PNG encoding and file writes.
    """

    def __init__(self, spool: Path, session: str = "", queue_size: int = 16,
                 self_test_every_s: float | None = None):
        self.spool = Path(spool)
        self.session = session
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.self_test_every_s = self_test_every_s
        self._last_good = 0.0
        self._q: queue.Queue[tuple[dict[str, Any], np.ndarray] | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="assistant-spool", daemon=True)
        self._thread.start()

    def observe(self, frame: Any, result: Any, decision: Any) -> None:
        """Lane observer: NG parts with regions become explanation jobs; a good frame now and then a self-test job."""
        if result is None:
            return
        if decision.verdict == "NG" and result.regions and not decision.fail_safe:
            body = {
                "kind": "explain",
                "session": self.session,
                "trigger_id": frame.trigger_id,
                "trigger_time": frame.trigger_time,
                "verdict": decision.verdict,
                "score": float(result.score),
                "regions": [r.to_json() for r in result.regions],
            }
        elif (decision.verdict == "OK" and not decision.fail_safe and self.self_test_every_s
              and time.monotonic() - self._last_good >= self.self_test_every_s):
            self._last_good = time.monotonic()
            body = {"kind": "selftest", "session": self.session, "trigger_id": frame.trigger_id}
        else:
            return
        try:
            self._q.put_nowait((body, frame.image))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            body, image = item
            try:
                write_job(self.spool, body, image)
                self.written += 1
            except Exception as exc:  # a full disk must not stop the lane
                self.errors += 1
                log.error("assistant spool: cannot write job for trigger %s: %s", body.get("trigger_id"), exc)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "errors": self.errors, "queued": self._q.qsize()}

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._q.put(None)
        self._thread.join(timeout)


@dataclass
class SpoolJob:
    """A claimed job: its JSON body and files."""

    body: dict[str, Any]
    work_path: Path
    image_path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    def load_image(self) -> np.ndarray | None:
        if self.image_path is None or not self.image_path.is_file():
            return None
        return cv2.imdecode(np.fromfile(str(self.image_path), np.uint8), cv2.IMREAD_UNCHANGED)

    def release(self) -> None:
        """Give the job back unclaimed (clean shutdown): the next start takes it as new, not as a retry."""
        try:
            os.rename(self.work_path, self.work_path.with_name(self.work_path.name[: -len(".work")]))
        except FileNotFoundError:
            pass

    def done(self) -> None:
        """Remove the job's files (finished, skipped or failed: the outcome went to MQTT)."""
        for p in (self.work_path, self.image_path):
            if p is not None:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


class SpoolReader:
    """Assistant-side: claims new jobs in arrival order."""

    def __init__(self, spool: Path):
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        # claims made before recover() ran (tests poll first): never mistaken for a crashed run's;
        # recover() runs once per process, after which there is nothing left to track
        self._claimed: set[Path] | None = set()

    def recover(self) -> tuple[list[SpoolJob], list[SpoolJob]]:
        """Jobs a previous run had claimed: (to retry, given up after MAX_ATTEMPTS)."""
        retry, failed = [], []
        if self._claimed is None:
            return retry, failed
        mine, self._claimed = self._claimed, None
        for work in sorted(self.spool.glob("*.json.work")):
            if work in mine:
                continue
            job = self._load(work)
            if job is None:
                continue
            job.body["attempts"] = int(job.body.get("attempts", 0)) + 1
            write_bytes_atomic(work, json.dumps(job.body, default=str).encode(), fsync=False)
            (failed if job.body["attempts"] >= MAX_ATTEMPTS else retry).append(job)
        return retry, failed

    def claim_new(self, limit: int = 64) -> list[SpoolJob]:
        """Claim up to ``limit`` new jobs, oldest first."""
        jobs = []
        for path in sorted(p for p in self.spool.glob("*.json") if not p.name.startswith("."))[:limit]:
            work = path.with_name(path.name + ".work")
            try:
                os.rename(path, work)
            except FileNotFoundError:
                continue  # another reader took it
            if self._claimed is not None:
                self._claimed.add(work)
            job = self._load(work)
            if job is not None:
                jobs.append(job)
        return jobs

    def _load(self, work: Path) -> SpoolJob | None:
        try:
            body = json.loads(work.read_text())
        except (OSError, ValueError) as exc:
            log.error("assistant spool: unreadable job %s (%s); removed", work.name, exc)
            work.unlink(missing_ok=True)
            return None
        name = body.get("spool_image")
        image = self.spool / Path(str(name)).name if name else None  # only ever a file inside the spool
        return SpoolJob(body, work, image)
