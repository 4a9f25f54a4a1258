"""Every decision and result names its session, so the PLC can de-duplicate by (session, trigger_id).

Frame ids restart when the lane restarts and, on many cameras, after a camera
reconnect; the session changes in both cases, so the pair stays unique.
"""

from __future__ import annotations

import json
import time

import numpy as np

from edge.config import parse_recipe
from edge.lane.lane import Lane
from edge.mqtt.payloads import decision_payload, result_body
from edge.types import Frame, InspectionResult
from tests.fixtures.config import CONFIG_BASE_RECIPE


class _Inspector:
    expert = None

    def inspect(self, image: np.ndarray) -> InspectionResult:
        return InspectionResult(0.1, "OK", "score below threshold", [], np.zeros((4, 4), np.float32))


class _ReconnectingCamera:
    """Frame ids 1, 2, 3; the camera drops and reconnects; ids restart at 1, 2 (like many GigE cameras)."""

    def __init__(self) -> None:
        self.stats = {"reconnects": 0}

    def __iter__(self):  # type: ignore[no-untyped-def]
        for ids in ((1, 2, 3), (1, 2)):
            for trigger_id in ids:
                yield Frame(image=np.zeros((4, 4, 3), np.uint8), trigger_id=trigger_id, trigger_time=time.time(), source="camera")
            self.stats["reconnects"] += 1

    def close(self) -> None:
        pass


def test_session_in_every_decision_and_result_and_new_after_a_camera_reconnect(config_recipe_dir) -> None:  # type: ignore[no-untyped-def]
    recipe = parse_recipe(CONFIG_BASE_RECIPE.replace("window_ms: 150", "window_ms: 60000"), config_recipe_dir / "line3.yaml")
    lane = Lane(recipe, _Inspector(), _ReconnectingCamera(), pull=True, session="c29c0d90")
    seen = []
    lane.add_observer(lambda frame, result, decision: seen.append((frame, result, decision)))
    lane.run()
    assert len(seen) == 5
    decisions = [json.loads(decision_payload(d)) for _, _, d in seen]
    results = [result_body(f, d, r, lane.session, "l", "s", "sha", None) for f, r, d in seen]
    pairs = [(b["session"], b["trigger_id"]) for b in decisions]
    assert [b["trigger_id"] for b in decisions] == [1, 2, 3, 1, 2]
    assert len(set(pairs)) == 5, pairs  # unique although the frame ids restarted
    assert {s for s, _ in pairs[:3]} == {"c29c0d90"} and {s for s, _ in pairs[3:]} == {"c29c0d90-r1"}
    assert [(b["session"], b["trigger_id"]) for b in results] == pairs
    assert decision_payload(seen[0][2], "plain").decode().split(";")[-1] == "c29c0d90"
