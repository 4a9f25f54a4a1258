"""The two hooks the real-time lane needs for the assistant, in one call.

``attach_assistant(lane, recipe)`` (in ``iad-edge run``/``demo`` when
``assistant.enabled``): the lane sets the shared busy flag around every frame
(the assistant pauses between tokens while it is set) and drops NG parts into
the spool. Both are cheap on the hot path: a one-byte store, and a
``put_nowait`` on the post thread. With ``assistant.hard_yield`` the lane also
stops the assistant process while a frame is in flight (two signals per frame,
:mod:`edge.assistant.freezer`). ``hooks.close()`` at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing import Optional

from edge.assistant.busy_signal import BusySignal, signal_name
from edge.assistant.freezer import AssistantFreezer
from edge.assistant.spool import SpoolWriter


@dataclass
class AssistantHooks:
    busy: BusySignal
    spool: SpoolWriter
    freezer: Optional[AssistantFreezer] = None

    def close(self) -> None:
        if self.freezer is not None:
            self.freezer.close()  # never leave the assistant stopped
        self.spool.close()
        self.busy.set(False)
        self.busy.close()


def attach_assistant(lane: Any, recipe: Any) -> AssistantHooks:
    """Register the busy flag and the spool writer on ``lane`` (see the module docstring)."""
    cfg = recipe.assistant
    busy = BusySignal(cfg.busy_signal or signal_name(recipe.line, recipe.station))
    busy.set(False)
    spool = SpoolWriter(Path(cfg.spool), session=getattr(lane, "session", ""), self_test_every_s=cfg.self_test_every_s)
    lane.add_busy_listener(busy.set)
    freezer = None
    if cfg.hard_yield:  # see edge/assistant/freezer.py: the assistant opts in by registering its pid
        freezer = AssistantFreezer(busy)
        lane.add_busy_listener(freezer)
    lane.add_observer(spool.observe)
    if hasattr(lane, "set_status_field"):
        lane.set_status_field("assistant_spool", spool.stats())
    return AssistantHooks(busy, spool, freezer)
