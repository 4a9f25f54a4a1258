"""Durable outbox: full results wait here (SQLite, WAL) until the broker acknowledges them.

Why SQLite in WAL mode: an insert is one small append to the WAL file, readers
and the writer do not block each other, and a committed row survives the process
being killed (SIGKILL) at any moment. ``synchronous=NORMAL`` makes a commit
durable against a process crash; ``durable_power_loss=True`` selects
``synchronous=FULL`` (an fsync per commit) to survive a power cut too.

Rows are deleted only after PUBACK (the client calls :meth:`Outbox.delete` from
``on_publish``), and they are handed out in insertion order, so results drain
in order after an outage. Delivery is at-least-once: a row whose PUBACK was
lost is sent again, so consumers de-duplicate by ``(session, trigger_id)``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from edge.errors import IadError


class OutboxError(IadError):
    """The outbox database cannot be opened or written."""


@dataclass(frozen=True)
class OutboxRow:
    """One pending message."""

    id: int
    topic: str
    payload: bytes
    created: float


class Outbox:
    """A FIFO of (topic, payload) rows on disk, safe to use from several threads."""

    def __init__(self, path: Union[str, Path], durable_power_loss: bool = False):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable_power_loss else 'NORMAL'}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)"
            )
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the MQTT outbox {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def put(self, topic: str, payload: bytes) -> int:
        """Append a message; returns its row id once it is committed to disk."""
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox(topic, payload, created) VALUES (?, ?, ?)", (topic, payload, time.time())
                )
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write to the MQTT outbox {self.path}: {exc}") from None
            return int(cur.lastrowid)

    def pending(self, limit: int = 100, after_id: int = 0) -> list[OutboxRow]:
        """The oldest ``limit`` rows with id > ``after_id``, in insertion order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [OutboxRow(int(r[0]), r[1], bytes(r[2]), float(r[3])) for r in rows]

    def delete(self, row_id: int) -> None:
        """Remove a row (called once the broker acknowledged it)."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (everything committed stays on disk)."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
