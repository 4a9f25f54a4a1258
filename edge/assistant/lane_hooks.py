"""The two hooks the real-time lane needs for the assistant, in one call.

``attach_assistant(lane, recipe)`` (in ``iad-edge run``/``demo`` when
``assistant.enabled``): the lane sets the shared busy flag around every frame
(the assistant pauses between tokens while it is set) and drops NG parts into
the spool. Both are cheap on the hot path: a one-byte store, and a
``put_nowait`` on the post thread. ``hooks.close()`` at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.assistant.busy_signal import BusySignal, signal_name
from edge.assistant.spool import SpoolWriter


@dataclass
class AssistantHooks:
    busy: BusySignal
    spool: SpoolWriter

    def close(self) -> None:
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
    lane.add_observer(spool.observe)
    if hasattr(lane, "set_status_field"):
        lane.set_status_field("assistant_spool", spool.stats())
    return AssistantHooks(busy, spool)
