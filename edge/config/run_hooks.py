"""What `iad-edge run` needs from the calibration side: live reload and shadow mode, in three calls.

In ``edge/commands/run.py``::

    from edge.config.run_hooks import add_run_options, start_run_hooks
    add_run_options(parser)                              # in register(): --shadow, --no-watch, --watch-interval
    hooks = start_run_hooks(lane, args.recipe, args)     # after build_lane(), before lane.start()/run()
    ...
    hooks.close()                                        # after lane.stop(): stops the watcher, prints the shadow summary

A bad ``--shadow`` candidate raises :class:`edge.config.RecipeError` from
``start_run_hooks`` (before the line starts), which the CLI prints with its
file:line problems.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional, TextIO, Union

log = logging.getLogger(__name__)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add --shadow, --no-watch and --watch-interval to the `run` parser."""
    parser.add_argument("--shadow", type=Path, metavar="CANDIDATE.yaml",
                        help="Also judge every frame with a candidate recipe, without publishing its decisions; "
                             "report how many verdicts would change (status extras.shadow, log, summary at exit).")
    parser.add_argument("--no-watch", action="store_true",
                        help="Do not reload the recipe when its file changes (live reload is on by default).")
    parser.add_argument("--watch-interval", type=float, default=0.5, metavar="S",
                        help="Seconds between checks of the recipe file for live reload (default 0.5).")


class RunHooks:
    """The watcher and shadow evaluator attached to one lane."""

    def __init__(self, watcher: Any = None, shadow: Any = None):
        self.watcher = watcher
        self.shadow = shadow

    def close(self, out: Optional[TextIO] = None) -> None:
        """Stop watching; finish the shadow comparison and print its summary."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.shadow is not None:
            self.shadow.close()
            for line in self.shadow.summary_lines():
                log.info("%s", line)
                print(line, file=out or sys.stderr)


def start_run_hooks(lane: Any, recipe_path: Union[str, Path], args: Optional[argparse.Namespace] = None) -> RunHooks:
    """Attach live reload (unless --no-watch) and shadow mode (with --shadow) to ``lane``."""
    shadow = watcher = None
    if args is not None and getattr(args, "shadow", None):
        from edge.lane.shadow import attach_shadow

        shadow = attach_shadow(lane, args.shadow)
    if not (args is not None and getattr(args, "no_watch", False)):
        from edge.lane.watch import attach_watcher

        watcher = attach_watcher(lane, recipe_path, getattr(args, "watch_interval", 0.5) if args is not None else 0.5)
    return RunHooks(watcher, shadow)
