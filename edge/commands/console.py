"""`iad-edge console RECIPE`: the technician console (its own process; docs/console.md).

Shows live decisions and counters, the newest NG parts with overlay, regions and
explanation, the running recipe with an edit box (check, diff, apply through the
station's live reload), shadow-mode figures and the latest calibration report.
Read-only without login; `--hash-password` prints the line for console.password_file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from edge.config import load_recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "console",
        help="Serve the technician console (web page) for a station's recipe.",
        description="Serve the technician console for RECIPE: live decisions, NG parts, recipe check/diff/apply "
        "(through the station's live reload), shadow figures, calibration report. Read-only without login.",
    )
    parser.add_argument("recipe", type=Path, nargs="?", help="The station's recipe YAML (the file its live reload watches).")
    parser.add_argument("--host", help="Listen address (overrides console.host).")
    parser.add_argument("--port", type=int, help="Port (overrides console.port; 0 = any free port).")
    parser.add_argument("--mqtt-host", metavar="H", help="Broker host (overrides mqtt.host).")
    parser.add_argument("--mqtt-port", type=int, metavar="P", help="Broker port (overrides mqtt.port).")
    parser.add_argument("--hash-password", action="store_true",
                        help="Read a password (prompt, or one line on stdin) and print the line for console.password_file.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        from edge.plant.console.auth import hash_password

        password = getpass.getpass("console password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        print(hash_password(password))
        return 0
    if args.recipe is None:
        print("iad-edge console: error: a RECIPE is needed (or --hash-password)", file=sys.stderr)
        return 2
    try:
        from edge.plant.console.server import serve
    except ModuleNotFoundError as exc:
        print(f"iad-edge console: error: {exc.name} is not installed: pip install 'iad-edge[plant]'", file=sys.stderr)
        return 1
    recipe = load_recipe(args.recipe)
    return serve(recipe, args.recipe, args.host, args.port, args.mqtt_host, args.mqtt_port)
