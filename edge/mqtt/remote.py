"""Read what a running appliance applied, from its retained MQTT `status`.

The lane publishes a retained JSON status; the live-reload watcher adds a
``recipe_applied`` object (sha256, time, path, effective values) to it, so any
machine that can reach the broker can compare a candidate recipe with the
running one without touching the appliance.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

from edge.errors import IadError


class RemoteStatusError(IadError):
    """The appliance's status could not be read (broker unreachable, nothing retained, not JSON)."""


def parse_host_port(text: str, default_port: int = 1883) -> tuple[str, int]:
    """'host:port' or 'host' -> (host, port); a clear error for anything else."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        number = int(port)
    except ValueError:
        raise RemoteStatusError(f"--against {text}: expected HOST:PORT (e.g. 192.168.0.10:1883) or a recipe file") from None
    if not host or not 0 < number < 65536:
        raise RemoteStatusError(f"--against {text}: expected HOST:PORT (e.g. 192.168.0.10:1883) or a recipe file")
    return host, number


def read_status(host: str, port: int, topic: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Subscribe to ``topic`` and return the retained status JSON (waits at most ``timeout_s``)."""

    got: dict[str, Any] = {}
    done = threading.Event()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe(topic, qos=1)

    def on_message(c, userdata, msg):
        got["payload"] = bytes(msg.payload)
        done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise RemoteStatusError(f"cannot reach the broker at {host}:{port} ({exc})") from None
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise RemoteStatusError(f"no retained status on {topic} at {host}:{port} within {timeout_s:g} s (is the appliance running?)")
    finally:
        client.disconnect()
        client.loop_stop()
    try:
        status = json.loads(got["payload"])
    except ValueError:
        raise RemoteStatusError(f"the status on {topic} is not JSON: {got['payload'][:80]!r}") from None
    if not isinstance(status, dict):
        raise RemoteStatusError(f"the status on {topic} is not a JSON object")
    return status


def applied_recipe(status: dict[str, Any]) -> tuple[str | None, dict | None]:
    """(sha256, effective values) of the recipe a status says is applied; either may be None."""
    extras = status.get("extras") if isinstance(status.get("extras"), dict) else {}
    applied = status.get("recipe_applied") or extras.get("recipe_applied")
    if isinstance(applied, dict):
        return applied.get("sha256"), applied.get("values")
    recipe = status.get("recipe")
    if isinstance(recipe, dict):
        return recipe.get("sha256"), recipe.get("values")
    sha = status.get("recipe_sha256") or (recipe if isinstance(recipe, str) else None)
    return sha, None
