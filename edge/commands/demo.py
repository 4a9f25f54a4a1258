"""`iad-edge demo`: the embedded default, from a fresh clone to live decisions in one command.

1. builds the tiny random DINOv2 expert into ``engines/tiny/`` if it is missing
   (the export step, which needs the ``[export]`` extra: torch),
2. calibrates a memory bank on synthetic good parts if it is missing,
3. starts mosquitto on a free loopback port (unless ``--mqtt-host/--mqtt-port``
   name a broker; without a mosquitto binary it says so and prints decisions
   locally),
4. runs the real-time lane (the same code as ``iad-edge run``) on the synthetic
   source of ``calibration/demo.yaml`` for ``--frames`` parts, printing every
   decision as it is made, with a subscriber playing the PLC, and writing an
   overlay per part to ``--out``,
5. with ``assistant.enabled`` (on in ``calibration/demo.yaml``): builds the tiny
   random Qwen2 GGUF into ``engines/tiny-qwen/`` if missing, runs the assistant
   lane as a supervised child process, and prints the grounded explanation of
   every NG part as it arrives on MQTT (waiting up to ``--explain-wait`` seconds
   after the last part),
6. prints a summary (verdicts, latency, injected defects caught).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt

from edge.assistant.projector import EVIDENCE_VERSION
from edge.bank import build_bank
from edge.commands.options import add_mqtt_options
from edge.config import load_recipe
from edge.devtools.broker import BrokerError, MosquittoBroker, find_mosquitto
from edge.errors import IadError
from edge.expert import load_expert
from edge.files import MANIFEST_NAME
from edge.lane.console import DecisionPrinter, stop_on_signals
from edge.mqtt.topics import Topics
from edge.outputs import DIR_MODE, check_outputs, dir_output
from edge.overlay import render_overlay
from edge.sources.synthetic import SyntheticPartRenderer
from edge.station import Station, StationOptions

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO_ROOT / "calibration" / "demo.yaml"
BANK_GOOD_FRAMES = 16
BANK_SEED_OFFSET = 1_000_000  # good frames for the bank never coincide with the demo's stream


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Self-contained demo: tiny expert, synthetic parts, local broker, live decisions and overlays.",
        description="Build what is missing (tiny expert, bank), start a local mosquitto, and run the real-time lane "
        "on synthetic parts, printing each decision and writing overlays.",
    )
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help=f"Recipe (default {DEFAULT_RECIPE.relative_to(REPO_ROOT)}).")
    parser.add_argument("--frames", type=int, default=40, metavar="N", help="Parts to inspect (default 40).")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), metavar="DIR", help="Overlay folder (default out/demo/).")
    add_mqtt_options(parser, "Use this broker instead of starting mosquitto", "Port of that broker")
    parser.add_argument("--no-mqtt", action="store_true", help="No broker at all: print decisions locally.")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the tiny expert and the bank even if present.")
    parser.add_argument("--no-assistant", action="store_true", help="Do not start the assistant lane.")
    parser.add_argument("--explain-wait", type=float, default=30.0, metavar="S",
                        help="After the last part, wait up to S seconds for the explanations of NG parts (default 30).")
    parser.set_defaults(func=run)


def _iad_export(args: list[str], prefix: str = "       ") -> tuple[int, str]:
    """Run ``iad-export ARGS`` in a child process (the runtime never imports torch), echoing its output.

    Returns (exit status, last lines of output). The console script beside this
    interpreter is preferred, then the one on PATH, then ``python -m export.cli``.
    """
    beside = Path(sys.executable).parent / "iad-export"
    found = shutil.which("iad-export")
    command = [str(beside)] if beside.exists() else [found] if found else [sys.executable, "-m", "export.cli"]
    proc = subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"{prefix}{line.rstrip()}", flush=True)
        tail = (tail + [line.rstrip()])[-5:]
    return proc.wait(), "\n".join(tail)


def ensure_expert(recipe: Any, rebuild: bool = False) -> Path:
    """Export the tiny expert where the recipe expects it, unless it is already there."""
    model = Path(recipe.expert.model)
    if model.exists() and (model.parent / MANIFEST_NAME).exists() and not rebuild:
        return model
    fix = ("pip install -e '.[export]' (this pins torch==2.13.0), or build it elsewhere with "
           f"`iad-export dinov2 --tiny --resolution {recipe.tiling.resolution} --out {model.parent}`")
    if importlib.util.find_spec("torch") is None:
        raise IadError(f"the demo builds its tiny expert with the export step, which needs torch (torch is missing): {fix}")
    print(f"[demo] building the tiny random DINOv2 expert into {model.parent}/ (once) ...", flush=True)
    status, tail = _iad_export(["dinov2", "--tiny", "--resolution", str(recipe.tiling.resolution), "--out", str(model.parent)])
    if status != 0:
        raise IadError(f"building the tiny expert failed (iad-export exit {status}: {tail.splitlines()[-1] if tail else ''}); {fix}")
    return model


def ensure_bank(recipe: Any, rebuild: bool = False) -> Path:
    """Calibrate the bank on synthetic good parts (same renderer, other frame indices) unless present."""
    path = Path(recipe.bank.path)
    if path.exists() and not rebuild:
        return path
    src = recipe.source
    renderer = SyntheticPartRenderer(src.width, src.height, src.channels, src.seed, 0.0, src.defect_types)
    print(f"[demo] calibrating the memory bank on {BANK_GOOD_FRAMES} synthetic good parts -> {path}", flush=True)
    expert = load_expert(recipe.expert)
    try:
        images = (renderer.render(BANK_SEED_OFFSET + i, defect=None).image for i in range(BANK_GOOD_FRAMES))
        bank = build_bank(expert, images, recipe, progress=True, total=BANK_GOOD_FRAMES)
    finally:
        expert.close()
    bank.save(path)
    return path


def _projector_current(path: Path) -> bool:
    """A projector this runtime loads (same evidence layout): one from an older demo build is rebuilt, not refused later."""
    try:
        return bool(json.loads(path.read_text())["evidence"]["version"] == EVIDENCE_VERSION)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_gguf(recipe: Any) -> bool:
    """Build the tiny Qwen2 GGUF where the recipe's assistant expects it; False when it cannot be built here."""
    model = Path(recipe.assistant.model) if recipe.assistant.model else None
    if model is None:
        return False
    projector = Path(recipe.assistant.projector) if recipe.assistant.projector else None
    if model.exists() and (model.parent / MANIFEST_NAME).exists() and (projector is None or _projector_current(projector)):
        return True
    missing = [name for name in ("llama_cpp", "torch") if importlib.util.find_spec(name) is None]
    if missing:  # quantize + verify need llama_cpp, the export needs torch
        print(f"[demo] assistant lane skipped: {missing[0]} is not installed (pip install -e '.[export,assistant]')", flush=True)
        return False
    if recipe.assistant.projector is not None:
        status, tail = _build_region_model(recipe, model)
    else:
        print(f"[demo] building the tiny random Qwen2 GGUF into {model.parent}/ (once) ...", flush=True)
        status, tail = _iad_export(["qwen", "--tiny", "--quant", "Q8_0", "--out", str(model.parent)])
    if status != 0:
        why = f"iad-export exit {status}" + (" (killed by a signal)" if status < 0 else "")
        print(f"[demo] assistant lane skipped: the tiny GGUF could not be built ({why}; last output: "
              f"{tail.splitlines()[-1].strip() if tail else 'none'})",
              flush=True)
        return False
    if not model.exists():
        print(f"[demo] assistant lane skipped: the export wrote no {model.name}", flush=True)
        return False
    return True


