"""``iad-export projector``: train the region projector (and optionally the LLM) on labelled defects.

Pipeline (all in a staging folder, moved into ``--out`` only when every step succeeded):

1. Cases: for each dataset (MVTec layout, or ``synthetic[:N]`` = parts from the
   synthetic generator written in MVTec layout), a bank from its good images,
   then for every defective test image the ground-truth region (largest mask
   component) and the expert's matched region, each as an evidence vector
   (:func:`edge.assistant.projector.evidence_vector`, the runtime's own code).
   Target = the explanation JSON ``{"location", "defect_type", "severity"}``:
   location from the mask, type from the folder name, severity from the area.
2. Split by image: ``--holdout`` of the images never take part in training.
3. Training (torch): a 2-layer MLP maps evidence to K embeddings injected
   between the prompt's prefix and suffix; loss = cross-entropy of the answer
   tokens only. The LLM is frozen unless ``--train-llm`` (joint training, the
   paper's pre-initialised recipe; meant for small models).
4. Export: the (trained) LLM through ``iad-export qwen``'s path to GGUF, the
   projector to ``projector.npz`` + ``projector.json``.
5. Held-out accuracy measured with the *runtime* (numpy projector + llama.cpp
   with injected embeddings + answer grammar): with region tokens from the
   predicted and the oracle regions, and without region tokens (ablation).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge.assistant.projector import (
    EVIDENCE_VERSION,
    LOCATIONS,
    PROJECTOR_FORMAT,
    PROJECTOR_JSON,
    PROJECTOR_NPZ,
    SEVERITIES,
    SEVERITY_AREA,
    answer_text,
    evidence_dim,
)
from edge.files import sha256_file
from export.errors import ExportError

log = logging.getLogger(__name__)

PROMPT_PREFIX = "<|im_start|>user\nRegion: "
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"  # short: prompt + K + answer fit one 64-token chunk of the linear attention


FEATURE_DROPOUT = 0.5  # see train()
SHIFTED_PAIRS = 2  # training pairs per image from the ground truth moved like an expert region (shifted_region)


class ProjectorExportError(ExportError):
    """The projector could not be trained or exported (bad input, no usable cases, export failure)."""


# ---------------------------------------------------------------------------------------------- inputs
def _check_inputs(llm_dir: Path, expert_dir: Path, data: Sequence[str], recipe: Path | None) -> dict[str, Any]:
    if not (llm_dir / "config.json").is_file():
        raise ProjectorExportError(f"--llm {llm_dir}: no config.json; give a local Hugging Face checkpoint folder "
                                   "(e.g. from `iad-export qwen --tiny-arch qwen3.5 --keep-hf DIR`)")
    mpath = expert_dir / "manifest.json"
    if not mpath.is_file():
        raise ProjectorExportError(f"--expert {expert_dir}: no manifest.json; give the folder written by `iad-export dinov2`")
    try:
        manifest = json.loads(mpath.read_text())
        feature_dim = int(manifest["feature_dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProjectorExportError(f"{mpath}: not an expert manifest ({exc})") from None
    if not data:
        raise ProjectorExportError("give at least one --data DATASET (an MVTec-layout folder or synthetic[:N])")
    for spec in data:
        if not spec.startswith("synthetic") and not Path(spec).is_dir():
            raise ProjectorExportError(f"--data {spec}: no such folder (MVTec layout expected) and not synthetic[:N]")
    if recipe is not None and not recipe.is_file():
        raise ProjectorExportError(f"--recipe {recipe}: no such file")
    return {"manifest": manifest, "manifest_path": mpath, "feature_dim": feature_dim}


def _expert_recipe(expert_dir: Path, manifest: dict[str, Any], folder: Path, threads: int) -> Path:
    """A minimal recipe for the expert alone (resize tiling at its resolution); thresholds are set per category."""
    import yaml

    model = next((n for n, e in manifest.get("files", {}).items() if e.get("role", "model") == "model"), "expert.onnx")
    recipe = {
        "version": 1, "line": "projector", "station": "train",
        "source": {"type": "synthetic", "width": 128, "height": 128},
        "expert": {"backend": "onnxruntime", "model": str((expert_dir / model).resolve()), "providers": ["cpu"], "threads": threads},
        "tiling": {"mode": "resize", "resolution": int(manifest["resolution"])},
        "bank": {"path": "bank.npz"},
        "thresholds": {"image_score": 1.0, "pixel": 1.0},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
    }
    path = folder / "expert-recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _datasets(data: Sequence[str], work: Path, seed: int) -> list[Any]:
    from edge.evaluation.datasets import load_dataset
    from edge.evaluation.synthetic_dataset import write_synthetic_dataset

    out = []
    for i, spec in enumerate(data):
        if spec.startswith("synthetic"):
            parts = spec.split(":")
            try:
                n = int(parts[1]) if len(parts) > 1 and parts[1] else 240
                dseed = int(parts[2]) if len(parts) > 2 and parts[2] else seed + 101 * i
                size = tuple(int(v) for v in parts[3].lower().split("x")) if len(parts) > 3 else None
            except ValueError:
                raise ProjectorExportError(f"--data {spec}: expected synthetic[:N[:SEED[:WxH]]]") from None
            folder = work / f"synthetic-{i}"
            if size is None:  # the three categories of `iad-edge make-dataset --synthetic` (colour, gray, odd size)
                write_synthetic_dataset(folder, categories=3, train=8, test=2 * math.ceil(n / 3), seed=dseed)
            else:  # one product look at the camera's size (e.g. the demo's synthetic source: seed 7, 448x448)
                write_part_dataset(folder, n, dseed, size[0], size[1])
            out.append(load_dataset(folder))
        else:
            out.append(load_dataset(spec))
    return out


def write_part_dataset(folder: Path, n: int, seed: int, width: int, height: int, train: int = 10) -> Path:
    """MVTec layout, one category ``part``: the synthetic source's look for ``seed`` at ``width``x``height``."""
    import cv2

    from edge.sources.synthetic import DEFECT_TYPES, SyntheticPartRenderer

    renderer = SyntheticPartRenderer(width, height, 3, seed=seed)
    root = folder / "part"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "good").mkdir(parents=True)
    for i in range(train):
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), renderer.render(100000 + i, defect=None).image)
    for i in range(2):
        cv2.imwrite(str(root / "test" / "good" / f"{i:03d}.png"), renderer.render(200000 + i, defect=None).image)
    for i in range(n):
        kind = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        frame = renderer.render(300000 + i, defect=kind)
        (root / "test" / kind).mkdir(exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "test" / kind / f"{i:04d}.png"), frame.image)
        cv2.imwrite(str(root / "ground_truth" / kind / f"{i:04d}_mask.png"), frame.ground_truth.astype(np.uint8) * 255)
    return folder


