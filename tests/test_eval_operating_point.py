"""`eval` at the recipe's own thresholds: confusion counts, false-reject and escape rates, a verdict per image."""

from __future__ import annotations

import csv
import json

import pytest

from edge.cli import main
from tests.fixtures.expert import write_recipe


class _Sample:
    def __init__(self, label, defect_type):
        self.label, self.defect_type = label, defect_type


class _Record:
    def __init__(self, label, defect_type, verdict):
        self.sample, self.verdict = _Sample(label, defect_type), verdict


def test_operating_point_counts_and_rates():
    from edge.evaluation.operating_point import merge, operating_point

    records = [_Record(0, "good", "OK"), _Record(0, "good", "NG"), _Record(0, "good", "OK"), _Record(0, "good", "OK"),
               _Record(1, "crack", "NG"), _Record(1, "crack", "OK"), _Record(1, "hole", "NG")]
    op = operating_point(records)
    assert (op["passed_good"], op["rejected_good"], op["rejected_defective"], op["escaped_defective"]) == (3, 1, 2, 1)
    assert op["false_reject_rate"] == pytest.approx(0.25) and op["escape_rate"] == pytest.approx(1 / 3)
    assert op["per_defect_type"]["crack"] == {"images": 2, "escapes": 1, "escape_rate": 0.5}
    assert op["per_defect_type"]["hole"]["escape_rate"] == 0.0
    total = merge([op, operating_point([_Record(0, "good", "NG")])])
    assert total["rejected_good"] == 2 and total["false_reject_rate"] == pytest.approx(2 / 5)
    assert operating_point([_Record(1, "x", "NG")])["false_reject_rate"] is None  # no good parts: undefined, not 0


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_expert_dir, eval_dataset_dir):
    root = tmp_path_factory.mktemp("eval-op")
    recipe = write_recipe(root, tiny_expert_dir)
    out = root / "report"
    assert main(["eval", str(recipe), str(eval_dataset_dir), "--out", str(out), "--no-progress"]) == 0
    return out


def test_scores_csv_has_the_recipe_verdict_and_metrics_json_counts_it(evaluated):
    rows = list(csv.DictReader((evaluated / "scores.csv").open()))
    assert rows and {r["verdict"] for r in rows} <= {"OK", "NG"}
    doc = json.loads((evaluated / "metrics.json").read_text())
    assert doc["thresholds"] == {"image_score": 0.17, "pixel": 0.15}
    for name, entry in doc["categories"].items():
        mine = [r for r in rows if r["category"] == name]
        op = entry["operating_point"]
        assert op["rejected_good"] == sum(r["label"] == "0" and r["verdict"] == "NG" for r in mine)
        assert op["passed_good"] == sum(r["label"] == "0" and r["verdict"] == "OK" for r in mine)
        assert op["escaped_defective"] == sum(r["label"] == "1" and r["verdict"] == "OK" for r in mine)
        assert op["rejected_defective"] == sum(r["label"] == "1" and r["verdict"] == "NG" for r in mine)
        good = op["rejected_good"] + op["passed_good"]
        assert op["false_reject_rate"] == pytest.approx(op["rejected_good"] / good)
        per_type = sum(t["images"] for t in op["per_defect_type"].values())
        assert per_type == op["rejected_defective"] + op["escaped_defective"]
        # a verdict NG at the recipe's image threshold must have a score at or above it, or a rejecting region
        for r in mine:
            if float(r["score"]) >= 0.17:
                assert r["verdict"] == "NG"
    total = doc["operating_point"]
    assert total["rejected_good"] == sum(e["operating_point"]["rejected_good"] for e in doc["categories"].values())


def test_report_md_shows_the_operating_point(evaluated):
    text = (evaluated / "report.md").read_text()
    assert "## Operating point at the recipe's thresholds" in text
    assert "false-reject rate" in text and "escape rate" in text and "| category | defect type |" in text
