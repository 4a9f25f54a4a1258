"""Explanations from region tokens: the model's own claims beside the mask's authoritative geometry.

With ``assistant.projector`` set, each NG region's evidence vector is projected
to K embeddings and injected into the prompt (:class:`RegionReader`); the model
answers location, defect type and severity under a grammar. The explanation
keeps ``location`` and ``bbox`` from the mask (authoritative: they drive the
verdict and the overlay) and adds what the model said as ``model_location``,
``model_defect_type``, ``model_severity``, with ``consistent`` = the model's
location equals the mask's. A contradiction is flagged (``consistent: false``,
and counted on ``status`` by the assistant service), never overwritten.

With ``assistant.mmproj`` beside the projector (a VL text GGUF and its vision
projector), the region's image crop and its anomaly overlay follow the region
tokens in the same prompt (``prefix | K region tokens | crop | overlay | suffix``,
:mod:`edge.assistant.region_mtmd`): the model sees what the expert measured and
what the pixels look like.

Same interface as :class:`edge.assistant.explain.Explainer` (``explain``,
``close``, ``model_path``, ``vision``), so the assistant service uses either.
:func:`open_explainer` is the one place that chooses between the two paths
(``iad-edge assistant`` and ``iad-edge explain`` both call it), and
:func:`region_vector` the one place that turns a region into the projector's
input (the service and ``iad-edge explain`` both call it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.assistant.explain import Explainer, Explanation, ExplanationError, fallback_explanation
from edge.assistant.projector import evidence_vector
from edge.assistant.region_reader import RegionReader
from edge.expert.manifest import manifest_path_for
from edge.regions import pool_region_feature
from edge.tiling import patch_centers, plan_tiles

log = logging.getLogger(__name__)


class RegionExplainer:
    """Explanations of regions read by the language model from injected region tokens."""

    def __init__(
        self,
        model: str | Path,
        projector: str | Path,
        expert_manifest: str | Path | None,
        *,
        threads: int = 1,
        gpu_layers: int = 0,
        budget_s: float = 30.0,
        should_pause: Callable[[], bool] | None = None,
        check_sha256: bool = True,
        mmproj: str | Path | None = None,
        n_ctx: int = 2048,
    ):
        self.model_path = Path(model)
        self.mmproj = Path(mmproj) if mmproj is not None else None
        self.vision = self.mmproj is not None  # the callers then pass the region's crop and overlay
        self.budget_s = budget_s
        self._should_pause = should_pause
        self._pause_until = 0.0
        self._paused_s = 0.0
        # region tokens alone fit a short context; an image crop takes up to ~200 positions (448 px, Qwen's 32-px cells)
        self.reader = RegionReader(projector, model, expert_manifest, n_ctx=n_ctx if self.vision else 256, threads=threads,
                                   gpu_layers=gpu_layers, should_pause=self._wait_while_busy if should_pause else None,
                                   check_sha256=check_sha256, mmproj=self.mmproj)
        self.feature_dim = self.reader.projector.feature_dim
        if self.vision and not self.reader.trained_with_image:
            log.warning("%s was trained without the image crop in the prompt: with the mmproj the model sees region "
                        "tokens and crop together, which it was not trained for", self.reader.projector.path)

    @classmethod
    def from_config(cls, cfg: Any, expert_manifest: str | Path | None, model: str | Path | None = None,
                    should_pause: Callable[[], bool] | None = None, mmproj: str | Path | None = None) -> RegionExplainer:

        model = model or cfg.model
        if model is None:
            raise ExplanationError("no GGUF model: set assistant.model in the recipe or pass --model FILE.gguf")
        return cls(model, cfg.projector, expert_manifest, threads=cfg.threads, gpu_layers=cfg.gpu_layers,
                   budget_s=cfg.job_budget_s, should_pause=should_pause, mmproj=mmproj, n_ctx=cfg.n_ctx)

    def _wait_while_busy(self) -> bool:
        """Called before every prefill chunk and token: sleep while the lane is busy (up to the answer's deadline)."""
        if self._should_pause is None:
            return False
        t = time.monotonic()
        while self._should_pause() and time.monotonic() < self._pause_until:
            time.sleep(0.001)
        self._paused_s += time.monotonic() - t
        return False

    def explain(self, ev: dict[str, Any], images: Sequence[np.ndarray] | None = None,
                deadline: float | None = None, vector: np.ndarray | None = None) -> dict[str, Any]:
        """Explain one region from its evidence vector (``vector``; see :func:`edge.assistant.projector.evidence_vector`)
        and, with an mmproj, its ``images`` (crop and overlay from :func:`edge.assistant.evidence.region_images`)."""
        start = time.monotonic()
        end = start + self.budget_s if deadline is None else min(deadline, start + self.budget_s)
        if vector is None:
            return fallback_explanation(ev, "no region tokens: the frame or the region's feature was not available")
        self._pause_until, self._paused_s = end, 0.0
        shown = list(images) if self.vision and images else []
        try:
            answer = self.reader.ask(vector, deadline=end, images=shown)
        except Exception as exc:  # a failing model must not kill the assistant loop
            log.warning("region explanation failed: %s", exc)
            return fallback_explanation(ev, f"{type(exc).__name__}: {exc}")
        claims = answer["claims"]
        if claims is None:
            out = fallback_explanation(ev, f"the model's answer was cut off ({answer['finish']})")
            out["raw"] = answer["text"][:200]
            return out
        consistent = claims["location"] == ev["location"]
        area = f"{ev['area_mm2']:.3g} mm2" if ev.get("area_mm2") is not None else f"{ev['area_px']} px"
        description = f"{claims['defect_type'].capitalize()} ({claims['severity']}) at the {claims['location']} of the part"
        if not consistent:
            description += f"; the model places it differently from the mask ({ev['location']})"
        out: dict[str, Any] = {
            "region": ev["region"],
            "defect_type": claims["defect_type"],
            "severity": claims["severity"],
            "description": description + ".",
            "evidence": f"{self.reader.projector.tokens} region tokens: peak {ev['peak']:.3f}, mean {ev['mean']:.3f}, area {area}",
            "source": "model",
            "location": ev["location"],
            "bbox": list(ev["bbox"]),
            "model_location": claims["location"],
            "model_defect_type": claims["defect_type"],
            "model_severity": claims["severity"],
            "consistent": consistent,
            "region_tokens": self.reader.projector.tokens,
            "images": len(shown),
            "candidates": ev.get("candidates", []),
            "finish": answer["finish"],
            "tokens": len(answer["tokens"]),
            "elapsed_ms": round((time.monotonic() - start) * 1000, 1),
            "paused_ms": round(self._paused_s * 1000, 1),
        }
        Explanation.model_validate(out)
        return out

    def close(self) -> None:
        self.reader.close()


def open_explainer(recipe: Any, model: str | Path | None = None, mmproj: str | Path | None = None,
                   should_pause: Callable[[], bool] | None = None) -> Explainer | RegionExplainer:
    """The recipe's explainer: region tokens when ``assistant.projector`` is set, else the text path.

    The single choice of path for the assistant service and ``iad-edge explain``, so that a quality engineer's
    explanation of an archived frame comes from the same model path as the line's. ``model`` / ``mmproj``
    override the recipe's. With a projector and an mmproj, the region tokens and the region's image crop go into
    one prompt; an mmproj llama.cpp cannot pair with the text GGUF is refused (one line naming the file).
    """
    cfg = recipe.assistant
    if cfg.projector:
        return RegionExplainer.from_config(cfg, manifest_path_for(recipe.expert.model), model=model,
                                           should_pause=should_pause, mmproj=mmproj or cfg.mmproj)
    return Explainer.from_config(cfg, model=model, mmproj=mmproj, should_pause=should_pause)


def region_vector(recipe: Any, region: Any, feature: np.ndarray | None, feature_dim: int,
                  image: np.ndarray | None) -> np.ndarray | None:
    """A region's evidence vector for the projector (None without the frame or the region's pooled feature).

    Geometry is normalised to the recipe's ROI (the whole frame without one), as in training.
    """
    if image is None or feature is None:
        return None
    roi = recipe.roi
    box = (roi.x, roi.y, roi.width, roi.height) if roi is not None else (0, 0, image.shape[1], image.shape[0])
    return evidence_vector(region, box, feature, feature_dim, recipe.thresholds.pixel, image)


def bbox_feature(result: Any, bbox: Sequence[int], recipe: Any, patch_size: int) -> np.ndarray | None:
    """The pooled patch feature inside a region's bbox (its flagged pixels, else the whole box) from an inspection.

    For a lane region the assistant's twin inspection did not reproduce as a region of its own (the twin's regions
    are matched by IoU >= 0.5): the feature is taken at the lane region's place, which stays authoritative.
    """

    features = getattr(result, "patch_features", None)
    if features is None:
        return None
    ox, oy = (recipe.roi.x, recipe.roi.y) if recipe.roi is not None else (0, 0)
    amap = np.asarray(result.anomaly_map, np.float32)
    h, w = (recipe.roi.height, recipe.roi.width) if recipe.roi is not None else amap.shape[:2]
    sub = amap[oy : oy + h, ox : ox + w]
    x0, y0, x1, y1 = (int(v) for v in bbox)
    mask = np.zeros(sub.shape, bool)
    box = (slice(max(0, y0 - oy), max(0, y1 - oy)), slice(max(0, x0 - ox), max(0, x1 - ox)))
    mask[box] = sub[box] >= recipe.thresholds.pixel
    if not mask.any():
        mask[box] = True
    if not mask.any():
        return None
    centers, valid = patch_centers(plan_tiles((h, w), recipe.tiling, patch_size))
    flat = np.asarray(features).reshape(-1, features.shape[-1])
    if len(flat) != len(centers):
        return None
    py, px = np.unravel_index(int(np.argmax(np.where(mask, sub, -np.inf))), mask.shape)
    return pool_region_feature(mask, centers, valid, flat, (int(py), int(px)))
