"""What would change: a diff of the effective values of two recipes.

`iad-edge check RECIPE --against ...` compares the candidate with what runs
(the values a running appliance publishes on its retained `status`, or
another recipe file) so the technician sees the consequences before saving
the file the appliance watches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'thresholds.image_score': 0.35, ...}; lists stay whole (a polygon is one value)."""
    if isinstance(values, dict):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: values}


@dataclass(frozen=True)
class Change:
    """One effective value that differs."""

    key: str
    before: Any
    after: Any
    kind: str  # 'changed' | 'added' | 'removed'

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.key}: {json.dumps(self.after)}"
        if self.kind == "removed":
            return f"- {self.key}: {json.dumps(self.before)}"
        return f"~ {self.key}: {json.dumps(self.before)} -> {json.dumps(self.after)}"


def diff_effective(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Changes from ``before`` to ``after`` (both from ``Recipe.effective()``), sorted by key."""
    old, new = flatten(before), flatten(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append(Change(key, None, new[key], "added"))
        elif key not in new:
            changes.append(Change(key, old[key], None, "removed"))
        elif old[key] != new[key]:
            changes.append(Change(key, old[key], new[key], "changed"))
    return changes
