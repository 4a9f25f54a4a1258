"""`iad-edge run RECIPE [--max-frames N] [--mqtt-host H] [--mqtt-port P]`: the production real-time lane.

Runs until SIGTERM/SIGINT or N frames, then shuts down cleanly: frames already
acquired are decided, results are in the on-disk outbox (sent before exit when
the broker is there, otherwise by the next run), and ``status`` says ``stopped``.
Exit status 1 when the frame source failed (so systemd restarts the service),
0 otherwise (stopped, N frames done, or a finite source ran out).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from edge.commands.options import add_mqtt_options
from edge.config import load_recipe
from edge.lane.console import DecisionPrinter, stop_on_signals
from edge.outputs import check_outputs, runtime_outputs
from edge.preflight import preflight
from edge.realtime import lock_memory
from edge.station import Station, StationOptions

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="Run the real-time lane: acquire, inspect, publish one decision per trigger over MQTT.",
        description="Run the real-time lane of RECIPE until SIGTERM/SIGINT (or --max-frames), publishing decisions, "
        "results and status over MQTT (docs/mqtt.md).",
    )
    parser.add_argument("recipe", type=Path, help="Recipe YAML file.")
    parser.add_argument("--max-frames", type=int, metavar="N", help="Stop after N triggers (default: run until stopped).")
    add_mqtt_options(parser)
    parser.add_argument("--bank", type=Path, metavar="PATH", help="Memory bank (default: the recipe's bank.path).")
    parser.add_argument("--no-mqtt", action="store_true", help="Do not connect to a broker; print decisions only.")
    parser.add_argument("--connect-wait", type=float, default=5.0, metavar="S",
                        help="Wait up to S seconds for the broker before the first frame (default 5; the lane starts anyway).")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="S",
                        help="At shutdown, wait up to S seconds for the broker to acknowledge queued results (default 10).")
    parser.add_argument("--quiet", action="store_true", help="No line per decision (summary only).")
    parser.add_argument("--shadow", type=Path, metavar="CANDIDATE.yaml",
                        help="Also judge every frame with a candidate recipe, without publishing its decisions; "
                             "report how many verdicts would change (status extras.shadow, log, summary at exit).")
    parser.add_argument("--no-watch", action="store_true",
                        help="Do not reload the recipe when its file changes (live reload is on by default).")
    parser.add_argument("--watch-interval", type=float, default=0.5, metavar="S",
                        help="Seconds between checks of the recipe file for live reload (default 0.5).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 0:
        print("iad-edge run: error: --max-frames must be 0 or more", file=sys.stderr)
        return 2
    with stop_on_signals() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    recipe = load_recipe(args.recipe)
    preflight(recipe)  # paths inside the allowed roots, artifacts match their manifests
    check_outputs(runtime_outputs(recipe, mqtt=not args.no_mqtt))  # outbox, archive: writable before the line starts
    printer = DecisionPrinter(quiet=args.quiet)
    station = Station(recipe, StationOptions(
        mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, mqtt_enabled=False if args.no_mqtt else None,
        bank_path=args.bank, recipe_path=args.recipe, watch=not args.no_watch, watch_interval_s=args.watch_interval,
        shadow=args.shadow, commands=True, notify=True, observers=(printer,), drain_timeout_s=args.drain_timeout,
    ))
    station.build()  # everything but the frame flow; a bad --shadow candidate or TLS file raises here
    if os.environ.get("IAD_LOCK_MEMORY") == "1":  # the real-time drop-in asks for it (LimitMEMLOCK=infinity)
        refused = lock_memory()  # after the build: the engine and bank are resident and stay so
        if refused:
            log.warning("IAD_LOCK_MEMORY=1 but mlockall failed (%s): raise LimitMEMLOCK; running unlocked", refused)
        else:
            log.info("memory locked (mlockall): no page-out can stall a frame")
    if recipe.source.type == "folder" and getattr(recipe.source, "rate_hz", None) is None:
        print("note: source.type folder replays files, it is not a camera: without source.rate_hz each file is read "
              "when the lane is free and its decision window starts then; `late` counts decisions that missed the "
              "window anyway. Set source.rate_hz to pace the files like the line's trigger.", file=sys.stderr)
    try:
        link = station.link
        if link is not None:
            where = f"{link.host}:{link.port}"
            if link.wait_connected(args.connect_wait):
                print(f"MQTT: connected to {where}, topics under {recipe.topic_root}/", file=sys.stderr)
            else:
                print(f"MQTT: broker {where} not reachable yet ({link.last_error}); deciding anyway, "
                      "results wait in the outbox", file=sys.stderr)
        station.start(args.max_frames)
        while not station.wait(0.2):
            if stop.is_set():
                break
    finally:
        station.stop()
    for line in station.shadow_summary:
        print(line, file=sys.stderr)
    lane = station.lane
    assert lane is not None
    print(printer.summary(lane.counters.snapshot()), file=sys.stderr)
    if lane.pending_results:
        print(f"{lane.pending_results} result(s) not yet acknowledged stay in {recipe.mqtt.outbox}; "
              "the next run sends them", file=sys.stderr)
    if lane.source_error:
        # Non-zero so that systemd (Restart=on-failure) starts the lane again.
        print(f"iad-edge run: error: acquisition stopped: {lane.source_error}", file=sys.stderr)
        return 1
    return 0
