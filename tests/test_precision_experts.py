"""INT8 and FP16 experts: made by `iad-export quantize`, loaded through the normal runtime path, refused without fidelity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.bank import build_bank
from edge.config import load_recipe
from edge.errors import ModelLoadError
from edge.expert import load_expert
from edge.inspector import Inspector
from export.cli import main as export_main
from tests.fixtures.expert import synthetic_frames, write_recipe

PARTS = 60
AGREEMENT = 0.98


def _verdicts(folder: Path, expert_dir: Path, parts: list) -> tuple[list[str], Inspector]:
    recipe = load_recipe(write_recipe(folder, expert_dir))
    inspector = Inspector.from_recipe(recipe, load_bank=False)
    good = synthetic_frames(12, defect=None, start=1000)  # the same good parts for every precision's own bank
    inspector.set_bank(build_bank(inspector.expert, (f.image for f in good), recipe, progress=False))
    return [inspector.inspect(f.image).verdict for f in parts], inspector


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_verdicts_agree_with_fp32(tmp_path: Path, precision_experts: dict[str, Path], precision: str) -> None:
    parts = synthetic_frames(PARTS, seed=3, defect_rate=0.5)  # the product look of the bank (seed 3)
    (tmp_path / "fp32").mkdir()
    (tmp_path / precision).mkdir()
    reference, _ = _verdicts(tmp_path / "fp32", precision_experts["fp32"], parts)
    got, inspector = _verdicts(tmp_path / precision, precision_experts[precision], parts)
    assert inspector.expert.manifest["precision"] == precision  # the reduced graph really is the one loaded
    assert inspector.expert.providers[0] == "CPUExecutionProvider"
    assert {"OK", "NG"} <= set(reference), f"the FP32 verdicts must contain both classes to compare: {set(reference)}"
    agree = sum(a == b for a, b in zip(reference, got)) / len(parts)
    assert agree >= AGREEMENT, f"{precision} agrees with FP32 on {agree:.1%} of {len(parts)} parts"


def test_manifest_records_quantisation_and_fidelity(precision_experts: dict[str, Path]) -> None:
    int8 = json.loads((precision_experts["int8"] / "manifest.json").read_text())
    fp16 = json.loads((precision_experts["fp16"] / "manifest.json").read_text())
    source = json.loads((precision_experts["fp32"] / "manifest.json").read_text())
    assert int8["precision"] == "int8" and fp16["precision"] == "fp16"
    assert int8["quantization"]["format"] == "QDQ" and "per output channel" in int8["quantization"]["weights"]
    assert int8["derived_from"]["model_sha256"] == source["files"]["expert.onnx"]["sha256"]
    assert len(int8["quantization"]["calibration"]["sha256"]) == 64
    # the same calibration images give the same hash for both graphs
    assert int8["quantization"]["calibration"]["sha256"] == fp16["quantization"]["calibration"]["sha256"]
    for manifest in (int8, fp16):
        fidelity = manifest["fidelity"]
        for key in ("max_abs_distance_error", "mean_abs_distance_error", "distance_correlation", "score_spearman"):
            assert isinstance(fidelity[key], float), key
        assert 0.0 <= fidelity["mean_abs_distance_error"] <= fidelity["max_abs_distance_error"]
        assert fidelity["eval_tiles"] == 3 * fidelity["holdout_tiles"] > 0
    assert fp16["fidelity"]["max_abs_distance_error"] < int8["fidelity"]["max_abs_distance_error"]


def _copy_with_manifest(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_missing_fidelity_is_refused(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    bad = _copy_with_manifest(precision_experts["int8"], tmp_path / "nofid", lambda m: m.pop("fidelity"))
    recipe = load_recipe(write_recipe(tmp_path, bad))
    with pytest.raises(ModelLoadError, match=r"int8 expert without a 'fidelity' record is refused.*iad-export quantize"):
        load_expert(recipe.expert)


def test_missing_fidelity_figure_is_refused(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    bad = _copy_with_manifest(precision_experts["fp16"], tmp_path / "nocorr",
                              lambda m: m["fidelity"].pop("score_spearman"))
    recipe = load_recipe(write_recipe(tmp_path, bad))
    with pytest.raises(ModelLoadError, match="fidelity.score_spearman is missing"):
        load_expert(recipe.expert)


def test_fidelity_worse_than_recipe_tolerance_is_refused(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    poor = _copy_with_manifest(precision_experts["int8"], tmp_path / "poor",
                               lambda m: m["fidelity"].update(distance_correlation=0.97))
    recipe = load_recipe(write_recipe(tmp_path, poor))
    with pytest.raises(ModelLoadError, match=r"distance_correlation = 0\.97.*expert.min_fidelity wants >= 0\.995"):
        load_expert(recipe.expert)
    # the same graph with its real figures loads, and a stricter recipe than they meet refuses it
    good_recipe = load_recipe(write_recipe(tmp_path, precision_experts["int8"], name="ok.yaml"))
    assert load_expert(good_recipe.expert).manifest["precision"] == "int8"
    measured = json.loads((precision_experts["int8"] / "manifest.json").read_text())["fidelity"]
    strict = write_recipe(tmp_path, precision_experts["int8"], name="strict.yaml", overrides={
        "expert": {"min_fidelity": {"max_distance_error": measured["max_abs_distance_error"] / 2}}})
    with pytest.raises(ModelLoadError, match="max_abs_distance_error"):
        load_expert(load_recipe(strict).expert)


def test_quantize_cli_writes_int8_expert(tmp_path: Path, tiny_expert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8"
    rc = export_main(["quantize", "--model", str(tiny_expert_dir), "--out", str(out), "--int8", "--synthetic", "8"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "fidelity vs FP32: patch-distance correlation" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]["calibration"]["images"] == 8


def test_quantize_cli_bad_input_one_line(tmp_path: Path, tiny_expert_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = export_main(["quantize", "--model", str(tmp_path / "nowhere"), "--out", str(out), "--synthetic", "8"])
    err = capsys.readouterr().err
    assert rc == 1 and "does not exist" in err and "Traceback" not in err
    rc = export_main(["quantize", "--model", str(tiny_expert_dir), "--out", str(out), "--synthetic", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and "--synthetic needs at least 4 images" in err
    assert not out.exists()
