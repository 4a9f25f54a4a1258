"""The station as a Sparkplug B edge node, for SCADA/HMI (Ignition and others).

Topics (Sparkplug B 3.0, namespace ``spBv1.0``)::

    spBv1.0/<group>/NBIRTH/<node>            node birth: bdSeq, Node Control/Rebirth, node info
    spBv1.0/<group>/DBIRTH/<node>/<device>   device (= station) birth: every metric with its datatype
    spBv1.0/<group>/DDATA/<node>/<device>    one per decision: verdict, score, latency, regions, counters
    spBv1.0/<group>/NDEATH/<node>            the MQTT will (and sent on a clean stop), bdSeq of the session
    spBv1.0/<group>/NCMD/<node>              subscribed: ``Node Control/Rebirth`` = true -> NBIRTH + DBIRTH again

Why it looks like this:

* **Its own MQTT connection, its own threads.** The PLC's decision goes out on the
  lane's connection (:mod:`edge.mqtt.client`) from the inspection thread; nothing
  here is on that path. The lane's post thread calls :meth:`SparkplugNode.observe`,
  which only puts the decision on a bounded queue (full: the DDATA is skipped and
  counted, never waited for); a worker thread encodes and publishes.
* **One paho client per connection**, created with the will = NDEATH carrying the
  bdSeq of *that* connection; bdSeq goes up by one per connection (0-255, kept in
  ``bdseq_file`` across restarts) and NBIRTH carries the same value, so SCADA can tell a
  stale NDEATH from the current one.
* **seq** is 0 on NBIRTH and goes up by one per message of the node (DBIRTH, DDATA),
  wrapping 255 -> 0. NDEATH has no seq.
* Payloads are encoded with :mod:`pysparkplug` (protobuf classes of Eclipse Tahu's
  ``sparkplug_b.proto``); nothing here writes protobuf by hand.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pysparkplug as spb

from edge import __version__
from edge.atomic import write_text_atomic
from edge.mqtt.auth import apply_auth

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)

DT = spb.DataType

# The device's metrics: (name, datatype). DBIRTH lists all of them; DDATA carries all of them per decision.
DEVICE_METRICS: tuple[tuple[str, Any], ...] = (
    ("Decision/Trigger ID", DT.UINT64),
    ("Decision/Verdict", DT.STRING),
    ("Decision/NG", DT.BOOLEAN),
    ("Decision/Score", DT.DOUBLE),
    ("Decision/Latency ms", DT.DOUBLE),
    ("Decision/Regions", DT.UINT32),
    ("Decision/Fail Safe", DT.BOOLEAN),
    ("Decision/Reason", DT.STRING),
    ("Counters/Decisions", DT.UINT64),
    ("Counters/OK", DT.UINT64),
    ("Counters/NG", DT.UINT64),
    ("Counters/Fail Safe", DT.UINT64),
    ("Counters/Dropped", DT.UINT64),
    ("Counters/Late", DT.UINT64),
    ("Recipe/SHA256", DT.STRING),
    ("Engine/SHA256", DT.STRING),
)


@dataclass(frozen=True)
class SparkplugTopics:
    """The topics of one edge node and its one device."""

    group_id: str
    edge_node_id: str
    device_id: str

    def node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{kind}/{self.edge_node_id}"

    def device(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{kind}/{self.edge_node_id}/{self.device_id}"


def topics_for(recipe: Any) -> SparkplugTopics:
    """Group/node/device ids from the recipe (node default ``<line>-<station>``, device default ``<station>``)."""
    cfg = recipe.sparkplug
    return SparkplugTopics(cfg.group_id, cfg.edge_node_id or f"{recipe.line}-{recipe.station}", cfg.device_id or recipe.station)


def _now_ms() -> int:
    return int(time.time() * 1000)


class BdSeq:
    """The birth/death sequence number (0-255), kept in a small file so it survives restarts."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.value = int(self.path.read_text().strip()) % 256
        except (OSError, ValueError):
            self.value = 0

    def next(self) -> int:
        """The value for the next connection (the stored one), then stores the one after it."""
        current = self.value
        self.value = (current + 1) % 256
        try:
            write_text_atomic(self.path, f"{self.value}\n", fsync=False)
        except OSError as exc:  # a read-only disk must not stop SCADA reporting
            log.warning("Sparkplug: cannot store bdSeq in %s: %s", self.path, exc)
        return current


