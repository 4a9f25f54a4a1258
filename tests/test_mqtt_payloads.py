"""Decision payloads as the PLC parses them (JSON and the plain 'id;verdict;score;latency' line)."""

from __future__ import annotations

import json

from edge.mqtt.payloads import decision_payload
from edge.mqtt.topics import Topics
from edge.types import Decision


def _decision(**kw):
    base = dict(trigger_id=42, verdict="NG", reason="image score 0.569 >= 0.350", score=0.56941, trigger_time=1000.0,
                decided_at=1000.0575, window_ms=150.0)
    base.update(kw)
    return Decision(**base)


def test_json_decision_has_id_verdict_deadline():
    body = json.loads(decision_payload(_decision(session="c29c0d90")))
    assert body == {"session": "c29c0d90", "trigger_id": 42, "verdict": "NG", "reason": "image score 0.569 >= 0.350", "score": 0.56941,
                    "latency_ms": 57.5, "fail_safe": False, "trigger_time": 1000.0, "deadline": 1000.15}


def test_plain_decision_line():
    assert decision_payload(_decision(), "plain") == b"42;NG;0.5694;57.5"
    failsafe = _decision(trigger_id=7, score=None, fail_safe=True, decided_at=1000.0004)
    assert decision_payload(failsafe, "plain") == b"7;NG;-1.0000;0.4"
    assert decision_payload(_decision(session="c29c0d90"), "plain") == b"42;NG;0.5694;57.5;c29c0d90"


def test_topics_under_the_root():
    t = Topics("iad/line3/st2")
    assert (t.decision, t.result, t.status, t.cmd("reload")) == (
        "iad/line3/st2/decision", "iad/line3/st2/result", "iad/line3/st2/status", "iad/line3/st2/cmd/reload")
