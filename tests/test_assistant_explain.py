"""Grounded explanations with a real llama.cpp on the tiny Qwen2 GGUF from our own export step."""

from __future__ import annotations

import json

import pytest

from edge.assistant.evidence import LOCATIONS, region_evidence
from edge.assistant.explain import KNOWN_TYPES, SEVERITIES, Explainer, Explanation, ExplanationError, answer_schema
from edge.cli import main
from edge.config import load_recipe
from edge.imageio import read_image
from edge.inspector import Inspector

EXPLAIN_REGION = {"bbox": [40, 12, 90, 30], "area_px": 420, "centroid": [65.0, 21.0], "peak": 0.41, "mean": 0.22,
                  "location": "top", "rejects": True}


def _evidence(candidates=None):
    return region_evidence(EXPLAIN_REGION, 0, 0.33, {"pixel": 0.15, "image_score": 0.17}, candidates or [], (224, 224))


def test_explain_cli_writes_schema_valid_json_grounded_on_the_regions(assistant_recipe_path, assistant_ng_image, tiny_gguf_path, tmp_path, capsys) -> None:
    recipe = assistant_recipe_path()
    out = tmp_path / "explained.json"
    assert main(["explain", str(recipe), str(assistant_ng_image), "--model", str(tiny_gguf_path), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    regions = doc["inspection"]["regions"]
    assert doc["inspection"]["verdict"] == "NG" and regions, "the tiny expert must flag the scratch"
    assert len(doc["explanations"]) == min(len(regions), 4)
    for i, exp in enumerate(doc["explanations"]):
        Explanation.model_validate(exp)  # the published schema
        assert exp["source"] == "model", f"the grammar-constrained answer did not parse: {exp.get('raw')!r}"
        assert exp["location"] == regions[i]["location"] and exp["bbox"] == regions[i]["bbox"]
        assert exp["defect_type"] in (*KNOWN_TYPES, "unknown") and exp["severity"] in SEVERITIES
        assert exp["candidates"] == []  # no prototypes in this recipe: nothing invented
        assert isinstance(exp["description"], str) and exp["finish"] == "stop"
    assert "1 region" in capsys.readouterr().out or len(regions) != 1


def test_explainer_answer_is_constrained_and_reproducible(tiny_gguf_path) -> None:
    explainer = Explainer(tiny_gguf_path, n_ctx=1024, max_tokens=512)
    try:
        cands = [{"type": "dent", "similarity": 0.91}, {"type": "stain", "similarity": 0.42}]
        a = explainer.explain(_evidence(cands))
        b = explainer.explain(_evidence(cands))
    finally:
        explainer.close()
    assert a["source"] == "model"
    assert {k: a[k] for k in ("defect_type", "severity", "description", "evidence")} == \
           {k: b[k] for k in ("defect_type", "severity", "description", "evidence")}  # greedy: same answer
    assert a["location"] == "top" and a["bbox"] == EXPLAIN_REGION["bbox"]
    assert a["candidates"] == cands
    schema = answer_schema(["dent", "stain", *KNOWN_TYPES])  # candidates first, then the known types
    assert a["defect_type"] in schema["properties"]["defect_type"]["enum"]
    assert schema["properties"]["defect_type"]["enum"][:2] == ["dent", "stain"]
    assert len(a["description"]) <= schema["properties"]["description"]["maxLength"]


def test_explainer_pauses_between_tokens_while_the_lane_is_busy(tiny_gguf_path) -> None:
    calls = {"n": 0}

    def busy() -> bool:  # busy for the first 50 checks, then idle: the answer must still complete
        calls["n"] += 1
        return calls["n"] <= 50

    explainer = Explainer(tiny_gguf_path, n_ctx=1024, max_tokens=512, should_pause=busy)
    try:
        exp = explainer.explain(_evidence())
    finally:
        explainer.close()
    assert calls["n"] > 50  # it kept asking between tokens, and waited while told to
    assert exp["source"] == "model" and exp["finish"] == "stop"


def test_explainer_budget_cuts_off_and_falls_back_grounded(tiny_gguf_path) -> None:
    explainer = Explainer(tiny_gguf_path, n_ctx=1024, max_tokens=512, budget_s=1.0, should_pause=lambda: True)
    try:
        exp = explainer.explain(_evidence([{"type": "crack", "similarity": 0.7}]))
    finally:
        explainer.close()
    Explanation.model_validate(exp)
    assert exp["finish"] == "budget" and exp["source"] == "fallback"
    assert exp["defect_type"] == "crack"  # the top candidate, not an invention
    assert exp["location"] == "top" and exp["bbox"] == EXPLAIN_REGION["bbox"]


def test_explain_cli_bad_model_is_a_clear_error_and_writes_nothing(assistant_recipe_path, assistant_ng_image, tmp_path, capsys) -> None:
    recipe = assistant_recipe_path()
    out = tmp_path / "never.json"
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a model")
    assert main(["explain", str(recipe), str(assistant_ng_image), "--model", str(bad), "--out", str(out)]) == 1
    assert "not a GGUF file" in capsys.readouterr().err and not out.exists()
    assert main(["explain", str(recipe), str(assistant_ng_image), "--model", str(tmp_path / "missing.gguf"), "--out", str(out)]) == 1
    assert "GGUF model file not found" in capsys.readouterr().err and not out.exists()


def test_explainer_missing_mmproj_is_a_clear_error(tiny_gguf_path, tmp_path) -> None:
    with pytest.raises(ExplanationError, match="mmproj .*not found"):
        Explainer(tiny_gguf_path, mmproj=tmp_path / "mmproj.gguf")


def test_explanations_match_regions_of_a_real_inspection(assistant_recipe_path, assistant_ng_image, tiny_gguf_path) -> None:
    recipe = load_recipe(assistant_recipe_path())
    result = Inspector.from_recipe(recipe).inspect(read_image(assistant_ng_image))
    explainer = Explainer.from_config(recipe.assistant)
    try:
        for i, region in enumerate(result.regions[:2]):
            exp = explainer.explain(region_evidence(region, i, result.score, {"pixel": 0.15}))
            assert exp["location"] == region.location in LOCATIONS
            assert exp["bbox"] == [int(v) for v in region.bbox]
    finally:
        explainer.close()


def test_explain_cli_with_a_vlm_sends_crop_and_overlay_and_stays_grounded(assistant_recipe_path, assistant_ng_image, tiny_vl_gguf_dir, tmp_path) -> None:
    model = tiny_vl_gguf_dir / "tiny-qwen2-vl-Q8_0.gguf"
    mmproj = tiny_vl_gguf_dir / "mmproj-tiny-qwen2-vl-f16.gguf"
    recipe = assistant_recipe_path(n_ctx=2048, max_regions=1)
    out = tmp_path / "vl.json"
    assert main(["explain", str(recipe), str(assistant_ng_image), "--model", str(model), "--mmproj", str(mmproj),
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["mmproj"] == str(mmproj)
    region = doc["inspection"]["regions"][0]
    exp = doc["explanations"][0]
    Explanation.model_validate(exp)
    assert exp["source"] == "model" and exp["location"] == region["location"] and exp["bbox"] == region["bbox"]


def test_region_images_are_a_crop_and_its_mask_overlay(assistant_recipe_path, assistant_ng_image) -> None:
    import numpy as np

    from edge.assistant.evidence import png_data_uri, region_images

    recipe = load_recipe(assistant_recipe_path())
    image = read_image(assistant_ng_image)
    result = Inspector.from_recipe(recipe).inspect(image)
    crop, overlay = region_images(image, result.anomaly_map, result.regions[0], recipe.thresholds.pixel)
    x0, y0, x1, y1 = result.regions[0].bbox
    assert crop.shape == overlay.shape and crop.shape[0] >= min(64, image.shape[0]) and crop.shape[1] >= x1 - x0
    assert (overlay != crop).any() and np.array_equal(overlay[..., 2] >= crop[..., 2], np.ones(crop.shape[:2], bool))
    assert png_data_uri(crop).startswith("data:image/png;base64,")


def test_prompt_evaluation_yields_in_chunks_and_gives_the_same_answer(tiny_gguf_path) -> None:
    """The prompt is evaluated 16 tokens at a time with a busy check between chunks; the answer is unchanged."""
    from edge.assistant.explain import PREFILL_CHUNK_TOKENS

    checks: list[int] = []
    yielding = Explainer(tiny_gguf_path, n_ctx=1024, max_tokens=512, should_pause=lambda: checks.append(1) and False)
    plain = Explainer(tiny_gguf_path, n_ctx=1024, max_tokens=512)
    try:
        ev = _evidence([{"type": "dent", "similarity": 0.91}])
        a, b = yielding.explain(ev), plain.explain(ev)
        prompt_tokens = len(plain.llm.tokenize(json.dumps(ev).encode()))
    finally:
        yielding.close()
        plain.close()
    assert {k: a[k] for k in ("defect_type", "severity", "description")} == {k: b[k] for k in ("defect_type", "severity", "description")}
    # one check per generated token, plus one per prompt chunk (the prompt holds the evidence and more)
    assert len(checks) >= a["tokens"] + prompt_tokens // PREFILL_CHUNK_TOKENS
