"""`iad-edge` command line: one sub-command per module in :mod:`edge.commands`.

Each command module defines ``register(subparsers)`` which adds its parser and
sets ``func`` to a callable ``(args) -> int``. Commands are imported only when
the CLI starts, and a command whose optional dependencies are missing says so
instead of breaking the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge import __version__
from edge.cli_main import run_cli

COMMAND_MODULES = (
    "demo",
    "inspect",
    "calibrate",
    "run",
    "check",
    "schema",
    "eval",
    "make_dataset",
    "explain",
    "generate",
    "assistant",
    "console",
)


def _chosen(argv: Sequence[str]) -> str | None:
    """The command module ``argv`` asks for (first word that is not an option), or None."""
    for word in argv:
        if not word.startswith("-"):
            module = word.replace("-", "_")
            return module if module in COMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only the one ``argv`` names.

    Command modules import what they need at the top, so loading only the chosen
    one keeps e.g. ``iad-edge assistant`` from importing the lane's ONNX Runtime.
    """
    parser = argparse.ArgumentParser(prog="iad-edge", description="On-line industrial anomaly inspection appliance.")
    parser.add_argument("--version", action="version", version=f"iad-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for name in (chosen,) if chosen else COMMAND_MODULES:
        try:
            module = importlib.import_module(f"edge.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edge.commands.{name}":
                continue  # command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    return run_cli(build_parser(words), words, "%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
