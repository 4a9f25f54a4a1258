"""`iad-export` command line: one sub-command per module in :mod:`export.commands`.

Command modules are discovered (``pkgutil``), not listed, so a new exporter
(``qwen``, TensorRT, ...) is added by dropping ``export/commands/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func`` to a
callable ``(args) -> int``. Deliberate errors (:class:`edge.errors.IadError`)
are printed as one line and give exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import export.commands as _commands
from edge import __version__
from edge.cli_main import run_cli


def command_modules() -> list[str]:
    """Names of the sub-command modules shipped in :mod:`export.commands` (sorted)."""
    return sorted(info.name for info in pkgutil.iter_modules(_commands.__path__) if not info.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iad-export",
        description="Offline export: checkpoints -> ONNX region expert / TensorRT engine / GGUF, with manifests.",
    )
    parser.add_argument("--version", action="version", version=f"iad-export {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"export.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, "%(message)s")


if __name__ == "__main__":
    sys.exit(main())
