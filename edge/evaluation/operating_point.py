"""The recipe's operating point: what its own thresholds do on a labelled test set.

AUROC and F1-max say how well scores *could* separate good from defective
parts; the line runs at one fixed setting, the recipe's ``thresholds`` and
``rules``. This counts the verdicts the appliance would really give (the
full rule set, regions included): confusion counts, the false-reject rate on
good parts (FRR: good parts the line throws away) and the escape rate on
defective parts (defects the line passes), per category and per defect type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def operating_point(records: Iterable[Any]) -> dict[str, Any]:
    """Counts and rates of ``records`` (each with ``sample.label``, ``sample.defect_type`` and ``verdict``)."""
    tp = fn = fp = tn = 0
    per_type: dict[str, dict[str, int]] = {}
    for record in records:
        rejected = record.verdict == "NG"
        if record.sample.label == 1:
            kind = per_type.setdefault(str(record.sample.defect_type), {"images": 0, "escapes": 0})
            kind["images"] += 1
            if rejected:
                tp += 1
            else:
                fn += 1
                kind["escapes"] += 1
        elif rejected:
            fp += 1
        else:
            tn += 1
    return {
        "rejected_defective": tp,  # true positives
        "escaped_defective": fn,  # false negatives: defects the line passes
        "rejected_good": fp,  # false positives: good parts thrown away
        "passed_good": tn,
        "false_reject_rate": _rate(fp, fp + tn),
        "escape_rate": _rate(fn, tp + fn),
        "per_defect_type": {
            name: {**counts, "escape_rate": _rate(counts["escapes"], counts["images"])}
            for name, counts in sorted(per_type.items())
        },
    }


def merge(points: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum of several operating points (categories -> whole dataset)."""
    keys = ("rejected_defective", "escaped_defective", "rejected_good", "passed_good")
    total = {k: 0 for k in keys}
    for point in points:
        for k in keys:
            total[k] += point[k]
    return {
        **total,
        "false_reject_rate": _rate(total["rejected_good"], total["rejected_good"] + total["passed_good"]),
        "escape_rate": _rate(total["escaped_defective"], total["escaped_defective"] + total["rejected_defective"]),
    }


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
