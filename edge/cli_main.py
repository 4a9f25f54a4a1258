"""The shared `main()` of both console scripts (`iad-edge`, `iad-export`).

One place decides logging, the exit codes, and how a deliberate error
(:class:`edge.errors.IadError`) is shown: one line, no traceback, exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edge.errors import IadError


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None, log_format: str) -> int:
    """Parse, configure logging, dispatch to ``args.func``; exit 2 without a command, 1 on IadError, 130 on Ctrl-C."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else log_format,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IadError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
