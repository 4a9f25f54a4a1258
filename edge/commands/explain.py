"""`iad-edge explain RECIPE IMAGE [--model GGUF] [--mmproj GGUF] --out FILE`: inspect one image and explain its regions.

Synchronous and self-contained (no broker, no spool): the quality engineer's
tool, and the simplest way to try a real Qwen GGUF on an archived NG frame.
The output JSON holds the inspection result and one explanation per region;
``location`` and ``bbox`` of every explanation are the region's own (the mask's).

The path is the assistant service's (:func:`edge.assistant.region_explain.open_explainer`):
with ``assistant.projector`` in the recipe each region enters the model as
injected region tokens, and the explanation adds the model's own claims
(``model_location``, ``model_defect_type``, ``model_severity``) and
``consistent`` (the model's location equals the mask's), and with an mmproj the
region's crop and overlay follow the region tokens in the same prompt; without a
projector, the model reads the region's measurements as text (and, with an
mmproj, the crop).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.assistant.evidence import region_evidence, region_images
from edge.assistant.region_explain import RegionExplainer, open_explainer, region_vector
from edge.atomic import write_text_atomic
from edge.config import load_recipe
from edge.imageio import read_image
from edge.inspector import Inspector
from edge.outputs import check_outputs, file_output
from edge.prototypes import load_prototypes, match_candidates


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="Inspect one image and explain each defect region with a GGUF model (JSON out).",
        description="Inspect IMAGE with the recipe's expert and bank, then explain each region with a GGUF language "
        "model through llama.cpp (no broker, no spool): schema-constrained JSON whose location and bbox are the "
        "region's own. With assistant.projector in the recipe the model reads each region from injected region "
        "tokens (as the assistant service does) and its own claims are added (model_location, model_defect_type, "
        "model_severity, consistent). --out is checked before the model is loaded and written only when everything "
        "succeeded.",
    )
    p.add_argument("recipe", type=Path, help="Recipe YAML (expert, bank, thresholds, assistant settings).")
    p.add_argument("image", type=Path, help="Image to inspect (gray or colour, 8 or 16 bit).")
    p.add_argument("--model", type=Path, help="GGUF language model (default: assistant.model of the recipe).")
    p.add_argument("--mmproj", type=Path, help="GGUF vision projector; the crop and mask overlay go in as images "
                   "(with assistant.projector: after the region tokens, in the same prompt).")
    p.add_argument("--out", type=Path, required=True,
                   help="Output JSON file (replaced if it exists; written only when everything succeeded).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    check_outputs([file_output(args.out, "--out")])  # before the model is loaded
    recipe = load_recipe(args.recipe)
    cfg = recipe.assistant
    image = read_image(args.image)
    prototypes = load_prototypes(cfg.prototypes)
    explainer = open_explainer(recipe, model=args.model, mmproj=args.mmproj)  # the assistant service's choice of path
    region_tokens = isinstance(explainer, RegionExplainer)
    try:
        inspector = Inspector.from_recipe(recipe)
        result = inspector.inspect(image)
        thresholds = {"pixel": recipe.thresholds.pixel, "image_score": recipe.thresholds.image_score}
        explanations = []
        for i, region in enumerate(result.regions[: cfg.max_regions]):
            cands = match_candidates(prototypes, region.feature, cfg.top_k)
            ev = region_evidence(region, i, result.score, thresholds, cands, (image.shape[1], image.shape[0]))
            imgs = region_images(image, result.anomaly_map, region, recipe.thresholds.pixel) if explainer.vision else None
            if isinstance(explainer, RegionExplainer):
                vector = region_vector(recipe, region, region.feature, explainer.feature_dim, image)
                explanations.append(explainer.explain(ev, imgs, vector=vector))
                continue
            explanations.append(explainer.explain(ev, imgs))
    finally:
        explainer.close()
    out = {
        "image": str(args.image),
        "recipe": str(args.recipe),
        "model": str(explainer.model_path),
        "mmproj": str(explainer.mmproj) if explainer.mmproj else None,
        "projector": str(explainer.reader.projector.path) if isinstance(explainer, RegionExplainer) else None,
        "inspection": result.to_json(),
        "explanations": explanations,
        "regions_not_explained": max(0, len(result.regions) - cfg.max_regions),
    }
    summary = f"{args.out}: {result.verdict}, {len(result.regions)} region(s), {len(explanations)} explanation(s)"
    if region_tokens:  # the model's claims against the mask, as the assistant counts them on status
        out["contradictions"] = sum(1 for e in explanations if e.get("consistent") is False)
        summary += f", {out['contradictions']} contradicting the mask"
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(summary)
    return 0
