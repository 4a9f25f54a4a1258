"""The assistant's own MQTT connection: takes `result` and `cmd/generate`, publishes its answers.

A separate client from the lane's (its own process, its own client id), so
nothing the assistant does on the network can delay a decision. Messages are
QoS 1 and not retained, except ``status/assistant`` (retained, last will
``offline``). paho reconnects by itself; publishing while disconnected queues
inside paho (bounded here by ``max_queued``), and an explanation that could
not be queued is logged — it is advisory, never needed by the PLC.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


class AssistantBus:
    """paho-mqtt v5 client: ``on_message(topic, body_dict)`` for subscribed topics; ``publish(topic, body)``."""

    def __init__(self, host: str, port: int, client_id: str, status_topic: str,
                 subscribe: tuple[str, ...] = (), on_message: Callable[[str, Any], None] | None = None,
                 keepalive: int = 10, max_queued: int = 1000, username: str | None = None,
                 password: str | None = None, tls: Any = None):

        self.status_topic = status_topic
        self.connected = threading.Event()
        self._subscribe = subscribe
        self._on_message = on_message
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.will_set(status_topic, json.dumps({"state": "offline"}), qos=1, retain=True)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(0.2, 5.0)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file) if tls.cert_file else None,
                                keyfile=str(tls.key_file) if tls.key_file else None)
        self.client.on_connect = self._connected
        self.client.on_subscribe = self._subscribed
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._message
        self.host, self.port, self.keepalive = host, port, keepalive

    def start(self, wait_s: float = 5.0) -> AssistantBus:
        """Connect in the background (retrying); wait up to ``wait_s`` for the first connection and its SUBACK."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self.connected.wait(wait_s)
        return self

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("assistant MQTT connect refused: %s", reason_code)
            return
        if self._subscribe:
            # paho sends SUBSCRIBE after this callback returns: "connected" waits for the SUBACK
            # (_subscribed), else a message published right after it could reach the broker first and be lost.
            client.subscribe([(t, 1) for t in self._subscribe])
        else:
            self.connected.set()

    def _subscribed(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(code) for code in reason_codes if getattr(code, "is_failure", False)]
        if refused:
            log.warning("assistant MQTT subscription refused (%s): %s", ", ".join(refused), self._subscribe)
            return
        self.connected.set()

    def _message(self, client, userdata, msg) -> None:
        if self._on_message is None:
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            log.warning("assistant: ignored a non-JSON message on %s", msg.topic)
            return
        try:
            self._on_message(msg.topic, body)
        except Exception:  # a bad message must not stop the network thread
            log.exception("assistant: handling a message on %s failed", msg.topic)

    def publish(self, topic: str, body: dict[str, Any], retain: bool = False) -> bool:
        info = self.client.publish(topic, json.dumps(body, separators=(",", ":"), default=str), qos=1, retain=retain)
        if info.rc != 0:
            log.warning("assistant: could not queue a message for %s (rc %s)", topic, info.rc)
            return False
        return True

    def stop(self, state: str = "stopped", flush_s: float = 2.0) -> None:
        """Publish the final status, give paho a moment to flush, disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, json.dumps({"state": state, "time": time.time()}), qos=1, retain=True)
            try:
                info.wait_for_publish(flush_s)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
