"""The lane's MQTT connection: decisions now or never, results through the outbox, a retained status.

Design (why it looks like this):

* **One paho client per connection.** paho keeps unacknowledged QoS 1
  messages and re-sends them after it reconnects, and queues messages
  published while disconnected without bound. For a decision that means late
  delivery, which the PLC must never see. So a supervisor thread creates a fresh
  client for every connection attempt (``reconnect_on_failure=False``) and
  throws the old one away when the link drops: nothing of an old connection is
  ever re-sent. Results are not lost by this: they stay in the SQLite
  :class:`~edge.mqtt.outbox.Outbox` until their PUBACK arrives, and the next
  connection sends every row still there, oldest first.
* **Decisions are published only while connected** (:meth:`MqttLink.publish_decision`
  returns ``"disconnected"`` otherwise, and the lane counts it), with MQTT v5
  message-expiry = the time left in the decision window, rounded up to whole
  seconds (the protocol's unit; the payload also carries the exact ``deadline``).
* **Nothing here blocks the caller on the network**: ``publish`` only hands the
  packet to paho's network thread; connecting and back-off happen in the
  supervisor thread, outbox draining in the drainer thread.
* **status** is retained: ``online`` on every connect, refreshed every
  ``status_interval_s``, ``stopped`` on a clean shutdown, and the broker
  publishes the last will ``offline`` when the lane vanishes.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.mqtt import MqttConfig
from edge.mqtt.auth import apply_auth
from edge.mqtt.outbox import Outbox
from edge.mqtt.topics import Topics
from edge.realtime import background_thread

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class MqttLink:
    """Connection supervisor + outbox drainer + status publisher for one station.

    ``status_provider()`` returns the dict published on ``status`` (counters,
    hashes, extras); the link adds ``state`` and ``time``.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        topics: Topics,
        outbox: Outbox,
        client_id: str,
        status_provider: Callable[[], dict[str, Any]] = dict,
        host: str | None = None,
        port: int | None = None,
        backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S,
        max_inflight_results: int = 20,
        status_interval_s: float = 5.0,
        identity: dict[str, Any] | None = None,
    ):
        self.cfg = cfg
        self.topics = topics
        self.outbox = outbox
        self.client_id = client_id
        self.host = host or cfg.host
        self.port = int(port or cfg.port)
        self.status_provider = status_provider
        self.backoff_s = backoff_s
        self.max_inflight_results = max_inflight_results
        self.status_interval_s = status_interval_s
        self.identity = dict(identity or {})  # e.g. session, line, station: in every status, the will too
        # While this says True (the lane has a frame in flight) no result is handed to the socket, so a burst
        # of results (e.g. an outage's backlog) never sits in front of a decision; held at most max_hold_s.
        self.hold_results: Callable[[], bool] | None = None
        self.max_hold_s = 0.5
        self.reconnects = 0
        self.connects = 0
        self.results_acked = 0
        self.last_error: str | None = None

        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = threading.Event()
        self._link_down = threading.Event()
        self._stop = threading.Event()
        self._draining_done = threading.Event()
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._supervisor = threading.Thread(target=self._supervise, name="mqtt-supervisor", daemon=True)
        self._drainer = threading.Thread(target=self._drain_loop, name="mqtt-outbox", daemon=True)

    # ---------------------------------------------------------------- public API
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> MqttLink:
        """Start connecting in the background; a bad password/TLS file raises here, in the caller's thread."""
        self._make_client(0)
        self._supervisor.start()
        self._drainer.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for the first connection (used by the CLI at start, never by the lane)."""
        return self._connected.wait(timeout)

    def publish_decision(self, payload: bytes, remaining_s: float) -> str:
        """Send a decision now or never: returns 'sent', 'disconnected', 'late' or 'error'.

        ``remaining_s`` is the time left in the decision window; it becomes the
        MQTT v5 message-expiry interval (whole seconds, at least 1).
        """
        if remaining_s <= 0:
            return "late"
        client = self._client
        if client is None or not self._connected.is_set():
            return "disconnected"
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, math.ceil(remaining_s))
        try:
            info = client.publish(self.topics.decision, payload, qos=1, retain=False, properties=props)
        except (ValueError, RuntimeError, OSError) as exc:
            self.last_error = f"decision publish failed: {exc}"
            return "error"
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            return "disconnected"
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.last_error = f"decision publish failed: {mqtt.error_string(info.rc)}"
            return "error"
        return "sent"

    def notify_result(self) -> None:
        """Tell the drainer that a new row is in the outbox."""
        self._wake.set()

    def publish_status(self, state: str = "online") -> mqtt.MQTTMessageInfo | None:
        """Publish the retained status now (no-op while disconnected)."""
        client = self._client
        if client is None or not self._connected.is_set():
            return None
        return client.publish(self.topics.status, self._status_payload(state), qos=1, retain=True)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Clean shutdown: drain the outbox (up to the timeout), publish ``stopped``, disconnect.

        Rows not acknowledged by then stay on disk and are sent by the next run.
        """
        deadline = time.monotonic() + drain_timeout_s
        while self._connected.is_set() and time.monotonic() < deadline and self.outbox.count() > 0:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._drainer.join(5)
        client = self._client
        if client is not None and self._connected.is_set():
            try:
                info = client.publish(self.topics.status, self._status_payload("stopped"), qos=1, retain=True)
                info.wait_for_publish(max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the 'stopped' status: %s", exc)
            client.disconnect()
        self._link_down.set()
        self._supervisor.join(5)
        self._client = None  # dropping the last client frees its socket pair (paho closes it on release)

    # ---------------------------------------------------------------- internals
    def _status_payload(self, state: str) -> bytes:
        now = round(time.time(), 3)
        body: dict[str, Any] = {"state": state, "client_id": self.client_id, **self.identity}
        if state == "offline":
            # The will: the broker publishes it later, when the link vanishes, so the moment is unknown
            # here; say when this connection (and its will) began instead of a misleading `time`.
            body["connected_since"] = now
        else:
            body["time"] = now
            body.update(self.status_provider())
            outbox = self.outbox.stats()
            body.setdefault("mqtt", {}).update(
                {"reconnects": self.reconnects, "outbox_pending": outbox["rows"], "outbox_bytes": outbox["bytes"],
                 "outbox_dropped": outbox["dropped_total"], "outbox_dropped_by": outbox["dropped"],
                 "last_error": self.last_error}
            )
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    def _make_client(self, generation: int) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(max(20, self.max_inflight_results * 2))
        client.max_queued_messages_set(1000)  # bound paho's memory if the socket stalls unnoticed
        client.will_set(self.topics.status, self._status_payload("offline"), qos=1, retain=True)
        apply_auth(client, self.cfg)  # username/password file and TLS, with errors naming the file

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                self.last_error = f"broker refused the connection: {reason_code}"
                log.warning("MQTT %s:%s refused: %s", self.host, self.port, reason_code)
                return
            self.connects += 1
            if self.connects > 1:
                self.reconnects += 1
            self._connected.set()
            log.info("MQTT connected to %s:%s", self.host, self.port)
            c.publish(self.topics.status, self._status_payload("online"), qos=1, retain=True)
            self._wake.set()

        def on_disconnect(c, userdata, flags, reason_code, properties):
            if self._connected.is_set() and not self._stop.is_set():
                log.warning("MQTT link to %s:%s lost (%s)", self.host, self.port, reason_code)
            self._connected.clear()
            self._link_down.set()
            self._wake.set()

        def on_publish(c, userdata, mid, reason_code, properties):
            if not reason_code.is_failure:
                self._acks.put((generation, mid))
                self._wake.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        return client

    def _report_failure(self, message: str) -> None:
        """Remember the error; log it as a warning once per distinct message (retries would flood the journal)."""
        if message != self.last_error:
            log.warning("%s (retrying with back-off)", message)
        else:
            log.debug(message)
        self.last_error = message

    def _supervise(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._generation += 1
            try:
                client = self._make_client(self._generation)
            except Exception as exc:  # e.g. a TLS file removed while running
                self._report_failure(f"cannot set up the MQTT client: {exc}")
                self._stop.wait(self.backoff_s[-1])
                continue
            self._link_down.clear()
            try:
                client.connect(self.host, self.port, keepalive=self.cfg.keepalive_s, clean_start=True)
            except (OSError, ValueError) as exc:
                self._report_failure(f"cannot connect to {self.host}:{self.port}: {exc}")
                self._stop.wait(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
                attempt += 1
                continue
            connects_before = self.connects
            self._client = client
            client.loop_start()
            self._link_down.wait()
            was_connected = self.connects > connects_before
            if self._stop.is_set():
                client.loop_stop()
                break
            self._connected.clear()
            try:
                client.disconnect()
            except (OSError, ValueError):
                pass
            client.loop_stop()
            attempt = 0 if was_connected else attempt + 1
            self._stop.wait(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
        self._connected.clear()

    def _drain_loop(self) -> None:
        background_thread()  # results are bookkeeping: never real-time beside the decision path
        inflight: dict[int, int] = {}  # mid -> outbox row id, for the current connection only
        generation = 0
        next_status = time.monotonic() + self.status_interval_s
        held_since: float | None = None
        sent_held = False  # the last round sent a result past an expired hold: more may be waiting
        while True:
            # Held behind a frame in flight: sleep until the hold would expire; the lane wakes us as soon as
            # the frame's decision is out (notify_result from Lane._set_busy) and the post stage when a new
            # result is queued, so a saturated lane is not polled (that CPU belongs to the expert).
            timeout = 0.25
            if held_since is not None:
                remaining = self.max_hold_s - (time.monotonic() - held_since)
                timeout = remaining if remaining > 0 else (0.005 if sent_held else 0.25)
            self._wake.wait(max(0.001, timeout))
            sent_held = False
            self._wake.clear()
            if self._stop.is_set():
                return
            if generation != self._generation:
                generation, inflight = self._generation, {}
            while True:
                try:
                    gen, mid = self._acks.get_nowait()
                except queue.Empty:
                    break
                row_id = inflight.pop(mid, None) if gen == generation else None
                if row_id is not None:
                    self.outbox.delete(row_id)
                    self.results_acked += 1
            client = self._client
            if client is None or not self._connected.is_set():
                continue
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + self.status_interval_s
                self.publish_status("online")
            room = self.max_inflight_results - len(inflight)
            if room <= 0:
                continue
            hold = self.hold_results
            if hold is not None and hold():
                held_since = held_since if held_since is not None else time.monotonic()
                if time.monotonic() - held_since < self.max_hold_s:
                    continue  # a frame is in flight: its decision goes out first
                room = 1  # a lane busy without pause: one result at a time, never a burst
            else:
                held_since = None
            for row in self.outbox.pending(room, exclude=set(inflight.values())):
                info = client.publish(row.topic, row.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                inflight[info.mid] = row.id
                sent_held = held_since is not None
