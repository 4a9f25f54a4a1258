"""INT8 and FP16 experts: made by `iad-export quantize`, loaded through the normal runtime path, refused without fidelity."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from edge.bank import build_bank
from edge.config import load_recipe
from edge.errors import ModelLoadError
from edge.expert import load_expert
from edge.inspector import Inspector
from export.cli import main as export_main
from tests.fixtures.expert import synthetic_frames, write_recipe

PARTS = 60
AGREEMENT = 0.98


def _recipe(folder: Path, expert_dir: Path, backend: str = "onnxruntime", name: str = "recipe.yaml") -> Path:
    """The tiny expert's test recipe, with ``expert.backend`` set (the OpenVINO section has no providers)."""
    path = write_recipe(folder, expert_dir, name=name)
    if backend != "onnxruntime":
        recipe = yaml.safe_load(path.read_text())
        recipe["expert"] = {"backend": backend, "model": str(expert_dir / "expert.onnx"), "threads": 2}
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _verdicts(folder: Path, expert_dir: Path, parts: list, backend: str = "onnxruntime") -> tuple[list[str], Inspector]:
    recipe = load_recipe(_recipe(folder, expert_dir, backend))
    inspector = Inspector.from_recipe(recipe, load_bank=False)
    good = synthetic_frames(12, defect=None, start=1000)  # the same good parts for every precision's own bank
    inspector.set_bank(build_bank(inspector.expert, (f.image for f in good), recipe, progress=False))
    return [inspector.inspect(f.image).verdict for f in parts], inspector


@pytest.mark.parametrize(("variant", "backend"), [("int8", "onnxruntime"), ("fp16", "onnxruntime"),
                                                  ("int8_openvino", "openvino")])
def test_reduced_precision_verdicts_agree_with_fp32(tmp_path: Path, precision_experts: dict[str, Path], variant: str,
                                                    backend: str) -> None:
    parts = synthetic_frames(PARTS, seed=3, defect_rate=0.5)  # the product look of the bank (seed 3)
    (tmp_path / "fp32").mkdir()
    (tmp_path / variant).mkdir()
    reference, _ = _verdicts(tmp_path / "fp32", precision_experts["fp32"], parts)  # FP32 on ONNX Runtime
    got, inspector = _verdicts(tmp_path / variant, precision_experts[variant], parts, backend)
    precision = variant.split("_")[0]
    assert inspector.expert.manifest["precision"] == precision  # the reduced graph really is the one loaded
    if backend == "openvino":
        assert type(inspector.expert).__name__ == "OpenVinoExpert"
        assert inspector.expert.providers[0].startswith("OpenVINO CPU")
    else:
        assert inspector.expert.providers[0] == "CPUExecutionProvider"
    assert {"OK", "NG"} <= set(reference), f"the FP32 verdicts must contain both classes to compare: {set(reference)}"
    agree = sum(a == b for a, b in zip(reference, got)) / len(parts)
    assert agree >= AGREEMENT, f"{variant} ({backend}) agrees with FP32 on {agree:.1%} of {len(parts)} parts"


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


