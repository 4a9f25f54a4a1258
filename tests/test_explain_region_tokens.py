"""`iad-edge explain` on a recipe with assistant.projector: the assistant service's region-token path, end to end
(the trained tiny Qwen3.5 + projector of the session, a synthetic NG part), and its refusals of bad inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")
# the first test that needs the session's trained projector pays its training: minutes on a quiet machine, but
# > 30 min measured on the 2-core machine at load average 8-11 (2026-12-02), hence the hour
pytestmark = pytest.mark.timeout(3600)

from edge.assistant.projector import LOCATIONS, SEVERITIES
from edge.cli import main


@pytest.fixture(scope="session")
def explain_case(tmp_path_factory: pytest.TempPathFactory, region_bundle: dict[str, Path]) -> dict[str, Path]:
    """A recipe (the bundle's expert and look, a bank of good parts, assistant model + projector) and
    NG images of synthetic parts of a product look the projector never saw (seed 8), with their defect types."""
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.expert import load_expert
    from edge.imageio import read_image
    from export.projector import write_part_dataset

    root = tmp_path_factory.mktemp("explain-region")
    parts = write_part_dataset(root / "parts", 8, seed=8, width=448, height=448) / "part"
    recipe = yaml.safe_load(region_bundle["recipe"].read_text())
    recipe["bank"] = {"path": str(root / "bank.npz")}
    recipe["assistant"] = {"model": str(region_bundle["gguf"]), "projector": str(region_bundle["dir"] / "projector.json"),
                           "threads": 2, "max_regions": 2, "spool": str(root / "spool")}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    loaded = load_recipe(path)
    goods = sorted((parts / "train" / "good").iterdir())
    build_bank(load_expert(loaded.expert), (read_image(p) for p in goods), loaded, progress=False,
               total=len(goods)).save(root / "bank.npz")
    kinds = sorted(d for d in (parts / "test").iterdir() if d.name != "good")
    images = [sorted(d.glob("*.png"))[0] for d in kinds]  # one part of each synthetic defect type
    return {"recipe": path, "root": root, "images": images}  # type: ignore[dict-item]


def test_explain_uses_region_tokens_and_keeps_the_mask(explain_case, region_bundle, tmp_path, capsys) -> None:
    projector = json.loads((region_bundle["dir"] / "projector.json").read_text())
    consistent, explained = 0, 0
    for image in explain_case["images"]:  # one part of each synthetic type
        out = tmp_path / f"{image.stem}.json"
        assert main(["explain", str(explain_case["recipe"]), str(image), "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        assert doc["projector"] == str(region_bundle["dir"] / "projector.json") and doc["mmproj"] is None
        regions = doc["inspection"]["regions"]
        assert doc["inspection"]["verdict"] == "NG" and regions, f"{image}: the tiny expert must flag the defect"
        assert len(doc["explanations"]) == min(len(regions), 2)
        for i, exp in enumerate(doc["explanations"]):
            assert exp["source"] == "model", exp.get("reason")
            # the mask's geometry, authoritative; the model's claims beside it
            assert exp["location"] == regions[i]["location"] and exp["bbox"] == regions[i]["bbox"]
            assert exp["model_location"] in LOCATIONS and exp["model_severity"] in SEVERITIES
            assert exp["model_defect_type"] in projector["answer"]["defect_types"]
            assert exp["consistent"] is (exp["model_location"] == exp["location"])
            assert exp["region_tokens"] == projector["tokens"]
        first = doc["explanations"][0]
        consistent += first["consistent"]
        explained += 1
        assert doc["contradictions"] == sum(1 for e in doc["explanations"] if not e["consistent"])
        assert f"{doc['contradictions']} contradicting the mask" in capsys.readouterr().out
    # the trained model reads the location from the tokens (held-out accuracy >= 0.85 in test_region_understanding)
    assert consistent >= explained - 1, f"only {consistent} of {explained} strongest regions placed like the mask"


def test_explain_and_the_assistant_service_say_the_same(explain_case, tmp_path) -> None:
    """One path: the claims `iad-edge explain` writes are those the assistant service publishes for the same frame."""
    from edge.assistant.busy_signal import BusySignal
    from edge.assistant.process import AssistantService, Job
    from edge.assistant.region_explain import RegionExplainer, open_explainer
    from edge.config import load_recipe
    from edge.imageio import read_image

    image_path = explain_case["images"][1]
    out = tmp_path / "explained.json"
    assert main(["explain", str(explain_case["recipe"]), str(image_path), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    recipe = load_recipe(explain_case["recipe"])
    explainer = open_explainer(recipe)
    assert isinstance(explainer, RegionExplainer)
    # a busy flag of its own: the default name (line + station) is shared with other test processes' lanes
    busy = BusySignal(f"iad-busy-explain-test-{os.getpid()}")
    service = AssistantService(recipe, explainer=explainer, busy=busy)
    image = read_image(image_path)
    service._job_image = lambda job, wait_s=2.0: image  # the NG frame the lane would have spooled
    try:
        msg = service.explain_job(Job("explain", "1", {"trigger_id": 1, "verdict": "NG", "score": doc["inspection"]["score"],
                                                       "regions": doc["inspection"]["regions"]}))
    finally:
        explainer.close()
        busy.close()
        busy.unlink()
    assert all(e["source"] == "model" for e in msg["explanations"]), msg
    keys = ("location", "bbox", "model_location", "model_defect_type", "model_severity", "consistent")
    assert [{k: e[k] for k in keys} for e in msg["explanations"]] == [{k: e[k] for k in keys} for e in doc["explanations"]]


def _refused(args: list[str], out: Path, capsys) -> str:
    assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("iad-edge explain: error: "), err
    assert not out.exists()
    return err


def _with_assistant(case: dict, tmp_path: Path, **changes) -> Path:
    recipe = yaml.safe_load(Path(case["recipe"]).read_text())
    recipe["assistant"].update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_explain_refuses_a_projector_for_another_expert(explain_case, region_bundle, tmp_path, capsys) -> None:
    other = tmp_path / "other-expert"
    shutil.copytree(region_bundle["expert"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["note"] = "another export"
    (other / "manifest.json").write_text(json.dumps(manifest))
    recipe = yaml.safe_load(Path(explain_case["recipe"]).read_text())
    recipe["expert"]["model"] = str(other / Path(recipe["expert"]["model"]).name)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    err = _refused(["explain", str(path), str(explain_case["images"][0])], tmp_path / "out.json", capsys)
    assert "projector.json" in err and "trained for the expert" in err and "iad-export projector" in err


def test_explain_refuses_a_projector_for_another_llm(explain_case, tiny_gguf_path, tmp_path, capsys) -> None:
    err = _refused(["explain", str(explain_case["recipe"]), str(explain_case["images"][0]), "--model", str(tiny_gguf_path)],
                   tmp_path / "out.json", capsys)
    assert "projector.json" in err and tiny_gguf_path.name in err and "trained for the GGUF" in err


def test_explain_refuses_a_truncated_projector(explain_case, region_bundle, tmp_path, capsys) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("projector.json", "projector.npz"):
        shutil.copy(region_bundle["dir"] / name, bundle / name)
    npz = bundle / "projector.npz"
    npz.write_bytes(npz.read_bytes()[:1000])
    recipe = _with_assistant(explain_case, tmp_path, projector=str(bundle / "projector.json"))
    err = _refused(["explain", str(recipe), str(explain_case["images"][0])], tmp_path / "out.json", capsys)
    assert "projector.npz" in err and "truncated" in err


def test_explain_refuses_a_broken_mmproj_with_a_projector(explain_case, tmp_path, capsys) -> None:
    """An mmproj beside a projector is used (region tokens + crop, tests/test_region_tokens_with_crop.py); a
    broken one is refused before llama.cpp sees it, naming the file."""
    mmproj = tmp_path / "mmproj.gguf"
    mmproj.write_bytes(b"GGUF")
    err = _refused(["explain", str(explain_case["recipe"]), str(explain_case["images"][0]), "--mmproj", str(mmproj)],
                   tmp_path / "out.json", capsys)
    assert str(mmproj) in err and "not a GGUF file" in err
