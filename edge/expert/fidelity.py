"""Refuse a reduced-precision expert whose measured fidelity is missing or below the recipe's floor.

An INT8 or FP16 graph scores slightly differently from the FP32 graph it was
made from. ``iad-export quantize`` measures how much (patch-distance
correlation, image-score rank correlation, max distance error on a hold-out)
and writes it into the manifest. A graph without those figures, or with
figures worse than ``expert.min_fidelity``, could move verdicts unnoticed, so
it is not loaded. FP32 graphs carry an export parity check instead and pass.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edge.errors import ModelLoadError

REDUCED_PRECISIONS = ("int8", "fp16")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def check_fidelity(manifest: dict[str, Any], tolerance: Any, manifest_file: Path) -> None:
    """Raise :class:`ModelLoadError` unless an int8/fp16 manifest's fidelity meets ``tolerance``.

    ``tolerance`` is the recipe's ``expert.min_fidelity`` (fields
    ``distance_correlation``, ``score_spearman``, ``max_distance_error``).
    """
    precision = str(manifest.get("precision", "fp32"))
    if precision == "fp32":
        return
    hint = "re-run `iad-export quantize` on the FP32 expert (it measures and records fidelity)"
    if precision not in REDUCED_PRECISIONS:
        raise ModelLoadError(f"{manifest_file}: precision {precision!r} is unknown (fp32, int8 or fp16); {hint}")
    fidelity = manifest.get("fidelity")
    if not isinstance(fidelity, dict):
        raise ModelLoadError(f"{manifest_file}: a {precision} expert without a 'fidelity' record is refused; {hint}")
    checks = (
        ("distance_correlation", ">=", tolerance.distance_correlation),
        ("score_spearman", ">=", tolerance.score_spearman),
        ("max_abs_distance_error", "<=", tolerance.max_distance_error),
    )
    for key, sense, limit in checks:
        if limit is None:
            continue
        value = _number(fidelity.get(key))
        if math.isnan(value):
            raise ModelLoadError(f"{manifest_file}: fidelity.{key} is missing; a {precision} expert needs it; {hint}")
        ok = value >= limit if sense == ">=" else value <= limit
        if not ok:
            raise ModelLoadError(
                f"{manifest_file}: {precision} expert fidelity.{key} = {value:.5g}, the recipe's "
                f"expert.min_fidelity wants {sense} {limit:g}; use the FP32 expert, re-quantise with more/better "
                f"calibration images, or relax expert.min_fidelity if you accept it"
            )
