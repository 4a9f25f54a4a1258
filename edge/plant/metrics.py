"""Prometheus metrics of one station, served on ``metrics.port`` (see docs/metrics.md).

Two kinds of numbers, both kept off the decision path:

* **per decision** (:meth:`StationMetrics.observe`, a lane observer on the post
  thread): decisions by verdict, fail-safe decisions by reason class, the
  trigger->decision latency histogram, decision delivery. Each is a counter
  increment under a lock: microseconds, after the decision is out.
* **read at scrape time** (:class:`_LaneCollector`): queue depths, outbox rows and
  the age of the oldest, frames/dropped/incomplete, MQTT link, Sparkplug, the
  assistant's backlog and self-test figures (from its retained status on MQTT),
  recipe/engine hashes as an info metric. Nothing runs between scrapes.

An own :class:`prometheus_client.CollectorRegistry` per station (no global
state), served by prometheus_client's own HTTP server thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.errors import IadError
from edge.mqtt.auth import apply_auth
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)

# Fail-safe reasons are free text (they name numbers and files); the metric label is their class.
_REASON_CLASSES = (
    ("inspection queue full", "queue_full"),
    ("acquisition:", "acquisition"),
    ("decision window exceeded before inspection", "window_before_inspection"),
    ("decision window exceeded", "window_exceeded"),
    ("bad frame:", "bad_frame"),
    ("inspection failed:", "inspection_failed"),
)
REASON_CLASSES = tuple(label for _, label in _REASON_CLASSES) + ("other",)


def reason_class(reason: str) -> str:
    """The bounded label for a fail-safe reason (``other`` for anything unknown)."""
    for prefix, label in _REASON_CLASSES:
        if reason.startswith(prefix):
            return label
    return "other"


class AssistantStatusFeed:
    """Keeps the assistant process's latest retained status (``<root>/status/assistant``) from MQTT."""

    def __init__(self, recipe: Any, host: str | None = None, port: int | None = None):
        self.topic = Topics(recipe.topic_root).assistant_status
        self.latest: dict[str, Any] | None = None
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"iad-metrics-{recipe.line}-{recipe.station}", protocol=mqtt.MQTTv5)
        apply_auth(self._client, recipe.mqtt)
        self._client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=0)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._client.connect_async(host or recipe.mqtt.host, int(port or recipe.mqtt.port), keepalive=30)
        self._client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict):
            self.latest = body

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class _LaneCollector(Collector):
    """Figures read from the lane (and its parts) when Prometheus scrapes."""

    def __init__(self, owner: StationMetrics):
        self.owner = owner

    def collect(self) -> Iterator[Any]:
        lane = self.owner.lane
        counters = lane.counters.snapshot()
        yield from self._counters(counters)
        depth = GaugeMetricFamily("iad_queue_depth", "Items waiting in a queue of the station.", labels=["queue"])
        for name, size in lane.queue_depths().items():
            depth.add_metric([name], size)
        node = self.owner.sparkplug
        if node is not None:
            depth.add_metric(["sparkplug"], node.queue_depth())
        yield depth
        yield from self._outbox(lane)
        yield from self._source(lane)
        yield from self._link(lane)
        yield from self._assistant()
        info = InfoMetricFamily("iad_recipe", "The recipe and expert engine the station runs (sha256).")
        info.add_metric([], {"line": lane.recipe.line, "station": lane.recipe.station, "recipe_sha256": lane.recipe.sha256,
                             "engine_sha256": lane.engine_sha256 or ""})
        yield info

    @staticmethod
    def _counters(counters: dict[str, int]) -> Iterator[Any]:
        for key, name, doc in (
            ("frames", "iad_frames", "Triggers taken from the source."),
            ("dropped", "iad_frames_dropped", "Frames that found the inspection queue full (fail-safe decision at once)."),
            ("late", "iad_decisions_late", "Decisions not published because the window was over."),
            ("undelivered", "iad_decisions_undelivered", "Decisions not published because the broker was away."),
            ("stage_errors", "iad_stage_errors", "Frames with an acquisition, image or inspection error."),
            ("recipe_applied", "iad_recipe_applied", "Recipes applied live."),
            ("recipe_rejected", "iad_recipe_rejected", "Recipes the lane refused to apply."),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], int(counters.get(key, 0)))
            yield family

    @staticmethod
    def _outbox(lane: Any) -> Iterator[Any]:
        outbox = getattr(lane, "outbox", None)
        if outbox is None:
            return
        try:
            rows = outbox.count()
            oldest = outbox.oldest_created()  # not pending(1): the outbox may drain newest first
        except Exception:  # closed at shutdown
            return
        yield GaugeMetricFamily("iad_outbox_rows", "Results waiting in the SQLite outbox for the broker's acknowledgement.", value=rows)
        age = time.time() - oldest if oldest is not None else 0.0
        yield GaugeMetricFamily("iad_outbox_oldest_age_seconds", "Age of the oldest result still in the outbox (0 when empty).", value=age)

    @staticmethod
    def _source(lane: Any) -> Iterator[Any]:
        stats = getattr(lane.source, "stats", None)
        incomplete = int(stats.get("incomplete_buffers", 0)) if isinstance(stats, dict) else 0
        yield CounterMetricFamily("iad_frames_incomplete", "Incomplete camera buffers (GenICam).", value=incomplete)

    @staticmethod
    def _link(lane: Any) -> Iterator[Any]:
        link = getattr(lane, "link", None)
        if link is None:
            return
        yield GaugeMetricFamily("iad_mqtt_connected", "1 while the decision link to the broker is up.", value=1 if link.connected else 0)
        yield CounterMetricFamily("iad_mqtt_reconnects", "Reconnections of the decision link.", value=link.reconnects)

    def _assistant(self) -> Iterator[Any]:
        node = self.owner.sparkplug
        if node is not None:
            yield GaugeMetricFamily("iad_sparkplug_connected", "1 while the Sparkplug edge node is online.", value=1 if node.connected else 0)
            yield CounterMetricFamily("iad_sparkplug_ddata", "DDATA messages published.", value=node.published)
            yield CounterMetricFamily("iad_sparkplug_ddata_skipped", "DDATA skipped (queue full).", value=node.skipped)
        feed = self.owner.assistant_feed
        status = feed.latest if feed is not None else None
        if not status:
            return
        yield GaugeMetricFamily("iad_assistant_backlog", "Jobs waiting in the assistant's backlog.", value=int(status.get("backlog", 0)))
        counters = status.get("counters") or {}
        jobs = CounterMetricFamily("iad_assistant_jobs", "Assistant jobs by outcome.", labels=["outcome"])
        for outcome in ("received", "done", "skipped", "failed"):
            jobs.add_metric([outcome], int(counters.get(outcome, 0)))
        yield jobs
        selftest = CounterMetricFamily("iad_assistant_selftest", "Assistant consistency self-tests by outcome.", labels=["outcome"])
        for outcome in ("caught", "missed"):
            selftest.add_metric([outcome], int(counters.get(f"selftest_{outcome}", 0)))
        yield selftest
        last = status.get("self_test") or {}
        if last:
            ok = 1 if last.get("caught") is True else 0
            yield GaugeMetricFamily("iad_assistant_selftest_caught", "1 when the latest self-test's planted defect was found.", value=ok)