def test_int8_linear_layers_all_take_integer_activations(precision_experts: dict[str, Path]) -> None:
    """Every weight MatMul of the ORT INT8 backbone gets a quantised activation too (U8S8 integer GEMM).

    The fused attention's output once had no declared type, the quantiser skipped it, and the 12 output
    projections ran as weight-only MatMulNBits with float activations (12 % of an INT8 run at 448 px).
    """
    model = onnx.load(str(precision_experts["int8"] / "expert.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {i.name for i in model.graph.initializer}
    weight_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in producer
                      and producer[n.input[1]].op_type == "DequantizeLinear" and producer[n.input[1]].input[0] in weights]
    assert any(n.op_type == "MultiHeadAttention" for n in model.graph.node)
    assert len(weight_matmuls) >= 4 * 2  # q, k, v, output projection and two MLP layers in each of the 2 blocks
    float_inputs = [n.name for n in weight_matmuls if producer.get(n.input[0]) is None
                    or producer[n.input[0]].op_type != "DequantizeLinear"]
    assert not float_inputs, f"weight MatMuls with a float activation (not quantised): {float_inputs}"


def test_openvino_int8_manifest_records_runtime(precision_experts: dict[str, Path]) -> None:
    manifest = json.loads((precision_experts["int8_openvino"] / "manifest.json").read_text())
    quantization = manifest["quantization"]
    assert manifest["precision"] == "int8" and quantization["runtime"] == "openvino"
    assert quantization["inference_precision"] in ("bf16", "f32") and quantization["openvino"]
    assert quantization["attention_fused"] == 0  # plain ONNX attention: the ORT contrib op is not in this graph
    assert quantization["attention_matmuls"] == quantization["inference_precision"]
    assert manifest["fidelity"]["measured_on"].startswith("OpenVINO CPU")
    model = onnx.load(str(precision_experts["int8_openvino"] / "expert.onnx"))
    assert not [n for n in model.graph.node if n.domain == "com.microsoft"]
    ort_manifest = json.loads((precision_experts["int8"] / "manifest.json").read_text())
    assert ort_manifest["quantization"]["runtime"] == "onnxruntime"
    assert ort_manifest["fidelity"]["measured_on"] == "ONNX Runtime CPU"


def test_openvino_backend_runs_fp32_graph_like_onnxruntime(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    """An FP32 export on the OpenVINO backend runs in FP32 (no fidelity record to allow less) and matches ORT."""
    ov_expert = load_expert(load_recipe(_recipe(tmp_path, precision_experts["fp32"], "openvino")).expert)
    ort_expert = load_expert(load_recipe(_recipe(tmp_path, precision_experts["fp32"], name="ort.yaml")).expert)
    assert ov_expert.providers == ["OpenVINO CPU (f32)"]
    tiles = np.stack([f.image[:, :, ::-1] for f in synthetic_frames(3, seed=5)])
    tiles = np.ascontiguousarray(tiles[:, :: 224 // ov_expert.resolution, :: 224 // ov_expert.resolution])
    bank = np.random.default_rng(0).standard_normal((50, ov_expert.feature_dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    for expert in (ov_expert, ort_expert):
        expert.set_bank(bank)
    (d_ov, f_ov), (d_ort, f_ort) = ov_expert.run(tiles), ort_expert.run(tiles)
    assert d_ov.shape == d_ort.shape and f_ov.shape == f_ort.shape
    assert float(np.abs(d_ov - d_ort).max()) < 1e-3 and float(np.abs(f_ov - f_ort).max()) < 1e-3
    ov_expert.close()


def test_openvino_backend_refuses_graph_made_for_onnxruntime(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    recipe = load_recipe(_recipe(tmp_path, precision_experts["int8"], "openvino"))
    with pytest.raises(ModelLoadError, match=r"int8 expert was made and measured for onnxruntime.*--runtime openvino"):
        load_expert(recipe.expert)


def test_openvino_backend_refuses_poor_fidelity(tmp_path: Path, precision_experts: dict[str, Path]) -> None:
    poor = _copy_with_manifest(precision_experts["int8_openvino"], tmp_path / "poor",
                               lambda m: m["fidelity"].update(score_spearman=0.9))
    with pytest.raises(ModelLoadError, match=r"score_spearman = 0\.9.*expert.min_fidelity wants >= 0\.99"):
        load_expert(load_recipe(_recipe(tmp_path, poor, "openvino")).expert)


def test_quantize_cli_runtime_openvino_is_int8_only(tmp_path: Path, tiny_expert_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = export_main(["quantize", "--model", str(tiny_expert_dir), "--out", str(out), "--fp16", "--runtime", "openvino",
                      "--synthetic", "8"])
    err = capsys.readouterr().err
    assert rc == 1 and "--runtime openvino applies to --int8 only" in err and "Traceback" not in err
    assert not out.exists()


def test_openvino_backend_without_the_package_says_how_to_install(tmp_path: Path, precision_experts: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what a station without the extra sees
    recipe = load_recipe(_recipe(tmp_path, precision_experts["int8_openvino"], "openvino"))
    with pytest.raises(ModelLoadError, match=r"needs the openvino package: pip install 'iad-edge\[openvino\]'"):
        load_expert(recipe.expert)
