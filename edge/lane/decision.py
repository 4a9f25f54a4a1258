"""The one decision the lane makes per trigger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Decision:
    """What the PLC is told about one part (and what happened to that message).

    ``fail_safe`` is true when the verdict is the recipe's fail-safe verdict
    because the lane could not decide (stage error, bad frame, full queue,
    window exceeded); ``reason`` then says why. ``delivery`` records what became
    of the MQTT decision message: ``sent``, ``late`` (window already over, not
    published), ``disconnected`` (broker away, not published: decisions are
    never queued for later), ``error``, or ``local`` (MQTT disabled).
    """

    trigger_id: int
    verdict: str
    reason: str
    score: Optional[float]
    trigger_time: float
    decided_at: float
    window_ms: float
    fail_safe: bool = False
    region_count: int = 0
    delivery: str = "pending"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        """Trigger to decision, in milliseconds."""
        return (self.decided_at - self.trigger_time) * 1000.0

    @property
    def deadline(self) -> float:
        """Epoch seconds after which this decision must not reach the PLC."""
        return self.trigger_time + self.window_ms / 1000.0

    def remaining_s(self, now: float) -> float:
        """Seconds left in the decision window at ``now`` (negative when over)."""
        return self.deadline - now
