"""Deadlines run on the monotonic clock; the wall clock is only published data.

An NTP step (or an operator setting the clock) must not change whether a
decision is on time: ``time.time`` is stepped by an hour either way while a
frame is in flight, and the decision window is judged exactly as without it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.config import parse_recipe
from edge.lane.lane import Lane
from edge.types import Frame, InspectionResult
from tests.fixtures.config import CONFIG_BASE_RECIPE


class _Inspector:
    expert = None

    def inspect(self, image: np.ndarray) -> InspectionResult:
        return InspectionResult(0.1, "OK", "score below threshold", [], np.zeros((4, 4), np.float32))


class _Source:
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    def close(self) -> None:
        pass


@pytest.fixture
def lane(config_recipe_dir) -> Lane:  # type: ignore[no-untyped-def]
    recipe = parse_recipe(CONFIG_BASE_RECIPE, config_recipe_dir / "line3.yaml")  # window_ms: 150
    return Lane(recipe, _Inspector(), _Source())


def _frame() -> Frame:
    return Frame(image=np.zeros((4, 4, 3), np.uint8), trigger_id=1, trigger_time=time.time(), source="test")


@pytest.mark.parametrize("step_s", [3600.0, -3600.0])
def test_a_wall_clock_step_does_not_change_the_deadline(lane: Lane, monkeypatch: pytest.MonkeyPatch, step_s: float) -> None:
    frame = _frame()
    enqueued = time.monotonic()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step_s)  # the clock is stepped while the frame is in flight
    lane._inspect_one(frame, enqueued)
    decision = lane._post_q.get_nowait()[2]
    assert not decision.fail_safe, decision.reason
    assert decision.verdict == "OK" and decision.delivery == "local"
    assert 0 <= decision.latency_ms < 150
    assert decision.timings["queue_wait"] < 150


def test_a_late_frame_is_late_whatever_the_wall_clock_says(lane: Lane, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _frame()
    frame.trigger_mono = time.monotonic() - 0.5  # triggered half a second ago: the 150 ms window is over
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600.0)  # a backward step would make it look early
    lane._inspect_one(frame, time.monotonic())
    decision = lane._post_q.get_nowait()[2]
    assert decision.fail_safe and decision.verdict == "NG"
    assert "decision window exceeded" in decision.reason
    assert decision.delivery == "late"


def test_published_times_stay_wall_clock(lane: Lane) -> None:
    import json

    from edge.mqtt.payloads import decision_payload, result_body

    frame = _frame()
    lane._inspect_one(frame, time.monotonic())
    decision = lane._post_q.get_nowait()[2]
    body = json.loads(decision_payload(decision))
    assert body["trigger_time"] == pytest.approx(frame.trigger_time, abs=1e-5)
    assert body["deadline"] == pytest.approx(frame.trigger_time + 0.15, abs=1e-5)
    assert abs(decision.decided_at - time.time()) < 5  # epoch seconds, for people and logs
    assert result_body(frame, decision, None, "s", "l", "st", "sha", None)["decided_at"] == pytest.approx(decision.decided_at, abs=1e-5)
