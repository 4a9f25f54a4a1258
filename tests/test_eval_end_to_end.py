"""`iad-edge eval` end to end: synthetic MVTec-layout data, the tiny real expert on ONNX Runtime."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.evaluation.runner import METRICS
from tests.fixtures.eval import EVAL_TEST

CATEGORIES = ("part_color", "part_gray", "part_odd")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _eval(*args: str) -> int:
    return main(["eval", *args, "--no-progress"])


def _scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as fh:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(fh)}


def test_eval_full_report(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out)) == 0
    assert "mean" in capsys.readouterr().out

    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["categories"]) == set(CATEGORIES)
    for name, entry in doc["categories"].items():
        for metric in METRICS:
            value = entry[metric]
            assert value is not None and 0.0 <= value <= 1.0, (name, metric, value)
        assert entry["n_test"] == EVAL_TEST and entry["n_anomalous"] == EVAL_TEST // 2
        assert entry["location_images"] == EVAL_TEST // 2
    for metric in METRICS:
        expected = np.mean([doc["categories"][c][metric] for c in CATEGORIES])
        assert doc["mean"][metric] == pytest.approx(expected, abs=1e-5)
    assert doc["pro_fpr_limit"] == 0.3 and doc["shots"] is None

    with open(out / "scores.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["category", "path", "label", "score", "verdict"]
    assert len(rows) == 1 + len(CATEGORIES) * EVAL_TEST
    for _category, path, label, score, verdict in rows[1:]:
        assert (eval_dataset_dir / path).is_file()
        assert label == ("0" if "/test/good/" in path else "1")
        assert math.isfinite(float(score))
        assert verdict in ("OK", "NG")

    plots = ["roc.png", "pro.png", "categories.png"] + [f"worst_{c}.png" for c in CATEGORIES]
    for name in plots:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, name
        assert image.std() > 5, f"{name} is blank"
        assert f"]({name})" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    for c in CATEGORIES:
        assert f"| {c} |" in report
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_eval_values_match_an_independent_computation(tiny_recipe_path, eval_dataset_dir, tmp_path):
    """Every figure of the report recomputed outside the runner: scores by a fresh bank + Inspector per category,
    image metrics by scikit-learn, pixel metrics exactly (all pixels in memory) from the same maps and masks."""
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.evaluation.datasets import load_dataset, read_mask
    from edge.evaluation.metrics import pixel_metrics_exact
    from edge.expert import load_expert
    from edge.imageio import read_image
    from edge.inspector import Inspector

    out = tmp_path / "report"
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out)) == 0
    doc = json.loads((out / "metrics.json").read_text())
    reported = _scores(out / "scores.csv")
    recipe = load_recipe(tiny_recipe_path)
    expert = load_expert(recipe.expert)
    for category in load_dataset(eval_dataset_dir).categories:
        entry = doc["categories"][category.name]
        bank = build_bank(expert, [read_image(p) for p in category.train], recipe, progress=False)
        inspector = Inspector(recipe, expert, bank)
        labels, scores, masks, maps = [], [], [], []
        for sample in category.test:
            image = read_image(sample.path)
            result = inspector.inspect(image)
            rel = sample.path.relative_to(eval_dataset_dir).as_posix()
            assert reported[rel] == pytest.approx(result.score, abs=2e-6), rel
            labels.append(sample.label)
            scores.append(result.score)
            masks.append(read_mask(sample, image.shape[:2]) if sample.mask else np.zeros(image.shape[:2], bool))
            maps.append(result.anomaly_map)
        assert entry["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
        precision, recall, _ = precision_recall_curve(labels, scores)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        assert entry["image_f1_max"] == pytest.approx(f1.max(), abs=1e-9)
        exact = pixel_metrics_exact(masks, maps)
        for metric in ("pixel_auroc", "aupro", "pixel_f1_max"):
            assert entry[metric] == pytest.approx(getattr(exact, metric), abs=1e-3), (category.name, metric)
        # the tiny expert localises the synthetic defects (0.97..0.995 pixel AUROC, 0.92..0.98 AUPRO when
        # written): a broken map (stitching, ROI offset, resize, mask alignment) falls far below these floors
        assert entry["pixel_auroc"] >= 0.95 and entry["aupro"] >= 0.85, (category.name, entry)


def test_eval_16bit_images_score_like_8bit(tiny_recipe_path, eval_dataset_dir, eval_dataset_16bit_dir, tmp_path):
    """16-bit PNGs (8-bit values × 257) must give the same scores as the 8-bit originals."""
    assert cv2.imread(str(next((eval_dataset_16bit_dir / "part_gray/test/good").iterdir())), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    for data, out in ((eval_dataset_dir, tmp_path / "r8"), (eval_dataset_16bit_dir, tmp_path / "r16")):
        assert _eval(str(tiny_recipe_path), str(data), "--out", str(out), "--categories", "part_gray,part_odd") == 0
    s8, s16 = _scores(tmp_path / "r8/scores.csv"), _scores(tmp_path / "r16/scores.csv")
    assert s8.keys() == s16.keys() and len(s8) == 2 * EVAL_TEST
    for key in s8:
        assert s16[key] == pytest.approx(s8[key], abs=1e-6)
    doc = json.loads((tmp_path / "r16/metrics.json").read_text())
    assert list(doc["categories"]) == ["part_gray", "part_odd"]


def test_eval_shots_and_seeds(tiny_recipe_path, eval_dataset_dir, tmp_path):
    out = tmp_path / "few"
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out), "--categories", "part_color",
                 "--shots", "2", "--seeds", "2", "--seed", "5") == 0
    entry = json.loads((out / "metrics.json").read_text())["categories"]["part_color"]
    assert entry["n_train"] == 2 and entry["n_train_available"] == 4
    assert [r["seed"] for r in entry["runs"]] == [5, 6]
    for metric in METRICS:
        assert entry[metric] == pytest.approx(np.mean([r[metric] for r in entry["runs"]]), abs=1e-5)
        assert entry["std"][metric] >= 0.0
    with open(out / "scores_all_seeds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({r["seed"] for r in rows}) == ["5", "6"] and len(rows) == 2 * EVAL_TEST


def test_eval_shots_sampling_is_seeded():
    from edge.evaluation.datasets import Category
    from edge.evaluation.runner import train_subset

    category = Category("c", [Path(f"{i}.png") for i in range(10)], [])
    assert train_subset(category, 3, 1) == train_subset(category, 3, 1)
    assert len({tuple(train_subset(category, 3, s)) for s in range(6)}) > 1
    assert train_subset(category, None, 0) == category.train


def _visa_from_mvtec(mvtec: Path, root: Path, category: str) -> None:
    """Rewrite one MVTec category as a VisA folder with split_csv/1cls.csv (same image files)."""
    import shutil

    shutil.copytree(mvtec / category, root / category)
    rows = ["object,split,label,image,mask"]
    for p in sorted((root / category / "train/good").iterdir()):
        rows.append(f"{category},train,normal,{p.relative_to(root).as_posix()},")
    for p in sorted((root / category / "test").rglob("*.png")):
        rel = p.relative_to(root).as_posix()
        if p.parent.name == "good":
            rows.append(f"{category},test,normal,{rel},")
        else:
            mask = (root / category / "ground_truth" / p.parent.name / f"{p.stem}_mask.png").relative_to(root).as_posix()
            rows.append(f"{category},test,anomaly,{rel},{mask}")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")


def test_eval_visa_csv_matches_mvtec_layout(tiny_recipe_path, eval_dataset_dir, tmp_path):
    visa = tmp_path / "visa"
    _visa_from_mvtec(eval_dataset_dir, visa, "part_odd")
    assert _eval(str(tiny_recipe_path), str(visa), "--out", str(tmp_path / "rv")) == 0
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(tmp_path / "rm"), "--categories", "part_odd") == 0
    dv = json.loads((tmp_path / "rv/metrics.json").read_text())
    dm = json.loads((tmp_path / "rm/metrics.json").read_text())
    assert dv["dataset_format"] == "visa" and dm["dataset_format"] == "mvtec"
    for metric in METRICS:
        assert dv["categories"]["part_odd"][metric] == pytest.approx(dm["categories"]["part_odd"][metric], abs=1e-6)


def test_eval_compare_prints_deltas(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    out = tmp_path / "a"
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out), "--categories", "part_gray") == 0
    doc = json.loads((out / "metrics.json").read_text())
    doc["categories"]["part_gray"]["aupro"] = doc["categories"]["part_gray"]["aupro"] - 0.125
    doc["mean"]["aupro"] = doc["categories"]["part_gray"]["aupro"]
    (tmp_path / "b.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["eval", "--compare", str(out / "metrics.json"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    aupro_lines = [line for line in text.splitlines() if " aupro " in f" {line} "]
    assert len(aupro_lines) == 2  # part_gray and mean
    assert all(line.split()[-1] == "-12.5" for line in aupro_lines)
    assert any(line.split()[0] == "part_gray" and line.split()[-1] == "+0.0" for line in text.splitlines()
               if "image_auroc" in line)


def test_eval_compare_bad_file(tmp_path, capsys):
    (tmp_path / "a.json").write_text("{not json")
    assert main(["eval", "--compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert "a.json:1:2: not valid JSON" in err


def test_eval_compare_warns_when_runs_differ():
    from edge.evaluation.compare import comparability_notes, compare_rows

    a = {"dataset": "d", "shots": None, "categories": {"x": {"aupro": 0.5}}, "mean": {"aupro": 0.5}}
    b = {"dataset": "d", "shots": 4, "categories": {"y": {"aupro": 0.7}}, "mean": {"aupro": 0.7}}
    notes = comparability_notes(a, b)
    assert any("different categories" in n for n in notes) and any("--shots" in n for n in notes)
    rows = {(r[0], r[1]): r[2:] for r in compare_rows(a, b)}
    assert rows[("x", "aupro")] == ["50.0", "-", "n/a"]
    assert rows[("y", "aupro")] == ["-", "70.0", "n/a"]
    assert rows[("mean", "aupro")] == ["50.0", "70.0", "+20.0"]
    assert rows[("mean", "image_auroc")] == ["n/a", "n/a", "n/a"]
    assert comparability_notes(a, a) == []


def test_eval_seeds_without_shots_runs_once(tiny_recipe_path, eval_dataset_dir, tmp_path):
    """Without --shots every seed would build the same bank: one run, no std, no per-seed CSV."""
    out = tmp_path / "once"
    assert _eval(str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out), "--categories", "part_gray",
                 "--seeds", "3") == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["seeds"] == [0] and "std" not in doc["categories"]["part_gray"]
    assert not (out / "scores_all_seeds.csv").exists()