class StationMetrics:
    """The registry, the per-decision observer and the HTTP endpoint of one station."""

    def __init__(self, lane: Any, sparkplug: Any = None, assistant_feed: AssistantStatusFeed | None = None):
        self.lane = lane
        self.sparkplug = sparkplug
        self.assistant_feed = assistant_feed
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter("iad_decisions", "Decisions published to the PLC side, by verdict.", ["verdict"],
                                 registry=self.registry)
        self.fail_safe = Counter("iad_fail_safe_decisions", "Fail-safe decisions by reason class.", ["reason"],
                                 registry=self.registry)
        self.delivery = Counter("iad_decision_delivery", "What became of each decision message.", ["delivery"],
                                registry=self.registry)
        self.latency = Histogram("iad_decision_latency_seconds", "Trigger to decision.", buckets=LATENCY_BUCKETS_S,
                                 registry=self.registry)
        for verdict in ("OK", "NG"):
            self.decisions.labels(verdict)
        for label in REASON_CLASSES:
            self.fail_safe.labels(label)
        self.registry.register(_LaneCollector(self))
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def observe(self, frame: Any, result: Any, decision: Any) -> None:
        """Lane observer (post thread)."""
        self.decisions.labels(decision.verdict).inc()
        if decision.fail_safe:
            self.fail_safe.labels(reason_class(decision.reason or "")).inc()
        self.delivery.labels(decision.delivery).inc()
        self.latency.observe(max(0.0, decision.latency_ms / 1000.0))

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` (0: a free port); returns the port."""
        try:
            self.server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise IadError(f"metrics.port {port}: cannot serve metrics on {host}:{port} ({exc.strerror or exc}): "
                           "choose a free port or set metrics.port to null") from None
        self.port = int(self.server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.assistant_feed is not None:
            self.assistant_feed.close()
