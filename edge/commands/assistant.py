"""`iad-edge assistant RECIPE`: the assistant lane as its own process (systemd unit or demo child).

Lowers its own priority first (nice, CPU affinity, SCHED_IDLE, idle IO), then
loads the GGUF model, and serves NG jobs from the spool folder and MQTT until
SIGTERM. A bad model file is an error at start (exit 1), not a silent
fallback, so a wrong path is seen at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from edge.assistant import thaw_guard
from edge.assistant.bus import AssistantBus
from edge.assistant.busy_signal import BusySignal, signal_name
from edge.assistant.priority import apply_priority
from edge.assistant.process import AssistantService
from edge.assistant.region_explain import open_explainer
from edge.commands.options import add_mqtt_options
from edge.config import load_recipe
from edge.outputs import check_outputs, runtime_outputs
from edge.preflight import preflight

log = logging.getLogger(__name__)


RECYCLE_EXIT_CODE = 75  # EX_TEMPFAIL: systemd's RestartForceExitStatus=75 and the demo's supervisor restart it


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "assistant",
        help="Run the assistant lane: grounded explanations of NG parts, defect generation requests (low priority).",
        description="Run the assistant lane of RECIPE as its own low-priority process: it takes NG results from the "
        "spool and MQTT, explains each region with the GGUF model (llama.cpp) as JSON grounded on the region's "
        "location and bbox, serves defect-generation requests, and yields to the real-time lane. Publishes on "
        "<topic root>/explanation, /generation and a retained /status/assistant.",
    )
    p.add_argument("recipe", type=Path, help="Recipe YAML (its `assistant` section configures this process).")
    p.add_argument("--model", type=Path, help="GGUF model (overrides assistant.model).")
    p.add_argument("--mmproj", type=Path, help="GGUF vision projector for a VLM (overrides assistant.mmproj).")
    add_mqtt_options(p)
    p.add_argument("--no-mqtt", action="store_true", help="Spool intake only; print answers instead of publishing.")
    p.add_argument("--max-jobs", type=int, help="Exit after this many jobs (tests, benchmarks).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    recipe = load_recipe(args.recipe)
    preflight(recipe)  # paths inside the allowed roots, model files match their manifests: before loading anything
    check_outputs(runtime_outputs(recipe, mqtt=False, archive=False, spool=True))  # the spool it takes jobs from
    cfg = recipe.assistant
    applied = apply_priority(cfg.nice, cfg.cpu_affinity, cfg.sched_idle, cfg.io_priority)
    busy = BusySignal(cfg.busy_signal or signal_name(recipe.line, recipe.station))
    explainer = None
    if args.model or cfg.model:  # region tokens with assistant.projector, else the text path (one choice, shared)
        explainer = open_explainer(recipe, model=args.model, mmproj=args.mmproj, should_pause=busy.busy)
    service = AssistantService(recipe, explainer=explainer, busy=busy)
    service.priority = applied
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bus = None
    if recipe.mqtt.enabled and not args.no_mqtt:

        password = recipe.mqtt.password_file.read_text().strip() if recipe.mqtt.password_file else None
        bus = AssistantBus(
            args.mqtt_host or recipe.mqtt.host, args.mqtt_port or recipe.mqtt.port,
            client_id=f"iad-assistant-{recipe.line}-{recipe.station}", status_topic=service.status_topic,
            subscribe=(service.topics.result, service.topics.cmd("generate")), on_message=service.on_message,
            keepalive=recipe.mqtt.keepalive_s, username=recipe.mqtt.username, password=password, tls=recipe.mqtt.tls,
        )
        service._publish = bus.publish
        bus.start()
    log.info("assistant ready (model %s, priority %s)", explainer.model_path if explainer else None, applied)
    recycle = cfg.recycle_after_jobs or None
    limit = min(x for x in (args.max_jobs, recycle) if x) if (args.max_jobs or recycle) else None
    guard = None
    if cfg.hard_yield:  # the lane may SIGSTOP us while a frame is in flight (edge/assistant/freezer.py);
        guard = thaw_guard.start(busy.name)  # a freeze never outlives its lease, even if the lane dies mid-frame
        busy.register_freezable(os.getpid())  # registered once SIGTERM is handled, so the finally below withdraws it
    try:
        done = service.run(stop, max_jobs=limit)
    finally:
        thaw_guard.stop(guard)
        if bus is not None:
            bus.stop()
        if explainer is not None:
            explainer.close()
        if busy.freezable_pid() == os.getpid():
            busy.register_freezable(0)
        busy.close()
    if recycle and done >= recycle and not args.max_jobs:
        log.info("assistant: %d jobs done, exiting for a fresh process (bounds llama.cpp's native memory)", done)
        return RECYCLE_EXIT_CODE
    return 0
