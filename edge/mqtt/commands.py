"""Commands on ``<root>/cmd/<name>``: schema-validated, rate-limited, always answered, never fatal.

Why: ``cmd/...`` is the one place where the network tells the appliance to
*do* something. Whatever arrives there (garbage, a flood, an unknown name, a
valid command whose handler fails) must leave the real-time lane untouched,
and the sender must learn what happened. So:

* every message is a JSON object validated by the command's pydantic model
  (``extra="forbid"``: an unknown field is an error, not silently ignored);
* a token bucket bounds how many commands are *executed* per second; excess
  ones are rejected (``status: "rate_limited"``), and at most one such reply
  per second is sent, so a flood cannot turn into a reply flood;
* the answer goes to ``<root>/cmd/<name>/result`` (QoS 1, not retained):
  ``{"command", "request_id", "status": ok|rejected|rate_limited|error, "reason", "result", "time"}``;
* handler exceptions become ``status: "error"`` replies; nothing propagates
  into paho's network thread.

:class:`CommandListener` is a separate MQTT connection (client id
``<lane client id>-cmd``) with the same TLS/credentials as the lane, so command
traffic never shares the decision client's network thread. Commands listed in
``delegated`` (``generate``: the assistant process answers it) are left alone.

Built-in lane commands (:func:`lane_commands`): ``ping`` and ``status``
(publish the retained status now). The assistant validates ``cmd/generate``
with :class:`GenerateCommand`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.mqtt.auth import apply_auth
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 16 * 1024
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class CommandModel(BaseModel):
    """Base of every command body: strict, with an optional ``request_id`` echoed in the reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str | None = Field(None, pattern=REQUEST_ID_PATTERN, description="Echoed in the reply.")


class PingCommand(CommandModel):
    """Liveness check: the reply says the lane's command path works."""


class StatusCommand(CommandModel):
    """Publish the retained status now (instead of waiting for the next interval)."""