def collect_all_cases(datasets: Sequence[Any], recipe_path: Path, auto_threshold: bool, feature_dim: int,
                      progress: bool, shifted: int = 0, seed: int = 0) -> tuple[list[Any], dict[str, Any]]:
    """Cases of every category of every dataset (see :func:`edge.evaluation.understanding.collect_cases`)."""
    from edge.bank import build_bank
    from edge.config import load_recipe
    from edge.evaluation.understanding import collect_cases
    from edge.expert import load_expert
    from edge.imageio import read_image
    from edge.inspector import Inspector

    base = load_recipe(recipe_path)
    expert = load_expert(base.expert)
    cases: list[Any] = []
    summary: dict[str, Any] = {"datasets": [], "thresholds": {}}
    categories = [(d, c) for d in datasets for c in d.categories]
    for dataset, category in tqdm(categories, desc="cases", unit="category", disable=not progress):
        recipe, train = base, list(category.train)
        if auto_threshold:
            if len(train) < 3:
                raise ProjectorExportError(f"{dataset.root}/{category.name}: needs 3+ good training images (2 set the pixel threshold)")
            held, train = train[-2:], train[:-2]
            inspector = Inspector(base, expert)
            inspector.set_bank(build_bank(expert, (read_image(p) for p in train), base, progress=False, total=len(train)))
            peak = max(float(np.percentile(inspector.inspect(read_image(p)).anomaly_map, 99.9)) for p in held)
            pixel = round(1.25 * peak, 6)
            recipe = base.model_copy(update={"thresholds": base.thresholds.model_copy(update={"pixel": pixel})})
            summary["thresholds"][f"{dataset.root.name}/{category.name}"] = pixel
        inspector = Inspector(recipe, expert)
        found = collect_cases(inspector, recipe, category, read_image, feature_dim, progress=False, train=train,
                              shifted=shifted, seed=seed)
        cases += found
        summary["datasets"].append({"root": str(dataset.root), "category": category.name, "cases": len(found)})
    return cases, summary


