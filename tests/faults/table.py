"""Render the fault table (JSON written by the fault suite) as the Markdown table in docs/faults.md.

    IAD_FAULT_TABLE=/tmp/faults.json pytest -q tests/faults
    python -m tests.faults.table /tmp/faults.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _plc(row: dict[str, Any]) -> str:
    n = row.get("triggers")
    got = row["decisions_received"]
    text = f"{got}{'/' + str(n) if n else ''} decisions, {row['decisions_late']} late"
    missing = row.get("decision_not_delivered_ids") or []
    if missing:
        text += f"; not sent (window or broker): ids {_ids(missing)}"
    return text


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids)) if len(ids) <= 6 else f"{ids[0]}…{ids[-1]} ({len(ids)})"


def _outbox(row: dict[str, Any]) -> str:
    text = f"{row['results_unique']} results ({row['results_duplicates']} dup, gaps {row['results_gaps'] or 'none'})"
    if row.get("fail_safe_results"):
        text += f"; {row['fail_safe_results']} fail-safe"
    for key, label in (("outbox_rows_at_kill", "rows stranded at kill"), ("outbox_rows_left", "rows left")):
        if key in row:
            text += f"; {label}: {row[key]}"
    if len(row.get("sessions", [])) > 1:
        text += f"; sessions {len(row['sessions'])}"
    return text


def _status(row: dict[str, Any]) -> str:
    st = row.get("status")
    if not st:
        return "nothing published"
    parts = [f"`{st.get('state')}`"]
    for key in ("frames", "decisions", "fail_safe", "undelivered", "late", "non_finite", "reconnects", "archive_errors"):
        if st.get(key):
            parts.append(f"{key} {st[key]}")
    for key in ("source_error", "recipe_error"):
        if st.get(key):
            parts.append(f"{key}: “{st[key][:90]}”")
    archive = st.get("archive") or {}
    if archive.get("last_error"):
        parts.append(f"archive: “{str(archive['last_error'])[:60]}…”")
    return ", ".join(parts)


def _extra(row: dict[str, Any]) -> str:
    known = {"fault", "triggers", "decisions_received", "decisions_late", "decision_ids", "results_received",
             "results_unique", "results_duplicates", "results_gaps", "sessions", "fail_safe_results",
             "fail_safe_reasons", "decision_not_delivered_ids", "status", "note", "outbox_rows_at_kill",
             "outbox_rows_left"}
    extras = [f"{k} = {json.dumps(v)}" for k, v in row.items() if k not in known]
    reasons = row.get("fail_safe_reasons") or []
    note = row.get("note", "")
    bits = [note] + extras + ([f"fail-safe reasons: {'; '.join(reasons[:2])}"] if reasons else [])
    return "<br>".join(b.replace("|", "\\|") for b in bits if b)


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| fault | PLC received (`decision`) | outbox delivered (`result`) | `status` said | notes |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = [row["fault"], _plc(row), _outbox(row), _status(row), _extra(row)]
        lines.append("| " + " | ".join(c.replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/iad-fault-table.json")
    sys.stdout.write(render(json.loads(source.read_text())))
