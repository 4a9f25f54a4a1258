"""Live reload: watch the recipe file, validate edits in memory, hand good ones to the lane.

The line never stops for a recipe edit:

* the watcher polls the recipe (and the files it includes) for a changed
  mtime/size, waits until the file has stopped changing (one more poll, so a
  half-saved file is not judged), and compares the content hash;
* a changed recipe is validated fully in memory (``parse_recipe`` with the
  named files required to exist);
* valid -> ``apply(recipe)`` (the lane applies it between two frames); once it
  took, ``recipe_applied`` = {sha256, applied_at, path, values} and
  ``recipe_history`` (the last 10 applied: sha256, applied_at) are published on
  the status (and logged), and ``recipe_error`` is cleared;
* invalid, or refused by the lane (e.g. a bank that does not fit the expert)
  -> the last good recipe keeps running and ``recipe_error`` (the
  ``file:line:col: field: message`` lines) goes on the status and in the log.

No extra dependency: polling ``os.stat`` twice a second costs nothing and works
on every filesystem (inotify misses edits on some network/overlay mounts).

:class:`edge.station.Station` starts it (step ``watcher``) with the lane's
``apply_recipe`` and ``set_status_field``, and stops it at shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from edge.config.loader import RecipeError, parse_recipe
from edge.config.recipe import Recipe
from edge.files import Stamps, stamps

log = logging.getLogger(__name__)

HISTORY = 10  # applied recipes kept on the status (sha256 + time); the log keeps all of them


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def applied_record(recipe: Recipe, applied_at: float | None = None) -> dict[str, Any]:
    """What the status says about the running recipe (``iad-edge check --against`` diffs ``values``)."""
    return {
        "sha256": recipe.sha256,
        "applied_at": _utc(applied_at or time.time()),
        "path": str(recipe.source_path) if recipe.source_path else None,
        "values": recipe.effective(),
    }


class RecipeWatcher:
    """Polls one recipe file; calls ``apply`` with each new valid recipe (see the module docstring).

    ``apply(recipe)`` may return a :class:`~concurrent.futures.Future` (the
    lane's ``apply_recipe`` does): the recipe counts as applied when it
    resolves without error. ``set_status(key, value)`` publishes on the status
    (``value`` None marks the key cleared). ``history`` keeps (sha256, time, outcome)
    of every candidate seen.
    """

    def __init__(
        self,
        path: str | Path,
        apply: Callable[[Recipe], Future | None],
        set_status: Callable[[str, Any], None] = lambda key, value: None,
        current: Recipe | None = None,
        interval_s: float = 0.5,
        check_files: bool = True,
    ):
        self.path = Path(path)
        self.apply = apply
        self.set_status = set_status
        self.interval_s = interval_s
        self.check_files = check_files
        self.current = current
        self.history: list[tuple[str, float, str]] = []
        self.errors = 0
        self.applied = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_hash: str | None = current.sha256 if current is not None else None
        self._stamp: Stamps = stamps(self._paths())
        self._pending: Stamps | None = None
        self.applied_log: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        if current is not None:
            record = applied_record(current)
            self.applied_log.append({"sha256": record["sha256"], "applied_at": record["applied_at"]})
            self.set_status("recipe_applied", record)
            self.set_status("recipe_history", list(self.applied_log))

    def _paths(self) -> list[Path]:
        included = list(self.current.included_paths) if self.current is not None else []
        return [self.path] + included

    # ------------------------------------------------------------------ polling
    def start(self) -> RecipeWatcher:
        self._thread = threading.Thread(target=self._loop, name="recipe-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the watcher must never take the lane down
                log.exception("recipe watcher")

    def poll(self, settle: bool = True) -> str | None:
        """One look at the files; returns 'applied', 'pending', 'invalid', 'unchanged' or None (nothing new).

        With ``settle`` a change is judged only when the next poll sees the same
        stamp (the editor has finished writing).
        """
        with self._lock:
            stamp = stamps(self._paths())
            if stamp == self._stamp:
                self._pending = None
                return None
            if settle and self._pending != stamp:
                self._pending = stamp
                return None
            self._pending = None
            self._stamp = stamp
            return self._consider()

    def _consider(self) -> str:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            return self._reject(f"{self.path}: cannot read recipe ({exc.strerror or exc})", "")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:  # e.g. the file was overwritten with binary garbage
            return self._reject(f"{self.path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})",
                                hashlib.sha256(raw).hexdigest())
        try:
            recipe = parse_recipe(text, self.path, check_files=self.check_files)
        except RecipeError as exc:
            return self._reject("\n".join(exc.problems), hashlib.sha256(text.encode()).hexdigest())
        if recipe.sha256 == self._seen_hash:
            self.set_status("recipe_error", None)  # back to the running recipe: nothing to apply
            self.history.append((recipe.sha256, time.time(), "unchanged"))
            return "unchanged"
        self._seen_hash = recipe.sha256
        log.info("recipe %s changed (sha256 %s): applying between frames", self.path, recipe.sha256[:12])
        outcome = self.apply(recipe)
        if isinstance(outcome, Future):
            outcome.add_done_callback(lambda fut, r=recipe: self._finished(r, fut))
            return "pending" if not outcome.done() else ("applied" if outcome.exception() is None else "invalid")
        self._accepted(recipe)
        return "applied"

    def _finished(self, recipe: Recipe, future: Future) -> None:
        exc = future.exception()
        if exc is None:
            self._accepted(recipe)
        elif "superseded" not in str(exc):
            self._seen_hash = self.current.sha256 if self.current is not None else None
            self._reject(f"{self.path}: recipe not applied: {exc}", recipe.sha256)

    def _accepted(self, recipe: Recipe) -> None:
        now = time.time()
        with self._lock:
            self.current = recipe  # its included files are watched from the next poll on
            self.applied += 1
        self.history.append((recipe.sha256, now, "applied"))
        record = applied_record(recipe, now)
        self.applied_log.append({"sha256": record["sha256"], "applied_at": record["applied_at"]})
        self.set_status("recipe_applied", record)
        self.set_status("recipe_history", list(self.applied_log))
        self.set_status("recipe_error", None)
        log.info("recipe applied: %s sha256 %s", self.path, recipe.sha256)

    def _reject(self, message: str, sha: str) -> str:
        self.errors += 1
        self.history.append((sha, time.time(), "invalid"))
        self.set_status("recipe_error", message)
        log.error("recipe edit NOT applied, the last good recipe keeps running:\n%s", message)
        return "invalid"