# ---------------------------------------------------------------------------------------------- training
def _pairs(cases: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    xs, ys = [], []
    for c in cases:
        target = answer_text(c.location, c.defect_type, c.severity)
        for ev in (c.oracle, c.predicted, *c.shifted):
            if ev is not None:
                xs.append(ev)
                ys.append(target)
    return np.stack(xs).astype(np.float32), ys


def train(
    llm_dir: Path, x: np.ndarray, targets: Sequence[str], *, tokens: int, hidden: int, train_llm: bool, seed: int,
    device: str, epochs: int, batch: int, lr: float, budget_s: float | None, progress: bool,
    feature_dropout: float = FEATURE_DROPOUT,
) -> dict[str, Any]:
    """Train the projector (and the LLM with ``train_llm``); return numpy weights, model, tokenizer, stats.

    ``feature_dropout``: share of the pairs in each batch whose pooled patch feature is replaced by the runtime's
    "feature unknown" (zeros, flag 0). The pooled feature of one product look does not carry over to another (it
    describes the texture as much as the defect); measured on held-out looks, a projector trained with it always
    present leans on it and loses location and type on the new look. Dropping it for half the pairs makes the
    geometry and pixel evidence carry the answer, and the feature adds what it can.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = AutoTokenizer.from_pretrained(str(llm_dir))
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).to(device)
    model.train(train_llm)
    for p in model.parameters():
        p.requires_grad_(train_llm)
    emb = model.get_input_embeddings()
    n_embd = int(emb.weight.shape[1])
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    prefix = tok(PROMPT_PREFIX, add_special_tokens=False)["input_ids"]
    suffix = tok(PROMPT_SUFFIX, add_special_tokens=False)["input_ids"]
    answers = [tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in targets]

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std < 1e-4, 1.0, std).astype(np.float32)
    xn = torch.from_numpy((x - mean) / std).to(device)
    n_feature = x.shape[1] - evidence_dim(0)  # the pooled feature and its flag are the last n_feature + 1 entries
    unknown = np.zeros(n_feature + 1, np.float32)
    no_feature = torch.from_numpy((unknown - mean[-n_feature - 1 :]) / std[-n_feature - 1 :]).to(device)
    proj = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(approximate="tanh"),
                               torch.nn.Linear(hidden, tokens * n_embd)).to(device)
    with torch.no_grad():
        proj[2].weight.mul_(float(emb.weight.std()) * 3)
        proj[2].bias.zero_()
    # Deep supervision of the projector (training only): linear heads on its hidden layer predict the answer's
    # location and type directly, so the evidence -> region-feature mapping is shaped from the first step; the
    # LLM still has to learn to read the injected tokens (the heads are not exported and the runtime never sees them).
    loc_ids = {v: i for i, v in enumerate(LOCATIONS)}
    type_names = sorted({json.loads(t)["defect_type"] for t in targets})
    type_ids = {v: i for i, v in enumerate(type_names)}
    aux_y = torch.tensor([[loc_ids[json.loads(t)["location"]], type_ids[json.loads(t)["defect_type"]]] for t in targets],
                         device=device)
    heads = torch.nn.ModuleList([torch.nn.Linear(hidden, len(LOCATIONS)), torch.nn.Linear(hidden, len(type_names))]).to(device)
    params = [{"params": list(proj.parameters()) + list(heads.parameters()), "lr": lr}]
    if train_llm:
        params.append({"params": [p for p in model.parameters()], "lr": lr * 0.5})
    opt = torch.optim.AdamW(params, weight_decay=0.0)

    n = len(targets)
    steps_per_epoch = max(1, math.ceil(n / batch))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in params], total_steps=total, pct_start=0.1)
    pre_ids = torch.tensor(prefix, device=device)
    suf_ids = torch.tensor(suffix, device=device)
    p_len, s_len = len(prefix), len(suffix)
    bar = tqdm(total=total, desc="train projector" + (" + LLM" if train_llm else ""), unit="step", disable=not progress)
    start, step, losses = time.monotonic(), 0, []
    stopped_early = False
    for _epoch in range(epochs):
        order = rng.permutation(n)
        for b0 in range(0, n, batch):
            idx = order[b0 : b0 + batch]
            a_len = max(len(answers[i]) for i in idx)
            ans = torch.full((len(idx), a_len), pad, dtype=torch.long, device=device)
            labels = torch.full((len(idx), p_len + tokens + s_len + a_len), -100, dtype=torch.long, device=device)
            for j, i in enumerate(idx):
                a = torch.tensor(answers[i], device=device)
                ans[j, : len(a)] = a
                labels[j, p_len + tokens + s_len - 1 : p_len + tokens + s_len - 1 + len(a)] = a  # shifted: predicts a
            sel = torch.as_tensor(idx, device=device)
            xb = xn[sel]
            if feature_dropout > 0:
                drop = torch.from_numpy(rng.random(len(idx)) < feature_dropout).to(device)
                xb = xb.clone()
                xb[drop, -n_feature - 1 :] = no_feature
            h = proj[1](proj[0](xb))
            region = proj[2](h).view(len(idx), tokens, n_embd)
            inputs = torch.cat([emb(pre_ids).expand(len(idx), -1, -1), region, emb(suf_ids).expand(len(idx), -1, -1), emb(ans)], 1)
            logits = model(inputs_embeds=inputs).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
            aux = (torch.nn.functional.cross_entropy(heads[0](h), aux_y[sel, 0])
                   + torch.nn.functional.cross_entropy(heads[1](h), aux_y[sel, 1]))
            loss = loss + 0.5 * aux
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
            if budget_s is not None and time.monotonic() - start > budget_s:
                stopped_early = True
                break
        if stopped_early:
            break
    bar.close()
    model.eval()
    w = {
        "w1": proj[0].weight.detach().cpu().numpy().T.copy(), "b1": proj[0].bias.detach().cpu().numpy(),
        "w2": proj[2].weight.detach().cpu().numpy().T.copy(), "b2": proj[2].bias.detach().cpu().numpy(),
        "mean": mean.astype(np.float32), "std": std,
    }
    return {"weights": {k: np.ascontiguousarray(v, np.float32) for k, v in w.items()}, "model": model, "tokenizer": tok,
            "n_embd": n_embd, "prefix": prefix, "suffix": suffix,
            "stats": {"steps": step, "epochs_planned": epochs, "stopped_by_budget": stopped_early,
                      "seconds": round(time.monotonic() - start, 1), "final_loss": round(float(np.mean(losses[-10:])), 4),
                      "pairs": n, "batch": batch, "lr": lr, "feature_dropout": feature_dropout}}


# ---------------------------------------------------------------------------------------------- export
def export_projector(
    llm_dir: Path | str,
    expert_dir: Path | str,
    data: Sequence[str],
    out_dir: Path | str,
    *,
    recipe: Path | str | None = None,
    train_llm: bool = False,
    seed: int = 0,
    device: str = "cpu",
    tokens: int = 4,
    hidden: int = 128,
    epochs: int = 24,
    batch: int = 32,
    lr: float = 5e-3,
    budget_s: float | None = None,
    feature_dropout: float = FEATURE_DROPOUT,
    shifted_pairs: int = SHIFTED_PAIRS,
    holdout: float = 0.2,
    quant: str = "Q8_0",
    pre_tokenizer: str | None = None,
    threads: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and export; return the projector manifest (also written to ``out_dir/projector.json``)."""
    import torch

    from edge.evaluation.understanding import score_conditions

    llm_dir, expert_dir, out_dir = Path(llm_dir), Path(expert_dir), Path(out_dir)
    recipe_path = Path(recipe) if recipe is not None else None
    info = _check_inputs(llm_dir, expert_dir, data, recipe_path)
    if device == "cuda" and not torch.cuda.is_available():
        raise ProjectorExportError("--device cuda: torch sees no CUDA device (this torch is CPU-only or no GPU is present)")
    if not 0.0 <= feature_dropout < 1.0:
        raise ProjectorExportError(f"--feature-dropout must be in [0, 1) (got {feature_dropout})")
    if not 0 <= shifted_pairs <= 16:
        raise ProjectorExportError(f"--shifted-pairs must be between 0 and 16 (got {shifted_pairs})")
    if not 0.0 < holdout < 1.0:
        raise ProjectorExportError(f"--holdout must be between 0 and 1 (got {holdout})")
    torch.set_num_threads(max(1, threads))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-projector-") as tmp:
        work = Path(tmp)
        stage = work / "out"
        stage.mkdir()
        datasets = _datasets(data, work, seed)
        rpath = recipe_path or _expert_recipe(expert_dir, info["manifest"], work, threads)
        cases, summary = collect_all_cases(datasets, rpath, recipe_path is None, info["feature_dim"], progress,
                                           shifted=shifted_pairs, seed=seed)
        if len(cases) < 10:
            raise ProjectorExportError(f"only {len(cases)} defective images with masks in --data; need at least 10")
        order = np.random.default_rng(seed).permutation(len(cases))
        n_hold = max(1, int(round(holdout * len(cases))))
        held = [cases[i] for i in order[:n_hold]]
        fit = [cases[i] for i in order[n_hold:]]
        x, targets = _pairs(fit)
        types = sorted({c.defect_type for c in cases})
        result = train(llm_dir, x, targets, tokens=tokens, hidden=hidden, train_llm=train_llm, seed=seed, device=device,
                       epochs=epochs, batch=batch, lr=lr, budget_s=budget_s, progress=progress,
                       feature_dropout=feature_dropout)

        from export.qwen import export_qwen

        if train_llm:
            hf_out = stage / f"{llm_dir.resolve().name}-region"  # the GGUF is named after this folder
            result["model"].to("cpu").save_pretrained(str(hf_out), safe_serialization=True)
            result["tokenizer"].save_pretrained(str(hf_out))
            gguf_src = hf_out
        else:
            gguf_src = llm_dir
        gguf_dir = work / "gguf"
        gmanifest = export_qwen(gguf_dir, hf_dir=gguf_src, quant=quant, pre_tokenizer=pre_tokenizer,
                                threads=threads, progress=progress)
        gguf_name = next(iter(gmanifest["files"]))
        for item in gguf_dir.iterdir():
            os.replace(item, stage / item.name)

        np.savez(stage / PROJECTOR_NPZ, **result["weights"])
        manifest: dict[str, Any] = {
            "format": PROJECTOR_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {PROJECTOR_NPZ: {"bytes": (stage / PROJECTOR_NPZ).stat().st_size, "sha256": sha256_file(stage / PROJECTOR_NPZ)}},
            "evidence": {"version": EVIDENCE_VERSION, "dim": int(x.shape[1]), "feature_dim": info["feature_dim"]},
            "hidden": hidden, "tokens": tokens, "n_embd": result["n_embd"],
            "expert": {"manifest": str(info["manifest_path"].resolve()), "sha256": sha256_file(info["manifest_path"])},
            "llm": {"gguf": gguf_name, "sha256": gmanifest["files"][gguf_name]["sha256"], "quant": quant,
                    "architecture": gmanifest.get("architecture"), "hf_dir": str(llm_dir.resolve()), "trained": train_llm},
            "prompt": {"prefix": PROMPT_PREFIX, "suffix": PROMPT_SUFFIX, "image": False},
            "answer": {"locations": list(LOCATIONS), "defect_types": types, "severities": list(SEVERITIES),
                       "severity_area": list(SEVERITY_AREA)},
            "data": {**summary, "specs": list(data), "cases": len(cases), "train_images": len(fit), "holdout_images": len(held),
                     "train_pairs": len(targets), "types": {t: sum(c.defect_type == t for c in cases) for t in types}},
            "train": {**result["stats"], "seed": seed, "device": device, "train_llm": train_llm, "shifted_pairs": shifted_pairs},
        }
        assert int(x.shape[1]) == evidence_dim(info["feature_dim"])
        (stage / PROJECTOR_JSON).write_text(json.dumps(manifest, indent=2) + "\n")

        # held-out accuracy, measured with the runtime on the exported files
        from edge.assistant.region_reader import RegionReader

        reader = RegionReader(stage, stage / gguf_name, info["manifest_path"], threads=threads)
        try:
            tokenizer_ok = reader.prefix == result["prefix"] and reader.suffix == result["suffix"]
            scored = score_conditions(reader, held, progress=progress)
        finally:
            reader.close()
        manifest["metrics"] = {"holdout": {c: scored[c] for c in ("predicted", "oracle", "ablation")},
                               "tokenizer_parity": tokenizer_ok}
        (stage / PROJECTOR_JSON).write_text(json.dumps(manifest, indent=2) + "\n")
        # files first, the projector manifest last
        for item in sorted(stage.iterdir(), key=lambda p: p.name == PROJECTOR_JSON):
            dest = out_dir / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    return manifest
