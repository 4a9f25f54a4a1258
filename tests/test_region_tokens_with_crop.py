"""One prompt with region tokens AND the region's image crop through the mmproj (real llama.cpp, real GGUFs).

``prefix | K region embeddings | image chunk (mtmd) | suffix -> grammar answer`` on one llama_context
(:mod:`edge.assistant.region_mtmd`): positions checked against llama.cpp's own multimodal path, the answer's
dependence on both inputs, the busy-flag wait before the vision encoder, and ``iad-edge explain`` as a user runs it
with ``assistant.projector`` + ``assistant.mmproj``.

One session fixture pays for the models (~40 s on a quiet 2-core machine): a tiny Qwen3.5 VL with wide random
weights (logits far from flat) and a projector trained for it by ``export_projector`` in a few steps on 12
synthetic parts, exported in F32 (text GGUF + mmproj beside it). The projector is there to exercise the product
path, not to be accurate: its claims are whatever the model answers under the grammar.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'iad-edge[assistant]')")

from edge.assistant.projector import LOCATIONS, SEVERITIES
from edge.assistant.region_lm import RegionLM
from edge.assistant.region_mtmd import ImageInput

TEXT = "scratch at the top left"  # injected as its own token-embedding rows in the parity test
STEPS = 4  # greedy answer tokens compared after the prompt
PROJECTOR_CASES = 12  # synthetic defective parts: export_projector needs at least 10
PROJECTOR_EPOCHS = 2  # a few optimiser steps: enough to exercise the path, not to teach the model


def _crop(kind: int) -> np.ndarray:
    """A small BGR crop (96x64: 12 image embeddings on a 4x3 grid, 4 positions under M-RoPE)."""
    import cv2

    img = np.full((64, 96, 3), 60, np.uint8)
    if kind == 0:
        cv2.line(img, (5, 5), (90, 58), (255, 255, 255), 3)  # a "scratch"
    else:
        cv2.circle(img, (48, 32), 14, (0, 0, 200), -1)  # a "spot"
    return img


@pytest.fixture(scope="session")
def crop_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_expert224_dir: Path) -> dict[str, Any]:
    """Projector + F32 text GGUF + mmproj of a tiny Qwen3.5 VL (init std 0.3), a bank and NG parts for explain."""
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.expert import load_expert
    from edge.imageio import read_image
    from export.projector import export_projector, write_part_dataset
    from export.qwen import build_tiny_qwen35_vl
    from tests.fixtures.region import PARITY_INIT_STD, REGION_FRAME, region_recipe

    root = tmp_path_factory.mktemp("region-crop")
    recipe = region_recipe(root, tiny_expert224_dir)
    build_tiny_qwen35_vl(root / "tiny-qwen3.5-vl", init_std=PARITY_INIT_STD)
    out = root / "bundle"
    manifest = export_projector(root / "tiny-qwen3.5-vl", tiny_expert224_dir,
                                [f"synthetic:{PROJECTOR_CASES}:7:{REGION_FRAME}x{REGION_FRAME}"], out, recipe=recipe,
                                train_llm=False, seed=0, epochs=PROJECTOR_EPOCHS, quant="F32", pre_tokenizer="qwen2",
                                threads=1, progress=False)
    files = json.loads((out / "manifest.json").read_text())["files"]
    mmproj = out / next(name for name, entry in files.items() if entry["role"] == "mmproj")
    # the explain recipe: a bank of good parts of another look, and NG parts of it
    parts = write_part_dataset(root / "parts", 2, seed=8, width=REGION_FRAME, height=REGION_FRAME) / "part"
    doc = yaml.safe_load(recipe.read_text())
    doc["bank"] = {"path": str(root / "bank.npz")}
    doc["assistant"] = {"model": str(out / manifest["llm"]["gguf"]), "projector": str(out / "projector.json"),
                        "mmproj": str(mmproj), "threads": 1, "max_regions": 1, "spool": str(root / "spool")}
    explain_recipe = root / "explain.yaml"
    explain_recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = load_recipe(explain_recipe)
    goods = sorted((parts / "train" / "good").iterdir())
    build_bank(load_expert(loaded.expert), (read_image(p) for p in goods), loaded, progress=False,
               total=len(goods)).save(root / "bank.npz")
    images = sorted(p for d in (parts / "test").iterdir() if d.name != "good" for p in d.glob("*.png"))
    return {"dir": out, "gguf": out / manifest["llm"]["gguf"], "mmproj": mmproj, "manifest": manifest,
            "recipe": explain_recipe, "images": images, "expert": tiny_expert224_dir}


def _token_embeddings(gguf_path: Path, ids: list[int]) -> np.ndarray:
    """The model's own input-embedding rows (token_embd of the F32 GGUF, read with the gguf package)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    table = next(t for t in reader.tensors if t.name == "token_embd.weight")
    return np.asarray(table.data, np.float32)[ids]


