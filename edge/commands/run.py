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
import sys
import threading
from pathlib import Path

from edge.config import load_recipe
from edge.config.run_hooks import add_run_options, start_run_hooks

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
    parser.add_argument("--mqtt-host", metavar="H", help="Broker host (overrides mqtt.host).")
    parser.add_argument("--mqtt-port", type=int, metavar="P", help="Broker port (overrides mqtt.port).")
    parser.add_argument("--bank", type=Path, metavar="PATH", help="Memory bank (default: the recipe's bank.path).")
    parser.add_argument("--no-mqtt", action="store_true", help="Do not connect to a broker; print decisions only.")
    parser.add_argument("--connect-wait", type=float, default=5.0, metavar="S",
                        help="Wait up to S seconds for the broker before the first frame (default 5; the lane starts anyway).")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="S",
                        help="At shutdown, wait up to S seconds for the broker to acknowledge queued results (default 10).")
    parser.add_argument("--quiet", action="store_true", help="No line per decision (summary only).")
    add_run_options(parser)  # --shadow, --no-watch, --watch-interval (edge/config/run_hooks.py)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.lane.console import stop_on_signals

    if args.max_frames is not None and args.max_frames < 0:
        print("iad-edge run: error: --max-frames must be 0 or more", file=sys.stderr)
        return 2
    with stop_on_signals() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    from edge.lane.build import build_lane
    from edge.lane.console import DecisionPrinter
    from edge.lane.notify import Notifier, attach_to_lane

    from edge.mqtt.commands import attach_commands
    from edge.security import preflight

    recipe = load_recipe(args.recipe)
    preflight(recipe)  # paths inside the allowed roots, artifacts match their manifests
    lane = build_lane(recipe, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
                      mqtt_enabled=False if args.no_mqtt else None, bank_path=args.bank)
    printer = DecisionPrinter(quiet=args.quiet)
    lane.add_observer(printer)
    assistant_hooks = commands = None
    try:
        hooks = start_run_hooks(lane, args.recipe, args)  # live reload + shadow mode
        commands = attach_commands(lane)  # cmd/+ : validated, rate-limited, answered on cmd/<name>/result
        if recipe.assistant.enabled:  # busy flag + NG spool for the assistant process (its own systemd unit)
            from edge.assistant.lane_hooks import attach_assistant

            assistant_hooks = attach_assistant(lane, recipe)
    except BaseException:
        lane.stop(drain_timeout_s=0)
        if commands is not None:
            commands.stop()
        raise
    if lane.link is not None:
        where = f"{lane.link.host}:{lane.link.port}"
        if lane.link.wait_connected(args.connect_wait):
            print(f"MQTT: connected to {where}, topics under {recipe.topic_root}/", file=sys.stderr)
        else:
            print(f"MQTT: broker {where} not reachable yet ({lane.link.last_error}); deciding anyway, "
                  "results wait in the outbox", file=sys.stderr)
    notifier = Notifier()
    lane.start(args.max_frames)
    notifier.ready(f"inspecting {recipe.line}/{recipe.station}")
    watchdog = attach_to_lane(lane, notifier)  # after READY: systemd ignores (and we never send) pings before it
    try:
        while not lane.wait(0.2):
            if stop.is_set():
                break
    finally:
        notifier.stopping("finishing in-flight frames")
        watchdog.stop()
        lane.stop(drain_timeout_s=args.drain_timeout)
        hooks.close()
        if commands is not None:
            commands.stop()
        if assistant_hooks is not None:
            assistant_hooks.close()
        notifier.close()
    counters = lane.counters.snapshot()
    print(printer.summary(counters), file=sys.stderr)
    if lane.pending_results:
        print(f"{lane.pending_results} result(s) not yet acknowledged stay in {recipe.mqtt.outbox}; "
              "the next run sends them", file=sys.stderr)
    if lane.source_error:
        # Non-zero so that systemd (Restart=on-failure) starts the lane again.
        print(f"iad-edge run: error: acquisition stopped: {lane.source_error}", file=sys.stderr)
        return 1
    return 0

