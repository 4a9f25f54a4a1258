"""What the station says on MQTT, kept for the console and fanned out to browsers (server-sent events).

One MQTT v5 subscriber (client id ``iad-console-<line>-<station>-<random>``: several consoles may watch
one station) on the
station's ``decision``, ``status``, ``status/assistant`` and ``explanation``
topics. paho's network thread hands each message to the web server's event
loop; every browser has its own bounded queue, and a browser that does not keep
up loses events (counted) instead of holding up the others. The station is never
waited for: it does not know the console exists.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from edge.mqtt.auth import apply_auth
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

CLIENT_QUEUE = 256
KEEP_DECISIONS = 100


def parse_decision(payload: bytes) -> dict[str, Any] | None:
    """A decision message in either payload format (JSON object or ``trigger_id;verdict;score;latency_ms``)."""
    try:
        body = json.loads(payload)
        return body if isinstance(body, dict) else None
    except ValueError:
        pass
    parts = payload.decode(errors="replace").split(";")
    if len(parts) != 4:
        return None
    try:
        score = float(parts[2])
        return {"trigger_id": int(parts[0]), "verdict": parts[1], "score": None if score < 0 else score,
                "latency_ms": float(parts[3])}
    except ValueError:
        return None


class StationFeed:
    """The station's live messages: latest status, recent decisions, explanations; SSE fan-out."""

    def __init__(self, recipe: Any, host: str | None = None, port: int | None = None):
        self.topics = Topics(recipe.topic_root)
        self.host = host or recipe.mqtt.host
        self.port = int(port or recipe.mqtt.port)
        self.status: dict[str, Any] | None = None
        self.assistant_status: dict[str, Any] | None = None
        self.decisions: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP_DECISIONS)
        self.explanations: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.connected = threading.Event()
        self.lost_events = 0
        self._clients: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"iad-console-{recipe.line}-{recipe.station}-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv5)  # own id per console: two consoles must not take over each other's session
        apply_auth(self._client, recipe.mqtt)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = lambda *a: self.connected.clear()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.2, 5)

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._client.connect_async(self.host, self.port, keepalive=15)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send_command(self, name: str, body: dict[str, Any]) -> None:
        """Publish ``cmd/<name>`` (e.g. ``status``: the station republishes its retained status now)."""
        if self.connected.is_set():
            self._client.publish(self.topics.cmd(name), json.dumps(body), qos=1)

    # ------------------------------------------------------------------ browsers
    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._clients.discard(q)

    def _fan_out(self, event: str, data: dict[str, Any]) -> None:  # runs on the event loop
        for q in list(self._clients):
            try:
                q.put_nowait((event, data))
            except asyncio.QueueFull:
                self.lost_events += 1

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        """Record and fan out on the event loop's thread, so a browser's snapshot and its queue never overlap."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._record_and_fan_out, event, data)
        else:
            self._record(event, data)

    def _record_and_fan_out(self, event: str, data: dict[str, Any]) -> None:
        self._record(event, data)
        self._fan_out(event, data)

    def _record(self, event: str, data: dict[str, Any]) -> None:
        if event == "decision":
            self.decisions.appendleft(data)
        elif event == "status":
            self.status = data
        elif event == "assistant":
            self.assistant_status = data

    # ------------------------------------------------------------------ MQTT
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            return
        client.subscribe([(self.topics.decision, 0), (self.topics.status, 0), (f"{self.topics.status}/assistant", 0),
                          (self.topics.explanation, 0)])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        # "connected" only after SUBACK (paho sends SUBSCRIBE after on_connect returns): from then on the
        # feed misses nothing the lane publishes.
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: Any) -> None:
        try:
            if msg.topic == self.topics.decision:
                body = parse_decision(msg.payload)
                if body is not None:
                    body["received_at"] = time.time()
                    self._emit("decision", body)
                return
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if msg.topic == self.topics.status:
            self._emit("status", body)
        elif msg.topic == f"{self.topics.status}/assistant":
            self._emit("assistant", body)
        elif msg.topic == self.topics.explanation:
            key = f"{body.get('session')}/{body.get('trigger_id')}"
            with self._lock:
                self.explanations[key] = body
                while len(self.explanations) > KEEP_DECISIONS:
                    self.explanations.popitem(last=False)
            self._emit("explanation", body)
