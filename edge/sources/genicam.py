"""GenICam cameras through a GenTL producer (``.cti``), read with harvesters.

What the camera integrator gets:

* **Settings from the recipe, in order, read back.** Each ``source.settings``
  entry is written to the remote device's node map and read back; a node that
  does not exist, is read-only / not available, rejects the value, or reads back
  something else stops the start with a :class:`GenicamSettingError` that names
  the node and the value (and suggests close node names for typos).
* **Every fetch has a timeout** (``fetch_timeout_s``). A timeout alone is not an
  error (a triggered camera waits for parts); it is counted.
* **Incomplete buffers and lost frames become frames too**: the source yields a
  :class:`~edge.types.Frame` with an empty image and ``meta['error']`` for an
  incomplete buffer and for every frame id skipped by the camera, so the lane
  publishes a fail-safe decision for that trigger instead of dropping it silently.
* **Recovery without reloading the expert.** harvesters can hang for a long time
  when a device disappears, so acquisition runs in a worker thread that the
  source can abandon: when the worker reports an error, or stops reporting a
  heartbeat for ``2 x fetch_timeout_s + 2 s``, the source forgets it (a hung
  thread is left to die on its own; it is a daemon and checks an abandon flag
  whenever the C call returns) and opens the camera again with back-off
  (``reconnect_backoff_s``). The lane and the expert never notice except for the
  ``reconnects`` counter and a gap in frame ids.

Frame ids (``trigger_id``) are the producer's buffer frame ids; the simulator
and many cameras restart them at 1 after a reconnect. ``trigger_time`` is the
host time at which the buffer was delivered (device timestamps are in the
camera's clock, and the simulator reports 0).
"""

from __future__ import annotations

import difflib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge.errors import BadFrameError, IadError
from edge.sources.pixel_formats import bit_depth, to_image
from edge.types import Frame

log = logging.getLogger(__name__)

# GenApi access modes (genicam.genapi.EAccessMode): NI, NA, WO, RO, RW
_ACCESS = {0: "not implemented", 1: "not available", 2: "write-only", 3: "read-only", 4: "read-write"}
MAX_GAP_FRAMES = 1000  # a bigger jump in frame ids is treated as a counter reset, not as lost frames


class CameraError(IadError):
    """The GenTL producer or the camera cannot be opened or read."""


class GenicamSettingError(CameraError):
    """A recipe node setting the camera refused; the message names the node and the value."""


def _clean(exc: BaseException) -> str:
    """GenApi messages end with a C++ file/line reference that helps nobody on the line."""
    return str(exc).split(" (file ")[0].strip()


def _node_names(node_map: Any) -> list[str]:
    return [n for n in dir(node_map) if not n.startswith("_") and n[:1].isupper()]


def apply_settings(node_map: Any, settings: list[Any]) -> list[dict[str, Any]]:
    """Write each ``{node, value}`` in order, read it back, and return what the camera holds.

    Raises :class:`GenicamSettingError` at the first node that is missing,
    not writable, rejects the value, or reads back something different.
    """
    applied = []
    for setting in settings:
        name, value = setting.node, setting.value
        what = f"camera setting {name} = {value!r}"
        try:
            node = node_map.get_node(name)
        except Exception:  # GenApi raises LogicalErrorException for unknown nodes
            close = difflib.get_close_matches(name, _node_names(node_map), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise GenicamSettingError(f"{what}: the camera has no node {name!r}{hint}") from None
        mode = node.get_access_mode() if hasattr(node, "get_access_mode") else 4
        kind = type(node).__name__
        if kind == "ICommand":
            if value is not True:
                raise GenicamSettingError(f"{what}: {name} is a command; give value: true to execute it")
            if mode not in (2, 4):
                raise GenicamSettingError(f"{what}: command {name} is {_ACCESS.get(mode, mode)}")
            node.execute()
            applied.append({"node": name, "value": True, "read_back": True})
            continue
        if mode not in (2, 4):
            raise GenicamSettingError(f"{what}: node {name} is {_ACCESS.get(mode, mode)}, it cannot be written")
        try:
            node.value = _coerce(kind, value)
        except Exception as exc:  # GenApi OutOfRange/InvalidArgument/Access exceptions
            allowed = ""
            if kind == "IEnumeration" and hasattr(node, "symbolics"):
                allowed = f" (allowed: {', '.join(node.symbolics)})"
            elif kind in ("IInteger", "IFloat") and hasattr(node, "min"):
                allowed = f" (range {node.min} .. {node.max})"
            raise GenicamSettingError(f"{what}: the camera rejected the value: {_clean(exc)}{allowed}") from None
        read_back = node.value if mode == 4 else value
        if not _same(kind, value, read_back):
            raise GenicamSettingError(f"{what}: the camera accepted it but reads back {read_back!r}")
        applied.append({"node": name, "value": value, "read_back": read_back})
    return applied


def _coerce(kind: str, value: Any) -> Any:
    if kind == "IInteger":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if kind == "IFloat":
        return float(value)
    if kind == "IBoolean":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "on", "yes")
        return bool(value)
    return str(value) if kind in ("IEnumeration", "IString") else value


