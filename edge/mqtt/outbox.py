"""Durable outbox: full results wait here (SQLite, WAL) until the broker acknowledges them.

Why SQLite in WAL mode: an insert is one small append to the WAL file, readers
and the writer do not block each other, and a committed row survives the process
being killed (SIGKILL) at any moment. ``synchronous=NORMAL`` makes a commit
durable against a process crash; ``durable_power_loss=True`` selects
``synchronous=FULL`` (an fsync per commit) to survive a power cut too.

Rows are deleted only after PUBACK (the client calls :meth:`Outbox.delete` from
``on_publish``). Delivery is at-least-once: a row whose PUBACK was lost is sent
again, so consumers de-duplicate by ``(session, trigger_id)``.

The outbox is capped (``mqtt.outbox_limits``: rows, megabytes, age): a long
outage drops the oldest results, counted in :attr:`Outbox.dropped` (published
on ``status``), instead of filling the disk. After an outage rows are handed
out newest first by default, so the results of the parts being made now are
not stuck behind days of backlog (``drain: oldest_first`` keeps trigger order).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from edge.config.mqtt import OutboxLimitsConfig
from edge.errors import IadError

AGE_CHECK_S = 1.0  # age pruning runs at most this often (it is one indexed query)


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
    """A capped queue of (topic, payload) rows on disk, safe to use from several threads."""

    def __init__(self, path: str | Path, durable_power_loss: bool = False,
                 limits: OutboxLimitsConfig | None = None):
        self.path = Path(path)
        self.limits = limits or OutboxLimitsConfig()
        self.newest_first = self.limits.drain == "newest_first"
        self.dropped = {"rows": 0, "bytes": 0, "age": 0}  # results dropped undelivered, by the cap that dropped them
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable_power_loss else 'NORMAL'}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created)")
            rows, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the MQTT outbox {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._rows, self._bytes = int(rows), int(size)
        self._next_age_check = 0.0
        self._max_bytes = None if self.limits.max_mb is None else int(self.limits.max_mb * 1024 * 1024)
        with self._lock:
            self._enforce_limits()  # a file left by a long outage is capped at start too

    def put(self, topic: str, payload: bytes) -> int:
        """Append a message; returns its row id once it is committed to disk (the caps may drop old rows)."""
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox(topic, payload, created) VALUES (?, ?, ?)", (topic, payload, time.time())
                )
                self._rows += 1
                self._bytes += len(payload)
                self._enforce_limits()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot write to the MQTT outbox {self.path}: {exc}") from None
            return int(cur.lastrowid)

    def _enforce_limits(self) -> None:
        """Drop the oldest rows beyond the age, row and byte caps (caller holds the lock)."""
        now = time.monotonic()
        if self.limits.max_age_h is not None and now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_S
            cutoff = time.time() - self.limits.max_age_h * 3600.0
            self._drop("age", "DELETE FROM outbox WHERE created < ? RETURNING length(payload)", (cutoff,))
        max_rows, max_bytes = self.limits.max_rows, self._max_bytes
        while (max_rows is not None and self._rows > max_rows) or (max_bytes is not None and self._bytes > max_bytes):
            reason = "rows" if max_rows is not None and self._rows > max_rows else "bytes"
            excess = self._rows - max_rows if reason == "rows" and max_rows is not None else 1
            batch = max(1, min(excess, 500))
            if not self._drop(reason, "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?) "
                                      "RETURNING length(payload)", (batch,)):
                break

    def _drop(self, reason: str, sql: str, args: tuple) -> int:
        sizes = [int(r[0]) for r in self._db.execute(sql, args).fetchall()]
        if sizes:
            self._rows -= len(sizes)
            self._bytes -= sum(sizes)
            self.dropped[reason] += len(sizes)
        return len(sizes)

    def pending(self, limit: int = 100, after_id: int = 0, exclude: Collection[int] = ()) -> list[OutboxRow]:
        """Up to ``limit`` rows with id > ``after_id`` not in ``exclude``: newest first, or oldest first (``drain``)."""
        skip = set(exclude)
        order = "DESC" if self.newest_first else "ASC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, topic, payload, created FROM outbox WHERE id > ? ORDER BY id {order} LIMIT ?",
                (after_id, limit + len(skip)),
            ).fetchall()
        out = [OutboxRow(int(r[0]), r[1], bytes(r[2]), float(r[3])) for r in rows if int(r[0]) not in skip]
        return out[:limit]

    def delete(self, row_id: int) -> None:
        """Remove a row (called once the broker acknowledged it)."""
        with self._lock:
            for (size,) in self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING length(payload)", (row_id,)).fetchall():
                self._rows -= 1
                self._bytes -= int(size)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_created(self) -> float | None:
        """Wall-clock time the oldest waiting row was written (None when empty), whatever the drain order."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def stats(self) -> dict[str, object]:
        """What ``status`` shows: rows and bytes waiting, and what the caps dropped."""
        with self._lock:
            return {"rows": self._rows, "bytes": self._bytes, "dropped": dict(self.dropped),
                    "dropped_total": sum(self.dropped.values()), "drain": self.limits.drain}

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (everything committed stays on disk)."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
