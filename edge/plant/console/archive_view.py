"""Read-only views of the NG archive and the calibration report, confined to their folders.

Entries are ``<archive>/<YYYY-MM-DD>/<HHMMSS_mmm>_<session>_<trigger>_<verdict>/`` (see
:mod:`edge.archive`); half-written ones (``.tmp-`` folders) are never shown. Files are
served by name from a fixed list, after resolving the path and checking it stays
inside the root, so a crafted URL cannot read anything else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENTRY_FILES = ("overlay.png", "frame.png", "map.png")
REPORT_NAME = "calibration_report.md"


def inside(root: Path, *parts: str) -> Path | None:
    """``root/parts...`` when it resolves inside ``root`` (symlinks too), else None."""
    if any(not p or p in (".", "..") or "/" in p or "\\" in p or "\0" in p for p in parts):
        return None
    real_root = Path(os.path.realpath(root))
    path = Path(os.path.realpath(real_root.joinpath(*parts)))
    return path if real_root in path.parents else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def latest_ng(root: Path, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` NG entries, newest first, with result, regions and explanation."""
    root = Path(root)
    out: list[dict[str, Any]] = []
    try:
        days = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), reverse=True)
    except OSError:
        return out
    for day in days:
        try:
            entries = sorted((e for e in day.iterdir() if e.is_dir() and e.name.endswith("_NG")
                              and not e.name.startswith(".")), reverse=True)
        except OSError:
            continue
        for entry in entries:
            result = _read_json(entry / "result.json")
            if result is None:
                continue  # still being written by an older writer, or damaged: skip it
            explanation = _read_json(entry / "explanation.json")
            out.append({
                "id": f"{day.name}/{entry.name}",
                "trigger_id": result.get("trigger_id"),
                "session": result.get("session"),
                "decided_at": result.get("decided_at"),
                "score": result.get("score"),
                "reason": result.get("reason"),
                "fail_safe": result.get("fail_safe"),
                "regions": result.get("regions") or [],
                "explanation": explanation,
                "files": [name for name in ENTRY_FILES if (entry / name).is_file()],
            })
            if len(out) >= limit:
                return out
    return out


def report_folder(recipe_path: Path) -> Path:
    """Where `iad-edge calibrate` writes its report by default: ``<recipe>.calibration/``."""
    return recipe_path.with_name(f"{recipe_path.stem}.calibration")


def calibration_report(recipe_path: Path) -> dict[str, Any] | None:
    """The latest calibration report (markdown text, its plots, time), or None when there is none."""
    folder = report_folder(recipe_path)
    report = folder / REPORT_NAME
    try:
        text = report.read_text(encoding="utf-8")
        mtime = report.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return None
    plots = sorted(p.name for p in folder.glob("*.png"))
    return {"path": str(report), "written_at": mtime, "markdown": text, "plots": plots}