class SparkplugNode:
    """Sparkplug B edge node for one station (see the module docstring).

    ``counters()`` returns the lane's counters (dict) and ``hashes()`` the
    (recipe sha256, engine sha256); both are read by the worker thread only.
    """

    def __init__(
        self,
        recipe: Any,
        counters: Callable[[], dict[str, int]] = dict,
        hashes: Callable[[], tuple[str | None, str | None]] = lambda: (None, None),
        host: str | None = None,
        port: int | None = None,
    ):
        cfg = recipe.sparkplug
        self.cfg = cfg
        self.mqtt_cfg = recipe.mqtt
        self.topics = topics_for(recipe)
        self.host = host or cfg.host or recipe.mqtt.host
        self.port = int(port or cfg.port or recipe.mqtt.port)
        self.counters = counters
        self.hashes = hashes
        self.client_id = f"iad-spb-{self.topics.group_id}-{self.topics.edge_node_id}"
        self.bdseq_store = BdSeq(cfg.bdseq_file)
        self.bd_seq: int | None = None  # bdSeq of the current connection
        self.births = 0
        self.published = 0
        self.skipped = 0  # DDATA not sent because the queue was full
        self.last_error: str | None = None

        self._seq = 0
        self._lock = threading.Lock()  # seq + publishing order (worker and paho's thread for rebirth)
        self._queue: queue.Queue[Any | None] = queue.Queue(maxsize=cfg.queue_size)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._link_down = threading.Event()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="sparkplug-link", daemon=True)
        self._worker = threading.Thread(target=self._work, name="sparkplug-ddata", daemon=True)

    # ------------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def queue_depth(self) -> int:
        """Decisions waiting to be published as DDATA."""
        return self._queue.qsize()

    def start(self) -> SparkplugNode:
        self._supervisor.start()
        self._worker.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def observe(self, frame: Any, result: Any, decision: Any) -> None:
        """Lane observer (post thread): queue the decision for DDATA; never blocks."""
        try:
            self._queue.put_nowait(decision)
        except queue.Full:
            self.skipped += 1

    def stop(self, timeout_s: float = 2.0) -> None:
        """Clean stop: publish what is queued, then NDEATH (the broker does not send the will on a clean disconnect)."""
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)  # behind what is queued: the worker publishes that first
        except queue.Full:
            pass
        self._worker.join(max(0.1, deadline - time.monotonic()))
        self._stop.set()
        client = self._client
        if client is not None and self._connected.is_set() and self.bd_seq is not None:
            try:
                info = client.publish(self.topics.node("NDEATH"), self._ndeath(self.bd_seq), qos=1)
                info.wait_for_publish(max(0.2, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                log.warning("Sparkplug: NDEATH not sent: %s", exc)
            client.disconnect()
        self._link_down.set()
        self._supervisor.join(5)

    # ------------------------------------------------------------------ payloads
    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    @staticmethod
    def _ndeath(bd_seq: int) -> bytes:
        return spb.NDeath(timestamp=_now_ms(), bd_seq_metric=spb.Metric(timestamp=None, name="bdSeq", datatype=DT.UINT64,
                                                                         value=bd_seq)).encode()

    def _device_values(self, decision: Any = None) -> dict[str, Any]:
        counters = self.counters() or {}
        recipe_sha, engine_sha = self.hashes()
        values: dict[str, Any] = {
            "Counters/Decisions": int(counters.get("decisions", 0)),
            "Counters/OK": int(counters.get("ok", 0)),
            "Counters/NG": int(counters.get("ng", 0)),
            "Counters/Fail Safe": int(counters.get("fail_safe", 0)),
            "Counters/Dropped": int(counters.get("dropped", 0)),
            "Counters/Late": int(counters.get("late", 0)),
            "Recipe/SHA256": recipe_sha,
            "Engine/SHA256": engine_sha,
        }
        if decision is not None:
            values.update({
                "Decision/Trigger ID": int(decision.trigger_id),
                "Decision/Verdict": decision.verdict,
                "Decision/NG": decision.verdict == "NG",
                "Decision/Score": None if decision.score is None else float(decision.score),
                "Decision/Latency ms": float(decision.latency_ms),
                "Decision/Regions": int(decision.region_count),
                "Decision/Fail Safe": bool(decision.fail_safe),
                "Decision/Reason": decision.reason or "",
            })
        return values

    def _metrics(self, values: dict[str, Any], timestamp: int, all_metrics: bool) -> list[Any]:
        out = []
        for name, datatype in DEVICE_METRICS:
            if name not in values and not all_metrics:
                continue
            value = values.get(name)
            out.append(spb.Metric(timestamp=timestamp, name=name, datatype=datatype, value=value, is_null=value is None))
        return out

    def _births(self, client: mqtt.Client) -> None:
        """NBIRTH (seq 0, this connection's bdSeq) then DBIRTH; also the answer to a rebirth request."""
        now = _now_ms()
        recipe_sha, _ = self.hashes()
        with self._lock:
            self._seq = 0
            node_metrics = [
                spb.Metric(timestamp=now, name="bdSeq", datatype=DT.UINT64, value=self.bd_seq),
                spb.Metric(timestamp=now, name=REBIRTH, datatype=DT.BOOLEAN, value=False),
                spb.Metric(timestamp=now, name="Node Info/Software", datatype=DT.STRING, value=f"iad-edge {__version__}"),
                spb.Metric(timestamp=now, name="Node Info/Recipe SHA256", datatype=DT.STRING, value=recipe_sha),
            ]
            nbirth = spb.NBirth(timestamp=now, seq=self._next_seq(), metrics=node_metrics).encode()
            dbirth = spb.DBirth(timestamp=now, seq=self._next_seq(),
                                metrics=self._metrics(self._device_values(), now, all_metrics=True)).encode()
            client.publish(self.topics.node("NBIRTH"), nbirth, qos=0)
            client.publish(self.topics.device("DBIRTH"), dbirth, qos=0)
            self.births += 1

    def _ddata(self, decision: Any) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            return  # SCADA learns the state from the next birth; DDATA is not buffered (like the decision)
        now = _now_ms()
        values = self._device_values(decision)
        with self._lock:
            payload = spb.DData(timestamp=now, seq=self._next_seq(),
                                metrics=self._metrics(values, int(decision.decided_at * 1000), all_metrics=False)).encode()
            info = client.publish(self.topics.device("DDATA"), payload, qos=0)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.published += 1

    # ------------------------------------------------------------------ threads
    def _work(self) -> None:
        while True:
            decision = self._queue.get()
            if decision is None:
                return
            try:
                self._ddata(decision)
            except Exception:  # SCADA reporting must never take anything down
                log.exception("Sparkplug DDATA failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: Any) -> None:
        if msg.topic != self.topics.node("NCMD"):
            return
        try:
            cmd = spb.NCmd.decode(msg.payload)
        except Exception as exc:  # garbage on NCMD is ignored, not fatal
            log.warning("Sparkplug: undecodable NCMD ignored: %s", exc)
            return
        if any(m.name == REBIRTH and m.value is True for m in cmd.metrics):
            log.info("Sparkplug: rebirth requested")
            self._births(client)

    def _make_client(self, bd_seq: int) -> mqtt.Client:
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True, reconnect_on_failure=False)
        client.will_set(self.topics.node("NDEATH"), self._ndeath(bd_seq), qos=1, retain=False)
        apply_auth(client, self.mqtt_cfg)

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                self.last_error = f"broker refused the Sparkplug connection: {reason_code}"
                return
            c.subscribe(self.topics.node("NCMD"), qos=1)
            self._births(c)
            self._connected.set()
            log.info("Sparkplug: edge node %s/%s online (bdSeq %d)", self.topics.group_id, self.topics.edge_node_id, bd_seq)

        def on_disconnect(c, userdata, flags, reason_code, properties):
            self._connected.clear()
            self._link_down.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = self._on_message
        return client

    def _supervise(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            bd_seq = self.bdseq_store.next()
            try:
                client = self._make_client(bd_seq)
                self._link_down.clear()
                client.connect(self.host, self.port, keepalive=self.cfg.keepalive_s)
            except (OSError, ValueError) as exc:
                message = f"Sparkplug: cannot connect to {self.host}:{self.port}: {exc}"
                if message != self.last_error:
                    log.warning("%s (retrying)", message)
                self.last_error = message
                self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                continue
            self.bd_seq = bd_seq
            self._client = client
            births_before = self.births
            client.loop_start()
            self._link_down.wait()
            if self._stop.is_set():
                client.loop_stop()
                break
            was_connected = self.births > births_before
            self._connected.clear()
            try:
                client.disconnect()
            except (OSError, ValueError):
                pass
            client.loop_stop()
            attempt = 0 if was_connected else attempt + 1
            self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        self._connected.clear()
