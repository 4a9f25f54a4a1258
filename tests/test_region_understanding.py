"""What the trained tiny model understands from region tokens: `iad-edge eval --understanding` on held-out
synthetic parts, and explanations that keep the mask's geometry beside the model's own claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")
# the first test that needs the session's trained projector pays its training (minutes on a loaded 2-core machine)
pytestmark = pytest.mark.timeout(1800)


def _recipe_with_assistant(folder: Path, region_bundle: dict[str, Path]) -> Path:
    recipe = yaml.safe_load(region_bundle["recipe"].read_text())
    recipe["assistant"] = {"model": str(region_bundle["gguf"]), "projector": str(region_bundle["dir"] / "projector.json"),
                           "threads": 2, "spool": str(folder / "spool")}
    recipe["bank"] = {"path": str(folder / "bank.npz")}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def heldout_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic parts never seen in training: 60 defective parts of another product look (seed 8), 448x448."""
    from export.projector import write_part_dataset

    out = tmp_path_factory.mktemp("heldout") / "parts"
    write_part_dataset(out, 60, seed=8, width=448, height=448)
    return out


def test_eval_understanding_grounding_decides(tmp_path: Path, region_bundle: dict[str, Path], heldout_parts: Path) -> None:
    recipe = _recipe_with_assistant(tmp_path, region_bundle)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "eval", str(recipe), str(heldout_parts), "--understanding",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    u = json.loads((out / "metrics.json").read_text())["understanding"]
    assert u["predicted"]["n"] == u["oracle"]["n"] == u["ablation"]["n"] == 60
    print(json.dumps({c: u[c] for c in ("predicted", "oracle", "ablation")}))
    # 60 parts of a look never trained on (seed 8). Measured 2026-12-02 with training seeds 0 / 1 / 2 (the fixture
    # uses 0): predicted location 0.88 / 0.90 / 0.93, oracle 0.92 / 0.97 / 0.93, ablation 0.08 / 0.15 / 0.17,
    # predicted type 0.92 / 0.83 / 0.87, oracle type 0.97 / 0.93 / 0.97. Type meets the 0.80; location
    # reaches 0.90 for two of three seeds (see test_trained_tiny_model_reads_the_region_tokens for why).
    assert u["predicted"]["location_accuracy"] >= 0.85
    assert u["oracle"]["location_accuracy"] - u["predicted"]["location_accuracy"] <= 0.07
    assert u["ablation"]["location_accuracy"] <= 0.35
    assert u["predicted"]["type_accuracy"] >= 0.80 and u["oracle"]["type_accuracy"] >= 0.90
    report = (out / "report.md").read_text()
    assert "| ablation: no region tokens |" in report and "Matching:" in report
    assert len(json.loads((out / "understanding_answers.json").read_text())) == 60


def test_eval_understanding_unknown_types_are_null(tmp_path: Path, region_bundle: dict[str, Path], heldout_parts: Path) -> None:
    import shutil

    data = tmp_path / "renamed"
    shutil.copytree(heldout_parts / "part", data / "part")
    for sub in ("test", "ground_truth"):
        (data / "part" / sub / "scratch").rename(data / "part" / sub / "gouge")
    for sub in ("test", "ground_truth"):
        for kind in ("spot", "crack", "missing"):
            shutil.rmtree(data / "part" / sub / kind)
    recipe = _recipe_with_assistant(tmp_path, region_bundle)
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "eval", str(recipe), str(data), "--understanding",
                           "--out", str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    u = json.loads((tmp_path / "r" / "metrics.json").read_text())["understanding"]
    assert u["predicted"]["type_accuracy"] is None and u["predicted"]["location_accuracy"] is not None


def test_eval_understanding_needs_masks_and_a_projector(tmp_path: Path, region_bundle: dict[str, Path],
                                                        heldout_parts: Path) -> None:
    import shutil

    data = tmp_path / "nomask"
    shutil.copytree(heldout_parts / "part", data / "part")
    victim = sorted((data / "part" / "ground_truth" / "spot").iterdir())[0]
    victim.unlink()
    recipe = _recipe_with_assistant(tmp_path, region_bundle)
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "eval", str(recipe), str(data), "--understanding",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 1 and "mask" in proc.stderr and victim.stem.replace("_mask", "") in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    plain = yaml.safe_load(recipe.read_text())
    del plain["assistant"]["projector"]
    recipe.write_text(yaml.safe_dump(plain))
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "eval", str(recipe), str(heldout_parts), "--understanding",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 1 and "assistant.projector" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_explanation_keeps_the_mask_and_flags_a_contradiction(tmp_path: Path, region_bundle: dict[str, Path],
                                                              heldout_parts: Path) -> None:
    """The lane's region says top-left; the region tokens (from the real region) say otherwise: flagged and counted."""
    from edge.assistant.process import AssistantService, Job
    from edge.assistant.region_explain import RegionExplainer
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.expert.manifest import manifest_path_for
    from edge.imageio import read_image
    from edge.inspector import Inspector

    recipe = load_recipe(_recipe_with_assistant(tmp_path, region_bundle))
    cat = heldout_parts / "part"
    inspector = Inspector.from_recipe(recipe, load_bank=False)
    inspector.set_bank(build_bank(inspector.expert, (read_image(p) for p in sorted((cat / "train" / "good").iterdir())),
                                  recipe, progress=False, total=10))
    image = None
    for path in sorted((cat / "test").glob("*/*.png")):
        if path.parent.name == "good":
            continue
        result = inspector.inspect(read_image(path))
        if result.regions and result.regions[0].location not in ("top-left", "top", "left"):
            image, region = read_image(path), result.regions[0]
            break
    assert image is not None
    explainer = RegionExplainer(region_bundle["gguf"], region_bundle["dir"], manifest_path_for(recipe.expert.model), threads=2)
    service = AssistantService(recipe, explainer=explainer, inspector=inspector)
    service._job_image = lambda job, wait_s=2.0: image  # the NG frame the lane would have spooled
    published: list[dict] = []
    service._publish = lambda topic, body, retain: published.append(body)
    body = {"trigger_id": 1, "verdict": "NG", "score": 0.5, "regions": [region.to_json()]}
    true_msg = service.explain_job(Job("explain", "1", body))
    lied = dict(region.to_json(), location="top-left")
    msg = service.explain_job(Job("explain", "2", dict(body, trigger_id=2, regions=[lied])))
    explainer.close()
    honest = true_msg["explanations"][0]
    assert honest["location"] == region.location and honest["model_location"] in (
        "top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")
    exp = msg["explanations"][0]
    assert exp["location"] == "top-left" and exp["bbox"] == region.bbox  # authoritative geometry: never overwritten
    assert exp["model_location"] == honest["model_location"]  # the model read the same tokens
    assert exp["consistent"] is (exp["model_location"] == "top-left")
    assert service.counters["contradictions"] + service.counters["consistent"] == 2
    assert service.counters["contradictions"] >= 1
    assert np.isfinite(exp["elapsed_ms"])
