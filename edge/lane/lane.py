"""The real-time lane: acquire -> inspect -> decide -> publish, with exactly one decision per trigger.

Pipeline (three threads, bounded queues between them)::

    source ──► [acquire] ──q(queue_size)──► [inspect + decide + publish decision] ──q──► [post]
                  │ full queue: fail-safe                                        outbox ▸ result
                  └─ decision for that frame                                     archive, observers

* **acquire** pulls frames from the :class:`~edge.sources.base.FrameSource`.
  A camera (or a source with ``rate_hz``) pushes: when the inspection queue is
  full the frame gets the fail-safe decision at once (counter ``dropped``).
  A source without a rate (synthetic/folder replay) is pulled: the next frame
  is taken only when there is room, so nothing is dropped by construction.
* **inspect** runs :meth:`edge.inspector.Inspector.inspect`, decides and
  publishes the decision at once (the only network call on the hot path is
  handing a small packet to paho). The fail-safe verdict with a reason is used
  when the frame carries an acquisition error, the image is bad, the expert
  raises, or the window is over (before inspection: the frame is not even
  inspected, so the lane catches up; after inspection: the verdict is replaced).
  A decision whose window is over is **not published** (counter ``late``); a
  decision while the broker is away is not published either (``undelivered``);
  the PLC's own timeout rejects the part in both cases.
* **post** (off the hot path) writes the full result to the SQLite outbox,
  queues archive entries, and calls observers.

Hooks for other parts of the appliance (all thread-safe):

* ``lane.apply_recipe(recipe) -> Future``: a new recipe's expert, bank and
  prototypes are loaded on the ``lane-reload`` thread (``Inspector.prepare_recipe``)
  while frames keep flowing; the inspection thread then swaps it in between two
  frames (``Inspector.commit_recipe``: references, plus the bank upload when the
  expert stays), within 50 ms even when no frame comes. No load time lands on a
  frame. The future resolves to None or raises the load error, in which case the
  old recipe stays and whatever the failed load opened is closed; only the newest
  of several quick edits is loaded (the others are "superseded"); once
  :meth:`stop` began, nothing is loaded or swapped any more. Not changed by a
  live recipe: the source (camera settings), the broker connection (host,
  credentials, outbox file) and the archive settings; those need a restart of
  the lane.
* ``lane.add_observer(cb)``: ``cb(frame, result_or_None, decision)`` for every
  decision, called from the post thread (never the hot path); exceptions are
  logged and ignored. Used by shadow mode and the assistant's NG jobs.
* ``lane.add_busy_listener(cb)``: ``cb(True)`` when the inspection of a frame
  starts and ``cb(False)`` when its decision is out; called on the hot path, so
  keep it to setting a flag. ``lane.busy`` is a ``threading.Event`` with the same
  meaning.
* ``lane.set_status_field(key, value)``: extra JSON published under
  ``status.extras.<key>`` (e.g. shadow-mode agreement, assistant backlog).
* ``lane.counters.snapshot()``, ``lane.status()``: what goes to ``status``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from edge.archive import Archive
from edge.bank import expert_sha256
from edge.config.recipe import Recipe
from edge.errors import BadFrameError, NonFiniteError
from edge.lane.counters import Counters
from edge.mqtt.client import MqttLink
from edge.mqtt.outbox import Outbox
from edge.mqtt.payloads import decision_payload, result_body, result_payload
from edge.mqtt.topics import Topics
from edge.realtime import background_thread, hot_thread
from edge.sources.base import FrameSource
from edge.types import Decision, Frame, InspectionResult, InspectorLike, Verdict

log = logging.getLogger(__name__)

Observer = Callable[[Frame, InspectionResult | None, Decision], None]


def _engine_sha256(inspector: InspectorLike) -> str | None:
    try:

        return expert_sha256(inspector.expert) or None
    except Exception:  # a missing hash must never stop the lane
        return None


def is_pull_source(recipe: Recipe) -> bool:
    """Sources without a trigger rate (synthetic, folder) are pulled; cameras push."""
    return recipe.source.pulled()


class Lane:
    """One station's real-time lane (see the module docstring for the threads and the hooks)."""

    def __init__(
        self,
        recipe: Recipe,
        inspector: InspectorLike,
        source: FrameSource,
        link: MqttLink | None = None,
        outbox: Outbox | None = None,
        archive: Archive | None = None,
        queue_size: int = 4,
        pull: bool | None = None,
        session: str | None = None,
    ):
        self.recipe = recipe
        self.inspector = inspector
        self.source = source
        self.link = link
        self.outbox = outbox
        self.archive = archive
        self.session = session or uuid.uuid4().hex[:8]
        self.pull = is_pull_source(recipe) if pull is None else pull
        self.counters = Counters()
        self.busy = threading.Event()
        if link is not None:
            link.hold_results = self.busy.is_set  # results never go to the socket ahead of a frame's decision
        self.engine_sha256 = _engine_sha256(inspector)
        self.topics = Topics(recipe.topic_root)

        self._observers: list[Observer] = []
        self._busy_listeners: list[Callable[[bool], None]] = []
        self._extras: dict[str, Any] = {}
        self._extras_lock = threading.Lock()
        self._recipe_lock = threading.Lock()
        self._reload_q: queue.Queue[tuple[Recipe, Future] | None] = queue.Queue()
        self._prepared: tuple[Any, Recipe, Future] | None = None  # loaded, waiting for the gap between frames
        self._reload_thread: threading.Thread | None = None
        self._inspect_q: queue.Queue[tuple[Frame, float] | None] = queue.Queue(maxsize=1 if self.pull else queue_size)
        self._post_q: queue.Queue[tuple[Frame, InspectionResult | None, Decision] | None] = queue.Queue(maxsize=256)
        self._slots = threading.Semaphore(self._inspect_q.maxsize)
        self._stop = threading.Event()
        self._acquire_done = threading.Event()
        self._max_frames: int | None = None
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self.pending_results = 0  # results still in the outbox after stop()
        self.source_error: str | None = None  # why acquisition ended, when the source raised

    # ------------------------------------------------------------------ hooks
    def add_observer(self, callback: Observer) -> None:
        """Call ``callback(frame, result_or_None, decision)`` after every decision (post thread)."""
        self._observers.append(callback)

    def add_busy_listener(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True/False)`` around each inspection (hot path: keep it trivial)."""
        self._busy_listeners.append(callback)

    def attach_link(self, link: MqttLink) -> None:
        """Use ``link`` for decisions, results and status from now on; :meth:`stop` drains and stops it."""
        link.topics = self.topics
        link.hold_results = self.busy.is_set  # results never go to the socket ahead of a frame's decision
        self.link = link

    def healthy(self) -> bool:
        """True while every thread of a started lane is alive (the systemd watchdog asks this)."""
        return all(thread.is_alive() for thread in self._threads)

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in the lane's own queues right now (inspection, post-processing, archive writer).

        Read by the metrics endpoint at scrape time; a growing ``inspect`` depth is the first sign that
        the expert no longer keeps the line's rate.
        """
        depths = {"inspect": self._inspect_q.qsize(), "post": self._post_q.qsize()}
        if self.archive is not None:
            depths["archive"] = self.archive.queue_depth()
        return depths

    def set_status_field(self, key: str, value: Any) -> None:
        """Publish ``value`` (JSON-serialisable) as ``status.extras.<key>`` from the next status on."""
        with self._extras_lock:
            self._extras[key] = value

    def apply_recipe(self, recipe: Recipe) -> Future[None]:
        """Load ``recipe`` in the background and swap it in between two frames; the future says whether it took."""
        future: Future[None] = Future()
        with self._recipe_lock:
            closed, started = self._closed, self._started
            if not closed and started:
                self._reload_q.put((recipe, future))
        if closed:
            future.set_exception(RuntimeError("the lane has stopped"))
        elif not started:  # no frames yet: load and swap right here
            try:
                prepared = self._prepare(recipe)
            except Exception as exc:  # keep the running recipe
                self._rejected(future, exc)
            else:
                self._commit(prepared, recipe, future)
        return future

    def status(self) -> dict[str, Any]:
        """The body of the retained ``status`` message (minus state/time added by the MQTT link)."""
        counters = self.counters.snapshot()
        source_stats = getattr(self.source, "stats", None)
        body: dict[str, Any] = {
            "session": self.session,
            "line": self.recipe.line,
            "station": self.recipe.station,
            "recipe_sha256": self.recipe.sha256,
            "engine_sha256": self.engine_sha256,
            "counters": counters,
        }
        if isinstance(source_stats, dict):
            body["source"] = {k: v for k, v in source_stats.items() if k != "applied_settings"}
            counters["incomplete_buffers"] = int(source_stats.get("incomplete_buffers", 0))
        if self.link is not None:
            counters["reconnects"] = self.link.reconnects
        if self.archive is not None:
            stats = self.archive.stats()
            body["archive"] = stats
            counters["archive_errors"] = stats["errors"]
        with self._extras_lock:
            if self._extras:
                body["extras"] = dict(self._extras)
        return body

    # ------------------------------------------------------------------ lifecycle
    def start(self, max_frames: int | None = None) -> Lane:
        """Start the threads (and the archive writer); frames flow until :meth:`stop` or ``max_frames``."""
        self._max_frames = max_frames
        if self.archive is not None:
            self.archive.start()
        self._threads = [
            threading.Thread(target=self._acquire_loop, name="lane-acquire", daemon=True),
            threading.Thread(target=self._inspect_loop, name="lane-inspect", daemon=True),
            threading.Thread(target=self._post_loop, name="lane-post", daemon=True),
        ]
        self._reload_thread = threading.Thread(target=self._reload_loop, name="lane-reload", daemon=True)
        with self._recipe_lock:
            self._started = True
        for thread in self._threads:
            thread.start()
        self._reload_thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until acquisition ended (``max_frames`` reached or the source ran out)."""
        return self._acquire_done.wait(timeout)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: stop acquiring, decide every frame already taken, write results, publish ``stopped``."""
        with self._recipe_lock:
            if self._closed:
                return
            self._closed = True  # from now on apply_recipe refuses: nothing loads or swaps beside a last frame
        self._stop.set()
        try:
            self.source.close()  # first: an acquisition thread waiting for a trigger returns now
        except Exception as exc:
            log.warning("closing the source: %s", exc)
        if self._started:
            acquire, inspect, post = self._threads
            acquire.join(10)
            self._reload_q.put(None)
            if self._reload_thread is not None:
                self._reload_thread.join(120)  # a load under way finishes (it touches nothing frames use)
            self._inspect_q.put(None)
            inspect.join(60)
            self._post_q.put(None)
            post.join(60)
        if self.archive is not None:
            self.archive.close()
        if self.link is not None:
            self.link.stop(drain_timeout_s)
        if self.outbox is not None:
            self.pending_results = self.outbox.count()
            self.outbox.close()
        with self._recipe_lock:
            leftover, self._prepared = self._prepared, None
        if leftover is not None:  # loaded but never swapped in: close what it opened
            self._discard(leftover[0])
            leftover[2].set_exception(RuntimeError("the lane has stopped"))

    def run(self, max_frames: int | None = None, stop_event: threading.Event | None = None) -> dict[str, int]:
        """Start, run until ``max_frames``/source end/``stop_event``, stop cleanly; returns the counters."""
        self.start(max_frames)
        try:
            while not self.wait(0.2):
                if stop_event is not None and stop_event.is_set():
                    break
        finally:
            self.stop()
        return self.counters.snapshot()

    # ------------------------------------------------------------------ acquire
    def _acquire_loop(self) -> None:
        hot_thread()  # on the decision path: the process's real-time policy (docs/deploy.md "Priorities")
        try:
            iterator = iter(self.source)
            while not self._stop.is_set():
                if self._max_frames is not None and self.counters.get("frames") >= self._max_frames:
                    break
                if self.pull:
                    while not self._slots.acquire(timeout=0.2):
                        if self._stop.is_set():
                            return
                try:
                    frame = next(iterator)
                except StopIteration:
                    break
                self.counters.add("frames")
                frame.meta.setdefault("session", self._stream_session())
                enqueued = time.monotonic()
                if self.pull:
                    self._inspect_q.put((frame, enqueued))
                    continue
                try:
                    self._inspect_q.put_nowait((frame, enqueued))
                except queue.Full:
                    self.counters.add("dropped")
                    self._decide(frame, None, f"inspection queue full ({self._inspect_q.maxsize} frames waiting)",
                                 {"queue_wait": 0.0})
        except Exception as exc:  # a source failure ends acquisition, not the process
            log.error("acquisition stopped: %s", exc, exc_info=True)
            self.source_error = f"{type(exc).__name__}: {exc}"
            self.set_status_field("source_error", self.source_error)
        finally:
            self._acquire_done.set()

    def _stream_session(self) -> str:
        """The lane's session, plus ``-rN`` after the N-th camera reconnect (frame ids may restart at 1 then)."""
        stats = getattr(self.source, "stats", None)
        reconnects = int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0
        return f"{self.session}-r{reconnects}" if reconnects else self.session

    # ------------------------------------------------------------------ inspect
    def _reload_loop(self) -> None:
        """``lane-reload``: load each new recipe off the frame path; only the newest of a burst is loaded."""
        background_thread()
        while True:
            items = [self._reload_q.get()]
            while True:
                try:
                    items.append(self._reload_q.get_nowait())
                except queue.Empty:
                    break
            stopping = None in items
            pending = [item for item in items if item is not None]
            for _, older in pending[:-1]:
                older.set_exception(RuntimeError("superseded by a newer recipe"))
            if pending and (stopping or self._closed):
                pending[-1][1].set_exception(RuntimeError("the lane has stopped"))
            elif pending:
                recipe, future = pending[-1]
                try:
                    prepared = self._prepare(recipe)
                except Exception as exc:  # keep the running recipe
                    self._rejected(future, exc)
                else:
                    with self._recipe_lock:
                        older_item, self._prepared = self._prepared, (prepared, recipe, future)
                    if older_item is not None:  # never swapped in: superseded by this one
                        self._discard(older_item[0])
                        older_item[2].set_exception(RuntimeError("superseded by a newer recipe"))
            if stopping:
                return

    def _prepare(self, recipe: Recipe) -> Any:
        prepare = getattr(self.inspector, "prepare_recipe", None)
        return prepare(recipe) if prepare is not None else recipe  # an inspector without it loads at commit

    def _discard(self, prepared: Any) -> None:
        discard = getattr(self.inspector, "discard_recipe", None)
        if discard is not None:
            try:
                discard(prepared)
            except Exception:
                log.exception("closing a recipe that was never applied")

    def _rejected(self, future: Future[None], exc: BaseException) -> None:
        self.counters.add("recipe_rejected")
        self.set_status_field("recipe_error", str(exc))
        future.set_exception(exc)

    def _commit_prepared(self) -> None:
        """Between two frames (inspection thread): swap in a recipe the reload thread has loaded."""
        with self._recipe_lock:
            item, self._prepared = self._prepared, None
        if item is not None:
            self._commit(*item)

    def _commit(self, prepared: Any, recipe: Recipe, future: Future[None]) -> None:
        commit = getattr(self.inspector, "commit_recipe", None)
        try:
            if commit is not None:
                commit(prepared)
            else:
                self.inspector.update_recipe(recipe)
        except Exception as exc:  # keep the running recipe
            self._discard(prepared)
            self._rejected(future, exc)
            return
        self.recipe = recipe
        self.topics = Topics(recipe.topic_root)
        if self.link is not None:
            self.link.topics = self.topics
        self.engine_sha256 = _engine_sha256(self.inspector)
        self.counters.add("recipe_applied")
        with self._extras_lock:
            self._extras.pop("recipe_error", None)
        future.set_result(None)

    def _set_busy(self, busy: bool) -> None:
        if busy:
            self.busy.set()
        else:
            self.busy.clear()
            if self.link is not None:
                self.link.notify_result()  # results held behind this frame may go out now
        for callback in self._busy_listeners:
            try:
                callback(busy)
            except Exception:
                log.exception("busy listener failed")

    def _inspect_loop(self) -> None:
        hot_thread()
        while True:
            try:
                item = self._inspect_q.get(timeout=0.05)
            except queue.Empty:
                self._commit_prepared()  # no frame: a loaded recipe does not wait for one
                continue
            if item is None:
                return
            if self.pull:
                self._slots.release()
            frame, enqueued = item
            self._commit_prepared()
            self._set_busy(True)
            try:
                self._inspect_one(frame, enqueued)
            except Exception:  # the lane must outlive any bug in one frame
                log.exception("frame %s: unexpected error after the decision", frame.trigger_id)
            finally:
                self._set_busy(False)

    def _inspect_one(self, frame: Frame, enqueued: float) -> None:
        # Deadlines on the monotonic clock (an NTP step must not move them); wall-clock times are only data.
        start = time.monotonic()
        timings = {"queue_wait": (start - enqueued) * 1000.0}
        if "acquire_ms" in frame.meta:
            timings["acquire"] = float(frame.meta["acquire_ms"])
        window_s = self.recipe.decision.window_ms / 1000.0
        if frame.meta.get("error"):
            self.counters.add("stage_errors")
            self._decide(frame, None, f"acquisition: {frame.meta['error']}", timings)
            return
        if start > frame.trigger_mono + window_s:
            self._decide(frame, None, f"decision window exceeded before inspection (waited {timings['queue_wait']:.0f} ms, "
                                      f"window {self.recipe.decision.window_ms} ms)", timings)
            return
        try:
            result = self.inspector.inspect(frame.image)
        except BadFrameError as exc:
            self.counters.add("stage_errors")
            self._decide(frame, None, f"bad frame: {exc}", timings)
            return
        except NonFiniteError as exc:  # NaN/inf from the expert or the scoring: no verdict can be trusted
            self.counters.add("stage_errors")
            self.counters.add("non_finite")
            log.error("frame %s: %s", frame.trigger_id, exc)
            self._decide(frame, None, f"non-finite values: {exc}", timings)
            return
        except Exception as exc:  # expert/runtime failure for this frame
            self.counters.add("stage_errors")
            log.exception("frame %s: inspection failed", frame.trigger_id)
            self._decide(frame, None, f"inspection failed: {type(exc).__name__}: {exc}", timings)
            return
        timings.update({k: float(v) for k, v in result.timings.items()})
        self._decide(frame, result, None, timings)

    def _decide(self, frame: Frame, result: InspectionResult | None, fail_reason: str | None,
                timings: dict[str, float]) -> Decision:
        """Make the one decision for this trigger, publish it (now or never), hand it to the post stage."""
        recipe = self.recipe
        now_mono, now = time.monotonic(), time.time()
        elapsed_ms = (now_mono - frame.trigger_mono) * 1000.0
        window_ms = float(recipe.decision.window_ms)
        if fail_reason is None and result is not None and elapsed_ms > window_ms:
            fail_reason = (f"decision window exceeded ({elapsed_ms:.0f} ms > {window_ms:.0f} ms; "
                           f"inspection said {result.verdict})")
        if fail_reason is None and result is not None:
            decision = Decision(frame.trigger_id, result.verdict, result.reason, float(result.score), frame.trigger_time,
                                now, window_ms, region_count=sum(1 for r in result.regions if r.rejects), timings=timings,
                                trigger_mono=frame.trigger_mono, decided_mono=now_mono)
        else:
            decision = Decision(frame.trigger_id, Verdict(recipe.decision.fail_safe), fail_reason or "no result",
                                None if result is None else float(result.score), frame.trigger_time, now, window_ms,
                                fail_safe=True, region_count=0 if result is None else len(result.regions), timings=timings,
                                trigger_mono=frame.trigger_mono, decided_mono=now_mono)
        decision.session = str(frame.meta.get("session") or self.session)
        t0 = time.perf_counter()
        if self.link is None:
            decision.delivery = "local" if decision.remaining_s() > 0 else "late"
        else:
            decision.delivery = self.link.publish_decision(
                decision_payload(decision, recipe.mqtt.payload_format), decision.remaining_s())
        timings["publish"] = (time.perf_counter() - t0) * 1000.0
        self.counters.add("decisions")
        self.counters.add("fail_safe" if decision.fail_safe else decision.verdict.lower())
        if decision.fail_safe and decision.verdict == "NG":
            self.counters.add("ng")
        elif decision.fail_safe and decision.verdict == "OK":
            self.counters.add("ok")
        if decision.delivery == "late":
            self.counters.add("late")
        elif decision.delivery in ("disconnected", "error"):
            self.counters.add("undelivered")
        try:
            self._post_q.put_nowait((frame, result, decision))
        except queue.Full:
            self._post(frame, result, decision)  # never lose a result: do the post work here, late but complete
        return decision

    # ------------------------------------------------------------------ post
    def _post_loop(self) -> None:
        background_thread()  # after the decision: never preempts a frame
        while True:
            item = self._post_q.get()
            if item is None:
                return
            try:
                self._post(*item)
            except Exception:
                log.exception("post-processing of a decision failed")

    def _post(self, frame: Frame, result: InspectionResult | None, decision: Decision) -> None:
        recipe = self.recipe
        entry = None
        if self.archive is not None and self.archive.wants(decision.verdict):
            entry = self.archive.entry_for(frame, decision.verdict, decision.decided_at)
        body = result_body(frame, decision, result, self.session, recipe.line, recipe.station, recipe.sha256,
                           self.engine_sha256, str(entry) if entry else None)
        if result is not None and (decision.fail_safe and result.verdict != decision.verdict):
            body["inspection_verdict"] = result.verdict
        if entry is not None and self.archive is not None:
            if not self.archive.submit(entry, frame, result, body, recipe.thresholds.pixel):
                body["archive"] = None  # writer behind (counted): say so in the published result
        if self.outbox is not None:
            try:
                self.outbox.put(self.topics.result, result_payload(body))
            except Exception as exc:  # report, keep deciding
                self.set_status_field("outbox_error", str(exc))
                log.error("outbox: %s", exc)
            if self.link is not None:
                self.link.notify_result()
        for observer in list(self._observers):
            try:
                observer(frame, result, decision)
            except Exception:
                log.exception("lane observer failed")