def _build_region_model(recipe: Any, model: Path) -> tuple[int, str]:
    """The tiny Qwen3.5 + region projector, trained jointly on synthetic parts of the demo's own look (once, minutes)."""
    out = model.parent
    base = out / "base"
    print(f"[demo] training the tiny Qwen3.5 + region projector on synthetic parts into {out}/ (once, a few minutes) ...",
          flush=True)
    status, tail = _iad_export(["qwen", "--tiny-arch", "qwen3.5", "--quant", "F16", "--out", str(base),
                                "--keep-hf", str(base / "tiny-qwen3.5")])
    if status != 0:
        return status, tail
    src = recipe.source
    return _iad_export(["projector", "--llm", str(base / "tiny-qwen3.5"), "--expert", str(Path(recipe.expert.model).parent),
                        "--recipe", str(recipe.source_path), "--data", f"synthetic:300:{src.seed}:{src.width}x{src.height}",
                        "--train-llm", "--epochs", "24", "--lr", "5e-3", "--pre-tokenizer", "qwen2", "--out", str(out)])


class _Subscriber:
    """One MQTT v5 subscription on a background thread, handing each JSON body to ``on_body`` (the demo's PLC/reader)."""

    def __init__(self, host: str, port: int, topic: str, client_id: str, on_body: Callable[[Any], None]):
        ready = threading.Event()
        self._on_body = on_body
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *a: ready.set()
        self._client.on_message = lambda c, u, msg: self._message(msg.payload)
        self._client.connect(host, port, keepalive=10)
        self._client.loop_start()
        ready.wait(5)

    def _message(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        self._on_body(body)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class _Explanations:
    """Subscriber on ``explanation``: prints each grounded explanation as it arrives."""

    def __init__(self, host: str, port: int, topic: str):
        self.answered: set[int] = set()  # any answer: an explanation, or a note that it was skipped/failed
        self.explained: set[int] = set()  # only real explanations (status done)
        self.notes: dict[int, str] = {}  # trigger -> status of an answer that is not an explanation
        self._lock = threading.Lock()
        self._sub = _Subscriber(host, port, topic, "iad-demo-qe", self._on_body)

    def _on_body(self, body: Any) -> None:
        try:
            trigger = int(body["trigger_id"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self.answered.add(trigger)
            if body.get("status") == "done":
                self.explained.add(trigger)
            else:
                self.notes[trigger] = str(body.get("status"))
        if body.get("status") != "done":
            print(f"[assistant] #{trigger}: {body.get('status')} ({body.get('reason', '')})", flush=True)
            return
        for exp in body.get("explanations", []):
            words = " ".join(str(exp.get("description", "")).split())[:70]
            claims = (f" model says {exp.get('model_defect_type')} at {exp.get('model_location')} "
                      f"({'consistent' if exp.get('consistent') else 'CONTRADICTS the mask'})" if "consistent" in exp else "")
            print(f"[assistant] #{trigger} region {exp.get('region')}: {exp.get('defect_type')} at {exp.get('location')} "
                  f"bbox {exp.get('bbox')} severity {exp.get('severity')} ({exp.get('source')}){claims} \"{words}\"", flush=True)

    def wait_for(self, triggers: set[int], timeout: float) -> set[int]:
        """Wait until every trigger in ``triggers`` is answered (or the timeout); return those still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                missing = triggers - self.answered
            if not missing:
                return missing
            time.sleep(0.2)
        with self._lock:
            return triggers - self.answered

    def summary(self, triggers: set[int], missing: set[int]) -> str:
        """What really arrived: explanations, skipped/failed notes, and what never came."""
        with self._lock:
            explained = triggers & self.explained
            notes = {t: s for t, s in self.notes.items() if t in triggers and t not in self.explained}
        line = f"explanations received for {len(explained)}/{len(triggers)} NG parts"
        if notes:
            line += "; not explained: " + ", ".join(f"#{t} {s}" for t, s in sorted(notes.items()))
        if missing:
            line += f"; no answer yet for {sorted(missing)} (the assistant takes them on its next start)"
        return line

    def close(self) -> None:
        self._sub.close()


def _wait_assistant_ready(host: str, port: int, topic: str, since: float, timeout: float) -> bool:
    """Wait for the assistant's retained status 'online' published after ``since`` (its model is loaded)."""
    ready = threading.Event()

    def on_body(body: Any) -> None:
        if isinstance(body, dict) and body.get("state") == "online" and float(body.get("time", 0)) >= since:
            ready.set()

    sub = _Subscriber(host, port, topic, "iad-demo-ready", on_body)
    try:
        return ready.wait(timeout)
    finally:
        sub.close()


class _Plc:
    """A subscriber standing in for the PLC: counts decisions received and their trigger->arrival latency."""

    def __init__(self, host: str, port: int, topic: str):
        self.received: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._sub = _Subscriber(host, port, topic, "iad-demo-plc", self._on_body)

    def _on_body(self, body: Any) -> None:
        try:
            entry = (int(body["trigger_id"]), (time.time() - float(body["trigger_time"])) * 1000.0)
        except (KeyError, TypeError, ValueError):
            entry = (-1, 0.0)
        with self._lock:
            self.received.append(entry)

    def close(self) -> None:
        self._sub.close()


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise IadError(f"--frames must be at least 1 (got {args.frames})")
    check_outputs([dir_output(args.out, "--out", overwrite=True)])  # before anything is built
    started_at = time.time()
    recipe = load_recipe(args.recipe)
    ensure_expert(recipe, args.rebuild)
    ensure_bank(recipe, args.rebuild)
    with_assistant = recipe.assistant.enabled and not args.no_assistant and ensure_gguf(recipe)

    broker: MosquittoBroker | None = None
    host, port, use_mqtt = args.mqtt_host, args.mqtt_port, not args.no_mqtt
    if use_mqtt and host is None and port is None:
        if find_mosquitto() is None:
            print("[demo] no mosquitto binary found (apt-get install mosquitto): decisions are printed locally only",
                  flush=True)
            use_mqtt = False
        else:
            try:
                broker = MosquittoBroker().start()
            except BrokerError as exc:
                print(f"[demo] could not start mosquitto ({exc}): decisions are printed locally only", flush=True)
                use_mqtt = False
            else:
                host, port = broker.host, broker.port
                print(f"[demo] mosquitto started on {host}:{port}", flush=True)
    host = host or recipe.mqtt.host
    port = port or recipe.mqtt.port

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(DIR_MODE)
    plc: _Plc | None = None
    explanations: _Explanations | None = None
    ng_triggers: set[int] = set()
    printer = DecisionPrinter()
    station = Station(recipe, StationOptions(
        mqtt_host=host, mqtt_port=port, mqtt_enabled=use_mqtt, recipe_path=args.recipe,
        assistant_hooks=with_assistant, supervise_assistant=with_assistant, assistant_log=out_dir / "assistant.log",
        observers=(printer, _overlay_writer(out_dir, recipe.thresholds.pixel, recipe.thresholds.image_score),
                   lambda frame, result, decision: ng_triggers.add(decision.trigger_id)
                   if decision.verdict == "NG" and result is not None and result.regions else None),
    ))
    try:
        station.build()
        if station.assistant is not None:
            print(f"[demo] assistant lane started as a child process (log: {out_dir}/assistant.log)", flush=True)
        link = station.link
        if link is not None:
            if not link.wait_connected(5):
                print(f"[demo] broker {host}:{port} not reachable ({link.last_error}); deciding anyway, "
                      "results wait in the outbox", flush=True)
            else:
                topics = Topics(recipe.topic_root)
                plc = _Plc(host, port, topics.decision)
                print(f"[demo] a subscriber plays the PLC on {topics.decision}", flush=True)
                if station.assistant is not None:
                    explanations = _Explanations(host, port, topics.explanation)
                    if recipe.assistant.projector is not None:
                        print("[demo] explanations come from a tiny Qwen3.5 trained on synthetic parts only: it reads each "
                              "region from injected region tokens; location and bbox stay the mask's, the model's own claims "
                              "are model_location/model_defect_type (consistent: whether they agree)", flush=True)
                    else:
                        print("[demo] explanations come from a tiny RANDOM language model: its words are noise, but "
                              "defect location and bbox are always the region's own", flush=True)
                    print("[demo] waiting for the assistant to load its model before the first part ...", flush=True)
                    if not _wait_assistant_ready(host, port, f"{topics.status}/assistant", started_at, args.explain_wait):
                        print(f"[demo] the assistant did not report ready within {args.explain_wait:.0f} s; "
                              "starting anyway (early NG parts may wait in its backlog)", flush=True)
        print(f"[demo] inspecting {args.frames} synthetic parts (window {recipe.decision.window_ms} ms, "
              f"fail-safe {recipe.decision.fail_safe}); overlays -> {out_dir}/", flush=True)
        with stop_on_signals() as stop:
            station.start(args.frames)
            while not station.wait(0.2):
                if stop.is_set():
                    break
            assert station.lane is not None
            station.lane.stop(drain_timeout_s=5)  # every decision out; the assistant keeps running for the explanations
            if explanations is not None and ng_triggers and not stop.is_set():
                print(f"[demo] waiting up to {args.explain_wait:.0f} s for the explanations of {len(ng_triggers)} NG part(s) ...",
                      flush=True)
                missing = explanations.wait_for(set(ng_triggers), args.explain_wait)
                print(f"[demo] {explanations.summary(set(ng_triggers), missing)}", flush=True)
        counters = station.lane.counters.snapshot()
        print("\n[demo] summary")
        print(printer.summary(counters))
        if plc is not None:
            time.sleep(0.3)
            lat = sorted(ms for _, ms in plc.received)
            median = lat[len(lat) // 2] if lat else float("nan")
            print(f"PLC subscriber received {len(plc.received)}/{counters['decisions']} decisions "
                  f"(trigger->received median {median:.1f} ms)")
        if recipe.archive.enabled:
            print(f"NG parts archived under {recipe.archive.path}/ ; overlays in {out_dir}/")
    finally:
        station.stop(drain_timeout_s=2)
        if plc is not None:
            plc.close()
        if explanations is not None:
            explanations.close()
        if broker is not None:
            broker.close()
    return 0


def _overlay_writer(out_dir: Path, pixel_threshold: float, image_threshold: float):
    """Lane observer that writes ``<trigger>_<verdict>.png`` overlays (post thread, off the hot path)."""
    def write(frame: Any, result: Any, decision: Any) -> None:
        if result is None or not getattr(frame.image, "size", 0):
            return
        image = render_overlay(frame.image, result.anomaly_map, result.regions, pixel_threshold,
                               verdict=decision.verdict, score=decision.score, image_threshold=image_threshold,
                               title=f"#{decision.trigger_id}")
        cv2.imwrite(str(out_dir / f"{decision.trigger_id:04d}_{decision.verdict}.png"), image)

    return write