def _same(kind: str, wanted: Any, got: Any) -> bool:
    if kind == "IFloat":
        wanted, got = float(wanted), float(got)
        return abs(wanted - got) <= max(1e-6, 0.01 * abs(wanted))  # cameras snap floats to their increment
    if kind == "IInteger":
        return int(wanted) == int(got)
    if kind == "IBoolean":
        return bool(_coerce(kind, wanted)) == bool(got)
    return str(wanted) == str(got)


def _device_query(cfg: Any) -> Any:
    if cfg.serial_number:
        return {"serial_number": str(cfg.serial_number)}
    if cfg.user_defined_name:
        return {"user_defined_name": cfg.user_defined_name}
    return int(cfg.index)


def open_camera(cfg: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Load the producer, open the selected device, apply the settings; returns (harvester, acquirer, applied)."""
    try:
        from harvesters.core import Harvester
    except ImportError:
        raise CameraError("the genicam source needs harvesters: pip install -e '.[camera]'") from None
    producer = str(cfg.producer)
    harvester = Harvester()
    try:
        harvester.add_file(producer, check_existence=True, check_validity=True)
        harvester.update()
    except (FileNotFoundError, OSError) as exc:
        harvester.reset()
        raise CameraError(f"GenTL producer {producer}: {exc}") from None
    devices = harvester.device_info_list
    if not devices:
        harvester.reset()
        raise CameraError(f"GenTL producer {producer} found no camera")
    query = _device_query(cfg)
    try:
        acquirer = harvester.create(query)
    except Exception as exc:  # harvesters raises ValueError/IndexError/GenTL errors
        names = ", ".join(f"#{i} serial {getattr(d, 'serial_number', '?')} ({getattr(d, 'id_', '?')})" for i, d in enumerate(devices))
        harvester.reset()
        raise CameraError(f"no camera matches {query!r} on {producer} ({_clean(exc)}); cameras found: {names}") from None
    try:
        applied = apply_settings(acquirer.remote_device.node_map, list(cfg.settings))
    except BaseException:
        acquirer.destroy()
        harvester.reset()
        raise
    return harvester, acquirer, applied


class _Acquirer(threading.Thread):
    """Owns one opened camera; pushes frames (or error frames) into ``out`` until abandoned."""

    def __init__(self, cfg: Any, out: queue.Queue[Any], stats: dict[str, Any], opened: tuple | None = None):
        super().__init__(name="genicam-acquirer", daemon=True)
        self.cfg = cfg
        self.out = out
        self.stats = stats
        self.opened = opened
        self.abandoned = threading.Event()
        self.heartbeat = time.monotonic()
        self.failure: str | None = None
        self.last_frame_id: int | None = None
        self.acquirer: Any = None  # the open harvesters ImageAcquirer (diagnostics, tests)

    def _emit(self, item: Any) -> bool:
        while not self.abandoned.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                self.heartbeat = time.monotonic()
        return False

    def run(self) -> None:
        harvester = acquirer = None
        try:
            harvester, acquirer, applied = self.opened or open_camera(self.cfg)
            self.opened = None
            self.acquirer = acquirer
            self.stats["applied_settings"] = applied
            acquirer.start()
            while not self.abandoned.is_set():
                self.heartbeat = time.monotonic()
                frames = self._fetch_one(acquirer)
                for frame in frames:
                    if not self._emit(frame):
                        return
        except Exception as exc:  # any failure means: reopen the camera
            self.failure = f"{type(exc).__name__}: {_clean(exc)}"
        finally:
            # Also after being abandoned: when a hung call finally returns, release the device
            # so that the replacement worker's next open attempt can get it.
            for action in (lambda: acquirer and acquirer.stop(), lambda: acquirer and acquirer.destroy(),
                           lambda: harvester and harvester.reset()):
                try:
                    action()
                except Exception:  # the device may already be gone
                    pass
            self.heartbeat = time.monotonic()

    def _fetch_one(self, acquirer: Any) -> list[Frame]:
        from genicam.gentl import TimeoutException

        try:
            buffer_ctx = acquirer.fetch(timeout=self.cfg.fetch_timeout_s)
        except TimeoutException:
            self.stats["timeouts"] += 1
            return []
        now, now_mono = time.time(), time.monotonic()  # wall clock: published; monotonic: the deadline
        frames: list[Frame] = []
        with buffer_ctx as buffer:
            frame_id = int(getattr(buffer, "frame_id", 0) or 0)
            incomplete = bool(getattr(buffer, "is_incomplete", False))
            component = buffer.payload.components[0] if buffer.payload and buffer.payload.components else None
            if component is None:
                incomplete = True
            else:
                width, height, fmt = int(component.width), int(component.height), str(component.data_format)
                data = np.array(component.data, copy=True)  # the buffer is re-queued when the with-block ends
        if not frame_id:
            frame_id = (self.last_frame_id or 0) + 1
        if self.last_frame_id is not None and self.last_frame_id < frame_id - 1 <= self.last_frame_id + MAX_GAP_FRAMES:
            for lost in range(self.last_frame_id + 1, frame_id):
                self.stats["lost_frames"] += 1
                frames.append(self._error_frame(lost, now, f"frame {lost} lost in acquisition (gap in camera frame ids)"))
        self.last_frame_id = frame_id
        if incomplete:
            self.stats["incomplete_buffers"] += 1
            frames.append(self._error_frame(frame_id, now, f"incomplete buffer from the camera (frame {frame_id})"))
            return frames
        try:
            image = to_image(data, width, height, fmt)
            meta: dict[str, Any] = {"pixel_format": fmt, "bit_depth": bit_depth(fmt)}
        except BadFrameError as exc:
            image, meta = np.zeros((0, 0), np.uint8), {"error": str(exc), "pixel_format": fmt}
        meta["acquire_ms"] = (time.monotonic() - now_mono) * 1000.0
        self.stats["frames"] += 1
        frames.append(Frame(image=image, trigger_id=frame_id, trigger_time=now, source="genicam", name=f"frame{frame_id}", meta=meta,
                            trigger_mono=now_mono))
        return frames

    @staticmethod
    def _error_frame(frame_id: int, when: float, reason: str) -> Frame:
        return Frame(image=np.zeros((0, 0), np.uint8), trigger_id=frame_id, trigger_time=when, source="genicam",
                     name=f"frame{frame_id}", meta={"error": reason})


class GenicamSource:
    """Frames from a GenICam camera, with watchdog and reconnection (see the module docstring).

    Opening the camera and applying the settings happens in the constructor,
    so a bad recipe fails at start with a named error. ``stats`` holds the
    counters the lane publishes on ``status`` (frames, timeouts,
    incomplete_buffers, lost_frames, reconnects, last_error, applied_settings).
    """

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.stats: dict[str, Any] = {"frames": 0, "timeouts": 0, "incomplete_buffers": 0, "lost_frames": 0,
                                      "reconnects": 0, "last_error": None, "applied_settings": []}
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=8)
        self._closed = threading.Event()
        opened = open_camera(cfg)
        self.stats["applied_settings"] = opened[2]
        self._worker = _Acquirer(cfg, self._queue, self.stats, opened)
        self._worker.start()

    @property
    def hang_after_s(self) -> float:
        return 2.0 * float(self.cfg.fetch_timeout_s) + 2.0

    def _recover(self, reason: str) -> None:
        """Abandon the current worker and open the camera again, backing off between attempts."""
        self.stats["last_error"] = reason
        log.warning("camera: %s; reconnecting", reason)
        self._worker.abandoned.set()
        backoff = list(self.cfg.reconnect_backoff_s) or [1.0]
        attempt = 0
        while not self._closed.is_set():
            self._closed.wait(backoff[min(attempt, len(backoff) - 1)])
            if self._closed.is_set():
                return
            try:
                opened = open_camera(self.cfg)
            except Exception as exc:  # keep trying: the camera may come back
                self.stats["last_error"] = f"reconnect failed: {exc}"
                attempt += 1
                continue
            self.stats["reconnects"] += 1
            self._worker = _Acquirer(self.cfg, self._queue, self.stats, opened)
            self._worker.start()
            return

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed.is_set():
            try:
                yield self._queue.get(timeout=0.2)
                continue
            except queue.Empty:
                pass
            worker = self._worker
            if not worker.is_alive() and not self._closed.is_set():
                self._recover(worker.failure or "acquisition stopped")
            elif time.monotonic() - worker.heartbeat > self.hang_after_s:
                self._recover(f"camera did not answer for {self.hang_after_s:.1f} s (hung fetch)")

    def close(self) -> None:
        """Stop acquisition and release the camera (a hung worker is abandoned, not waited for)."""
        self._closed.set()
        worker = self._worker
        worker.abandoned.set()
        worker.join(self.hang_after_s)
        if worker.is_alive():
            log.warning("camera worker still blocked in the GenTL producer; abandoning it")
            return
        if worker.opened:  # never started: release what the constructor opened
            harvester, acquirer, _ = worker.opened
            acquirer.destroy()
            harvester.reset()
