"""Side-by-side comparison of two ``metrics.json`` files (`iad-edge eval --compare A B`).

Made for recipe or engine changes: the same dataset evaluated twice, then every
metric of every category shown as A, B and B − A in percentage points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.errors import IadError
from edge.evaluation.runner import METRICS


class CompareError(IadError):
    """A metrics file that cannot be compared (missing, not JSON, not an eval result)."""


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read a metrics.json written by `iad-edge eval` and check it has what the table needs."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{path}: metrics file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("categories"), dict) or not isinstance(doc.get("mean"), dict):
        raise CompareError(f"{path}: not a metrics.json from `iad-edge eval` (needs 'categories' and 'mean')")
    return doc


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    return f"{100 * (b - a):+.1f}"


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """Rows of (category, metric, A, B, delta); categories in either file, 'mean' last."""
    names = list(a["categories"]) + [n for n in b["categories"] if n not in a["categories"]]
    rows = []
    for name in names + ["mean"]:
        ea = a["mean"] if name == "mean" else a["categories"].get(name)
        eb = b["mean"] if name == "mean" else b["categories"].get(name)
        for metric in METRICS:
            va = ea.get(metric) if ea else None
            vb = eb.get(metric) if eb else None
            rows.append([name, metric, _cell(va) if ea else "-", _cell(vb) if eb else "-", _delta(va, vb)])
    return rows


def comparability_notes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Warnings when the two runs do not measure the same thing (the deltas would mislead)."""
    notes = []
    if set(a["categories"]) != set(b["categories"]):
        notes.append("the files cover different categories: the mean rows are not comparable")
    if a.get("dataset") != b.get("dataset"):
        notes.append(f"different datasets ({a.get('dataset')} vs {b.get('dataset')})")
    if a.get("shots") != b.get("shots"):
        notes.append(f"different --shots ({a.get('shots')} vs {b.get('shots')})")
    return notes


def compare_table(path_a: str | Path, path_b: str | Path) -> str:
    """The side-by-side table as text (values in %, delta in percentage points)."""
    a, b = load_metrics(path_a), load_metrics(path_b)
    header = ["category", "metric", "A", "B", "B-A"]
    rows = compare_rows(a, b)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    align = ["<", "<", ">", ">", ">"]

    def fmt(cells: list[str]) -> str:
        return "  ".join(f"{c:{al}{w}}" for c, al, w in zip(cells, align, widths)).rstrip()

    lines = [f"A: {path_a}", f"B: {path_b}"]
    lines += [f"note: {n}" for n in comparability_notes(a, b)]
    lines += ["", fmt(header), fmt(["-" * w for w in widths])]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            lines.append("")
        lines.append(fmt(row))
        previous = row[0]
    return "\n".join(lines)