class GenerateCommand(CommandModel):
    """Mask-guided defect generation request (answered by the assistant process)."""

    image: str | None = Field(None, max_length=4096, description="Image path (under the archive or recipe folder).")
    archive: str | None = Field(None, max_length=4096, description="Archive entry folder whose frame.png is used.")
    mask: str | None = Field(None, max_length=4096, description="Mask image path; default a random mask.")
    type: str = Field("scratch", pattern=r"^[a-z_/-]{1,32}$", description="Defect type.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    feather: float = Field(3.0, ge=0, le=64)
    intensity: float = Field(1.0, ge=0, le=4)
    trigger_id: int | None = Field(None, ge=0)


Handler = Callable[[Any], dict[str, Any] | None]


@dataclass
class CommandSpec:
    """One command: its body model and what it does (returns the reply's ``result``)."""

    model: type[CommandModel]
    handler: Handler


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` saved up; ``take()`` is False when empty."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


class CommandDispatcher:
    """Validates, rate-limits and runs commands; ``handle(topic, payload)`` returns the reply (or None).

    ``publish(topic, payload_bytes)`` sends replies. Thread-safe; never raises.
    """

    def __init__(self, root: str, publish: Callable[[str, bytes], Any], rate_per_s: float = 2.0, burst: int = 5,
                 delegated: tuple[str, ...] = ("generate",), max_payload: int = MAX_PAYLOAD_BYTES):
        self.root = root.rstrip("/")
        self.topics = Topics(self.root)
        self.publish = publish
        self.commands: dict[str, CommandSpec] = {}
        self.delegated = set(delegated)
        self.max_payload = max_payload
        self.bucket = TokenBucket(rate_per_s, burst)
        self._limited_reply = TokenBucket(1.0, 1)
        self.counters = {"accepted": 0, "rejected": 0, "rate_limited": 0, "errors": 0, "replies_suppressed": 0}
        self._lock = threading.Lock()

    @property
    def subscription(self) -> str:
        """Topic filter for every command of this station (replies on cmd/<name>/result do not match it)."""
        return self.topics.cmd_all

    def register(self, name: str, model: type[CommandModel], handler: Handler) -> None:
        self.commands[name] = CommandSpec(model, handler)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def handle(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """Process one message; returns the reply body sent (None when ignored or suppressed)."""
        prefix = self.topics.cmd_prefix
        if not topic.startswith(prefix) or "/" in topic[len(prefix):]:
            return None  # not a command topic (e.g. someone else's reply)
        name = topic[len(prefix):]
        if name in self.delegated and name not in self.commands:
            return None
        try:
            return self._handle(name, payload)
        except Exception as exc:  # the last line of defence of the network thread
            log.exception("command %s: unexpected failure", name)
            self._count("errors")
            return self._reply(name, None, "error", f"internal error: {type(exc).__name__}")

    def _handle(self, name: str, payload: bytes) -> dict[str, Any] | None:
        if not self.bucket.take():
            self._count("rate_limited")
            if not self._limited_reply.take():
                self._count("replies_suppressed")
                return None
            return self._reply(name, None, "rate_limited",
                               f"too many commands: at most {self.bucket.rate:g}/s (burst {self.bucket.burst:g})")
        spec = self.commands.get(name)
        if spec is None:
            self._count("rejected")
            known = ", ".join(sorted(set(self.commands) | self.delegated)) or "none"
            return self._reply(name, None, "rejected", f"unknown command '{name[:64]}' (known: {known})")
        if len(payload) > self.max_payload:
            self._count("rejected")
            return self._reply(name, None, "rejected", f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        try:
            body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            self._count("rejected")
            return self._reply(name, None, "rejected", f"not a JSON object ({type(exc).__name__}: {str(exc)[:120]})")
        if not isinstance(body, dict):
            self._count("rejected")
            return self._reply(name, None, "rejected", f"the body must be a JSON object (got {type(body).__name__})")
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        try:
            command = spec.model.model_validate(body)
        except ValidationError as exc:
            self._count("rejected")
            return self._reply(name, request_id if request_id and len(request_id) <= 64 else None, "rejected",
                               f"invalid {name} command: {_problems(exc)}")
        try:
            result = spec.handler(command)
        except Exception as exc:  # a failing command is answered, never fatal
            self._count("errors")
            log.warning("command %s (request %s) failed: %s", name, command.request_id, exc)
            return self._reply(name, command.request_id, "error", f"{type(exc).__name__}: {exc}")
        self._count("accepted")
        return self._reply(name, command.request_id, "ok", None, result or {})

    def _reply(self, name: str, request_id: str | None, status: Literal["ok", "rejected", "rate_limited", "error"],
               reason: str | None, result: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"command": name[:64], "request_id": request_id, "status": status, "time": round(time.time(), 3)}
        if reason is not None:
            body["reason"] = reason
        if result is not None:
            body["result"] = result
        if status != "ok":
            log.info("command %s rejected (%s): %s", name[:64], status, reason)
        try:
            self.publish(self.topics.cmd_result(name[:64]), json.dumps(body, default=str).encode())
        except Exception as exc:
            log.warning("could not publish the reply to command %s: %s", name[:64], exc)
        return body


def lane_commands(dispatcher: CommandDispatcher, lane: Any) -> CommandDispatcher:
    """Register the lane's built-in commands (``ping``, ``status``) on ``dispatcher``."""

    def ping(cmd: PingCommand) -> dict[str, Any]:
        return {"pong": True, "session": getattr(lane, "session", None)}

    def status(cmd: StatusCommand) -> dict[str, Any]:
        link = getattr(lane, "link", None)
        if link is None or link.publish_status("online") is None:
            raise RuntimeError("the lane's MQTT link is not connected")
        return {"counters": lane.counters.snapshot()}

    dispatcher.register("ping", PingCommand, ping)
    dispatcher.register("status", StatusCommand, status)
    return dispatcher


class CommandListener:
    """A dedicated MQTT v5 connection that feeds ``cmd/+`` to a :class:`CommandDispatcher`.

    Same broker, TLS and credentials as the lane (``cfg`` is the recipe's
    ``mqtt`` section); reconnects by itself (paho's loop with back-off).
    """

    def __init__(self, cfg: Any, dispatcher: CommandDispatcher, client_id: str, host: str | None = None,
                 port: int | None = None):


        self.dispatcher = dispatcher
        self.host = host or cfg.host
        self.port = int(port or cfg.port)
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(100)
        self.client.reconnect_delay_set(0.2, 5.0)
        apply_auth(self.client, cfg)
        self.keepalive = cfg.keepalive_s
        dispatcher.publish = self._publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_subscribe = lambda *a: self.connected.set()  # after SUBACK: no command is missed
        self.client.on_message = lambda c, u, msg: dispatcher.handle(msg.topic, bytes(msg.payload))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the command connection: {reason_code}"
            log.warning("MQTT %s:%s refused the command listener: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.dispatcher.subscription, qos=1)

    def _publish(self, topic: str, payload: bytes) -> Any:
        client = self.client
        return None if client is None else client.publish(topic, payload, qos=1, retain=False)

    def start(self) -> CommandListener:
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()  # dropping the client frees its socket pair (paho closes it on release)
