"""Message bodies for the ``decision``, ``result`` and ``status`` topics (documented in docs/mqtt.md).

Decisions stay small (one PLC string or a flat JSON object); everything bulky
(regions, timings, hashes) goes into ``result``.
"""

from __future__ import annotations

import json
from typing import Any

from edge.types import Decision, Frame, InspectionResult


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def decision_payload(decision: Decision, fmt: str = "json") -> bytes:
    """The ``decision`` message: JSON object, or ``trigger_id;verdict;score;latency_ms;session`` when fmt='plain'."""
    score = -1.0 if decision.score is None else decision.score
    if fmt == "plain":
        text = f"{decision.trigger_id};{decision.verdict};{score:.4f};{decision.latency_ms:.1f}"
        return (text + (f";{decision.session}" if decision.session else "")).encode()
    return _dumps(
        {
            "session": decision.session,
            "trigger_id": decision.trigger_id,
            "verdict": decision.verdict,
            "reason": decision.reason,
            "score": None if decision.score is None else round(float(decision.score), 6),
            "latency_ms": round(decision.latency_ms, 2),
            "fail_safe": decision.fail_safe,
            "trigger_time": round(decision.trigger_time, 6),
            "deadline": round(decision.deadline, 6),
        }
    )


def result_body(
    frame: Frame,
    decision: Decision,
    result: InspectionResult | None,
    session: str,
    line: str,
    station: str,
    recipe_sha256: str,
    engine_sha256: str | None,
    archive_entry: str | None = None,
) -> dict[str, Any]:
    """The full ``result`` JSON for one trigger (also the archive's result.json)."""
    image = frame.image
    shape = list(getattr(image, "shape", ()))
    body: dict[str, Any] = {
        "session": decision.session or session,
        "trigger_id": decision.trigger_id,
        "trigger_time": round(decision.trigger_time, 6),
        "decided_at": round(decision.decided_at, 6),
        "line": line,
        "station": station,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "fail_safe": decision.fail_safe,
        "score": None if decision.score is None else round(float(decision.score), 6),
        "latency_ms": round(decision.latency_ms, 2),
        "window_ms": decision.window_ms,
        "decision_delivery": decision.delivery,
        "regions": [r.to_json() for r in result.regions] if result is not None else [],
        "timings": {k: round(float(v), 3) for k, v in decision.timings.items()},
        "frame": {
            "source": frame.source,
            "name": frame.name,
            "shape": shape,
            "dtype": str(getattr(image, "dtype", "")),
        },
        "recipe_sha256": recipe_sha256,
        "engine_sha256": engine_sha256,
        "archive": archive_entry,
    }
    if frame.defect_type is not None:
        body["frame"]["injected_defect"] = frame.defect_type
    return body


def result_payload(body: dict[str, Any]) -> bytes:
    return _dumps(body)