def _mtmd_reference(lm: RegionLM, images: ImageInput, text: str, crop: np.ndarray, steps: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's own multimodal path on a text prompt with the media marker: mtmd_tokenize +
    mtmd_helper_eval_chunks on the same context, then greedy decoding; (all text token ids, [steps, n_vocab] logits)."""
    import llama_cpp
    import llama_cpp.mtmd_cpp as mt

    rgb = np.ascontiguousarray(crop[:, :, ::-1])
    bitmap = mt.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    chunks = mt.mtmd_input_chunks_init()
    try:
        prompt = mt.mtmd_input_text()
        data = text.encode()
        prompt.text, prompt.text_len, prompt.add_special, prompt.parse_special = data, len(data), False, True
        assert mt.mtmd_tokenize(images.ctx, chunks, ctypes.byref(prompt), (mt.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
        ids: list[int] = []
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(chunk) == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mt.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                ids += [int(ptr[j]) for j in range(n.value)]
        lm.reset()
        new_n_past = llama_cpp.llama_pos(0)
        assert mt.mtmd_helper_eval_chunks(images.ctx, lm.ctx, chunks, 0, 0, lm.n_ctx, True, ctypes.byref(new_n_past)) == 0
        lm.n_past, lm.n_kv = new_n_past.value, int(mt.mtmd_helper_get_n_tokens(chunks))
    finally:
        mt.mtmd_input_chunks_free(chunks)
        mt.mtmd_bitmap_free(bitmap)
    kept = []
    for _ in range(steps):
        kept.append(lm.logits())
        lm._decode([int(np.argmax(kept[-1]))], None, True)
    return ids, np.stack(kept)


class _Advance:
    """A test-only segment that moves the sequence's next position by ``delta`` (a wrong image advance)."""

    def __init__(self, delta: int):
        self.delta = delta

    def prefill_steps(self, lm: RegionLM, chunk: int) -> list:
        return [lambda last: setattr(lm, "n_past", lm.n_past + self.delta)]


def test_injected_embeddings_and_crop_take_the_positions_of_the_mtmd_text_prompt(crop_bundle) -> None:
    """[prefix | E | image | suffix], E = the model's own embedding rows of TEXT, gives the logits of llama.cpp's
    multimodal path on the text prompt [prefix + TEXT | image | suffix]: the injected embeddings and the image
    chunk sit at the right positions relative to each other (and the answer after them too)."""
    prompt = crop_bundle["manifest"]["prompt"]
    lm = RegionLM(crop_bundle["gguf"], n_ctx=512, threads=1)
    images = ImageInput(lm, crop_bundle["mmproj"], threads=1)
    try:
        assert lm.n_pos_per_embd == 4 and images.mrope
        pre, txt, suf = lm.tokenize(prompt["prefix"]), lm.tokenize(TEXT), lm.tokenize(prompt["suffix"])
        assert lm.tokenize(prompt["prefix"] + TEXT) == pre + txt  # same tokens either way: a like-for-like prompt
        embd = _token_embeddings(crop_bundle["gguf"], txt)
        seg = images.segment(_crop(0))
        assert seg.image_tokens == 12 and seg.n_pos < seg.n_tokens  # an M-RoPE image advances by its grid, not its size
        ours = lm.generate([pre, embd, seg, suf], STEPS, keep_logits=True, stop_at_eog=False)
        # the same with the image advancing the sequence by its token count: what a wrong n_past would do
        wrong = lm.generate([pre, embd, seg, _Advance(seg.n_tokens - seg.n_pos), suf], 1, keep_logits=True,
                            stop_at_eog=False)
        wrapper = [t for kind, part in seg.parts if kind == "text" for t in part]
        ref_ids, ref_logits = _mtmd_reference(lm, images, prompt["prefix"] + TEXT + images.marker.decode() + prompt["suffix"],
                                              _crop(0), STEPS)
        seg.close()
    finally:
        images.close()
        lm.close()
    assert ref_ids == pre + txt + wrapper + suf  # <|vision_start|> / <|vision_end|> around the image in both
    diff = float(np.abs(ours["logits"] - ref_logits).max())
    off = float(np.abs(wrong["logits"][0] - ref_logits[0]).max())
    print(f"parity [prefix|E|image|suffix] vs mtmd text prompt, F32: max |dlogit| {diff:.2e} over {STEPS} steps; "
          f"logit std {ref_logits.std():.2f}; image advanced by {seg.n_tokens - seg.n_pos} extra positions: {off:.3f}")
    assert ref_logits.std() > 1.0, "logits too flat for a meaningful comparison"
    assert diff < 1e-3, f"max |logit diff| {diff:.2e}"
    assert off > 100 * max(diff, 1e-5), "a wrong image advance must be visible in the logits"


def test_answer_depends_on_the_crop_and_on_the_region_evidence(crop_bundle) -> None:
    """Through the product's reader (projector + GGUF + mmproj): changing only the crop, or only the region
    evidence, changes the answer's logits."""
    from edge.assistant.region_reader import RegionReader

    reader = RegionReader(crop_bundle["dir"], crop_bundle["gguf"], crop_bundle["expert"] / "manifest.json", n_ctx=512,
                          threads=1, mmproj=crop_bundle["mmproj"])
    try:
        rng = np.random.default_rng(0)
        dim = reader.projector.w1.shape[0]
        ev_a, ev_b = rng.standard_normal(dim).astype(np.float32), rng.standard_normal(dim).astype(np.float32)

        def first_logits(ev: np.ndarray, crop: np.ndarray) -> np.ndarray:
            segments = reader.segments(ev, [crop])
            try:
                return reader.lm.generate(segments, 1, keep_logits=True, stop_at_eog=False)["logits"][0]
            finally:
                segments[2].close()

        base = first_logits(ev_a, _crop(0))
        again = first_logits(ev_a, _crop(0))
        other_crop = first_logits(ev_a, _crop(1))
        other_region = first_logits(ev_b, _crop(0))
        answer = reader.ask(ev_a, images=[_crop(0)])
    finally:
        reader.close()
    print(f"first-answer-token logits: other crop max |d| {np.abs(base - other_crop).max():.3f}, other region evidence "
          f"{np.abs(base - other_region).max():.3f}, same inputs again {np.abs(base - again).max():.1e}")
    assert np.abs(base - again).max() < 1e-4  # deterministic: differences below come from the inputs
    assert np.abs(base - other_crop).max() > 1e-2, "the crop does not reach the answer"
    assert np.abs(base - other_region).max() > 1e-2, "the region tokens do not reach the answer"
    assert answer["claims"] is not None and answer["claims"]["location"] in LOCATIONS  # grammar-valid JSON


def test_busy_flag_is_polled_before_the_image_encoder(crop_bundle) -> None:
    """The lane's busy flag is checked before every prefill step of the image too: before the vision encoder runs
    (the same KV fill twice: encoder, then the image's first decode piece), and the explainer waits there while
    the lane is busy."""
    import time

    from edge.assistant.region_explain import RegionExplainer

    steps: list[int] = []  # the sequence's KV fill at each busy check of the prefill and the answer
    busy_from: list[float] = []
    at: dict[str, int] = {}

    def lane_busy() -> bool:  # a frame arrives just as the assistant reaches the image
        if not busy_from and steps and steps[-1] == at["image"]:
            busy_from.append(time.monotonic())
        return bool(busy_from) and time.monotonic() < busy_from[0] + 0.05

    explainer = RegionExplainer(crop_bundle["gguf"], crop_bundle["dir"], crop_bundle["expert"] / "manifest.json",
                                threads=1, should_pause=lane_busy, mmproj=crop_bundle["mmproj"], n_ctx=512)
    reader = explainer.reader
    wait = reader.should_pause
    assert wait is not None

    def checked() -> bool:
        steps.append(reader.lm.n_kv)
        return wait()

    reader.should_pause = checked
    try:
        seg = reader.images.segment(_crop(0))
        at["image"] = len(reader.prefix) + reader.projector.tokens + len(seg.parts[0][1])  # after <|vision_start|>
        n_image = seg.image_tokens
        seg.close()
        ev = {"region": 0, "location": "top-left", "bbox": [0, 0, 10, 10], "peak": 0.5, "mean": 0.3, "area_px": 100,
              "candidates": []}
        out = explainer.explain(ev, [_crop(0)], vector=np.zeros(reader.projector.w1.shape[0], np.float32))
    finally:
        explainer.close()
    first = steps.index(at["image"])
    assert steps[first + 1] == at["image"], steps  # checked before the encoder, and again before the image's decode
    assert steps[first + 2] == at["image"] + n_image, steps  # the image's 12 embeddings: one 16-row piece
    assert out["source"] == "model" and out["images"] == 1
    assert out["paused_ms"] >= 40, out["paused_ms"]  # it waited for the lane there


def _explain(recipe: Path, image: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "edge.cli", "explain", str(recipe), str(image), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_explain_sends_region_tokens_and_the_crop(crop_bundle, tmp_path) -> None:
    """`iad-edge explain` (a subprocess, as a user runs it) with assistant.projector and assistant.mmproj: the
    model's own claims from one prompt holding the region tokens and the region's crop + overlay, beside the
    mask's geometry; the projector was trained without crops, which is said once on stderr."""
    projector = json.loads((crop_bundle["dir"] / "projector.json").read_text())
    out = tmp_path / "explained.json"
    proc = _explain(crop_bundle["recipe"], crop_bundle["images"][0], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["projector"] == str(crop_bundle["dir"] / "projector.json") and doc["mmproj"] == str(crop_bundle["mmproj"])
    regions = doc["inspection"]["regions"]
    assert doc["inspection"]["verdict"] == "NG" and regions, "the tiny expert must flag the defect"
    assert len(doc["explanations"]) == 1
    exp = doc["explanations"][0]
    assert exp["source"] == "model", exp.get("reason")
    assert exp["images"] == 2  # the crop and its anomaly overlay, after the region tokens
    assert exp["region_tokens"] == projector["tokens"]
    assert exp["location"] == regions[0]["location"] and exp["bbox"] == regions[0]["bbox"]
    assert exp["model_location"] in LOCATIONS and exp["model_severity"] in SEVERITIES
    assert exp["model_defect_type"] in projector["answer"]["defect_types"]
    assert exp["consistent"] is (exp["model_location"] == exp["location"])
    assert doc["contradictions"] == (0 if exp["consistent"] else 1)
    warnings = [line for line in proc.stderr.splitlines() if "trained without the image crop" in line]
    assert len(warnings) == 1, proc.stderr[-2000:]
    assert "find_slot" not in proc.stderr  # llama.cpp's benign position warning for image embeddings is not shown


def test_explain_refuses_an_mmproj_that_does_not_fit(crop_bundle, tmp_path) -> None:
    """A file llama.cpp's multimodal library cannot pair with the text GGUF (here: the text GGUF itself) is one
    error line naming it, exit 1, and no --out."""
    out = tmp_path / "out.json"
    proc = _explain(crop_bundle["recipe"], crop_bundle["images"][0], out, "--mmproj", str(crop_bundle["gguf"]))
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("iad-edge explain: error: "), proc.stderr[-2000:]
    assert str(crop_bundle["gguf"]) in err[0] and "mmproj" in err[0]
    assert not out.exists()


def test_the_assistant_service_sends_the_crop_too(crop_bundle, tmp_path) -> None:
    """One path: the assistant service (open_explainer on the same recipe) gives the region tokens and the crop +
    overlay to the model too, and publishes the claims `iad-edge explain` wrote for the same frame."""
    from edge.assistant.busy_signal import BusySignal
    from edge.assistant.process import AssistantService, Job
    from edge.assistant.region_explain import RegionExplainer, open_explainer
    from edge.config import load_recipe
    from edge.imageio import read_image

    image_path = crop_bundle["images"][-1]
    out = tmp_path / "explained.json"
    proc = _explain(crop_bundle["recipe"], image_path, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    recipe = load_recipe(crop_bundle["recipe"])
    explainer = open_explainer(recipe)
    assert isinstance(explainer, RegionExplainer) and explainer.vision and explainer.mmproj == crop_bundle["mmproj"]
    busy = BusySignal(f"iad-busy-crop-test-{os.getpid()}")  # a flag of its own, not a lane's of another test process
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
    assert msg["explanations"] and all(e["source"] == "model" and e["images"] == 2 for e in msg["explanations"]), msg
    keys = ("location", "bbox", "model_location", "model_defect_type", "model_severity", "consistent", "images")
    assert [{k: e[k] for k in keys} for e in msg["explanations"]] == [{k: e[k] for k in keys} for e in doc["explanations"]]
