"""Region evidence -> K embeddings of the language model: the numpy runtime of the trained projector.

The region expert already measures everything about a region: where it is
(bbox, centroid), how big (area), how anomalous (peak, mean against the pixel
threshold), what the DINOv2 patches look like there (pooled feature), and what
the pixels do (brighter or darker than the part around it). :func:`evidence_vector`
packs that into one float vector; a 2-layer MLP (trained offline by
``iad-export projector``) maps it to K vectors of the LLM's hidden size, which
enter the prompt as tokens (:mod:`edge.assistant.region_lm`). The model is
never *told* the location or type in words: what it says about the region it
has to read from these embeddings (the ablation in ``iad-edge eval
--understanding`` measures exactly that).

Files: ``projector.npz`` (weights, input normalisation) + ``projector.json``
("iad-projector/1": sha256 of the npz, of the expert manifest and of the GGUF it
was trained with; dims; prompt; answer vocabulary; data summary; metrics). A
projector is only valid for that expert and that GGUF: :meth:`Projector.check_for`
refuses anything else, naming both hashes and the rebuild command.
No torch here (runtime).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import ModelLoadError
from edge.files import sha256_file
from edge.types import Region

PROJECTOR_FORMAT = "iad-projector/1"
PROJECTOR_JSON = "projector.json"
PROJECTOR_NPZ = "projector.npz"
EVIDENCE_VERSION = 3
LOCATIONS = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")
SEVERITIES = ("minor", "major", "critical")
# Severity labels of the training targets: share of the inspected area covered by the defect.
SEVERITY_AREA = (0.004, 0.012)
N_GEOMETRY = 12
N_FOURIER = 16
N_GRID = 4
GRID_SLOPE = 60.0  # see _grid
N_SCORES = 4
N_INTENSITY = 9
N_BLOB = 14
# Pixels of a region's box that differ from the ring around it by more than this (grey levels 0..1) make its blob.
BLOB_CONTRAST = 0.15
BLOB_MIN_PX = 4  # smaller deviating blobs are noise, not candidates for the region's blob
REBUILD = ("iad-export projector --llm HF_DIR --expert ENGINE_DIR --data DATASET --out DIR "
           "(see docs/assistant.md)")


class ProjectorError(ModelLoadError):
    """A projector file that is missing, corrupt, of the wrong shape, or built for another expert/LLM."""


def evidence_dim(feature_dim: int) -> int:
    """Length of the evidence vector for an expert with ``feature_dim``-dimensional patch features."""
    return N_GEOMETRY + N_FOURIER + N_GRID + N_SCORES + N_INTENSITY + N_BLOB + feature_dim + 1


def severity_for_area(area_fraction: float) -> str:
    """The severity label used in training targets: minor / major / critical by covered area share."""
    if area_fraction < SEVERITY_AREA[0]:
        return "minor"
    return "major" if area_fraction < SEVERITY_AREA[1] else "critical"


def _gray(image: np.ndarray) -> np.ndarray:
    gray = image if image.ndim == 2 else image.mean(axis=2)
    return gray.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)


def _box_against_ring(gray: np.ndarray, bbox: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(grey levels of the bbox, their difference to the median of a ring around it, x0, y0 of the box)."""
    h, w = gray.shape
    x0, y0, x1, y1 = (int(v) for v in bbox)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    inner = gray[y0:y1, x0:x1]
    gx, gy = max(3, (x1 - x0) // 2), max(3, (y1 - y0) // 2)
    outer = gray[max(0, y0 - gy) : min(h, y1 + gy), max(0, x0 - gx) : min(w, x1 + gx)]
    ring_mask = np.ones(outer.shape, bool)
    ring_mask[y0 - max(0, y0 - gy) : y0 - max(0, y0 - gy) + inner.shape[0],
              x0 - max(0, x0 - gx) : x0 - max(0, x0 - gx) + inner.shape[1]] = False
    background = float(np.median(outer[ring_mask])) if ring_mask.any() else float(np.median(inner))
    return inner, inner - background, x0, y0


def _intensity(inner: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Pixels of the bbox against a ring around it: bright share, dark share, mean, spread and the 5th / 95th
    percentiles of the difference (the percentiles keep a defect's own brightness when the box is loose), and
    the 5th / 95th percentiles of the bbox's own grey levels."""
    p5, p95 = np.percentile(diff, [5, 95])
    v5, v95 = np.percentile(inner, [5, 95])  # the defect's own grey levels (e.g. the fixture showing through a hole)
    return np.array([(diff > 0.15).mean(), (diff < -0.15).mean(), diff.mean(), diff.std(), p5, p95, v5, v95, 1.0],
                    np.float32)


def _grid(c: float) -> list[float]:
    """Signed, soft distance of a normalised coordinate to the two grid lines of the 3x3 location (1/3, 2/3).

    tanh(GRID_SLOPE * (3c - k)): about +-0.4 one pixel from a line of a 448-px frame, +-0.85 three pixels away and
    saturated beyond, so the side of a line stays readable where sin/cos are flat. Why so steep: with a slope of 12
    (layout v2) a defect centred 2-5 px from a line gave +-0.1..0.3, and the trained tiny model answered the wrong
    side for most such parts although the centroid was right. A number, never the location's name: the model still
    has to learn the grid from the answers."""
    return [math.tanh(GRID_SLOPE * (3.0 * c - 1.0)), math.tanh(GRID_SLOPE * (3.0 * c - 2.0))]


def _blob(inner: np.ndarray, diff: np.ndarray, x0: int, y0: int, roi: Sequence[float],
          anchor: tuple[float, float]) -> np.ndarray:
    """The 8-connected blob of the box's deviating pixels (differing from the ring by more than BLOB_CONTRAST)
    nearest to the region's centroid ``anchor`` (frame pixels).

    The anomaly map is coarse (one value per 14-px patch of the expert's input, blurred), so a region's box and
    centroid can sit a fraction of a patch off the defect; the pixels themselves say where the defect is and what
    shape it has. Why the nearest blob and not the largest: a box that reaches into a feature every good part has
    (a machined hole, an edge) holds a large deviating blob that is not the defect; the region's centroid is where
    the expert's evidence is. Measured on held-out synthetic parts (four looks, 360 parts): the blob's 3x3 location
    agrees with the mask's for 95-97 % of the expert's regions with the nearest blob, 92-95 % with the largest.
    Blobs under BLOB_MIN_PX pixels (sensor noise) are not candidates.
    Centroid (normalised to the ROI, and against the grid lines), area share, fill of its own box,
    elongation (second moments), thickness (share surviving a 3x3 erosion), its contrast and grey level, its share
    of all deviating pixels of the box, and a found flag (0: nothing in the box deviates; the block is zeros)."""
    deviating = (np.abs(diff) > BLOB_CONTRAST).astype(np.uint8)
    if not deviating.any():
        return np.zeros(N_BLOB, np.float32)
    _count, labels, stats, centroids = cv2.connectedComponentsWithStats(deviating, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    distance = np.hypot(centroids[1:, 0] + x0 - anchor[0], centroids[1:, 1] + y0 - anchor[1])
    if (areas >= BLOB_MIN_PX).any():
        distance = np.where(areas >= BLOB_MIN_PX, distance, np.inf)
    k = 1 + int(np.argmin(distance))
    comp = labels == k
    ys, xs = np.nonzero(comp)
    rx, ry, rw, rh = (float(v) for v in roi)
    rw, rh = max(rw, 1.0), max(rh, 1.0)
    cx, cy = (float(xs.mean()) + x0 - rx) / rw, (float(ys.mean()) + y0 - ry) / rh
    area = int(comp.sum())
    fill = area / max(1, int(stats[k, cv2.CC_STAT_WIDTH]) * int(stats[k, cv2.CC_STAT_HEIGHT]))
    cov = np.cov(np.stack([xs, ys]).astype(np.float64)) if area > 2 else np.eye(2)
    low, high = np.sort(np.linalg.eigvalsh(cov + 1e-3 * np.eye(2)))
    elongation = math.log(math.sqrt(max(high, 1e-3) / max(low, 1e-3))) / 3.0
    thick = float(cv2.erode(comp.astype(np.uint8), np.ones((3, 3), np.uint8)).sum()) / area
    return np.array([cx, cy, *_grid(cx), *_grid(cy), math.sqrt(area / (rw * rh)), fill, elongation, thick,
                     float(diff[comp].mean()), float(inner[comp].mean()), area / float(deviating.sum()), 1.0],
                    np.float32)


def evidence_vector(
    region: Region | dict[str, Any],
    roi: Sequence[int],
    feature: np.ndarray | None,
    feature_dim: int,
    pixel_threshold: float | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """The region's evidence as float32 ``[evidence_dim(feature_dim)]``.

    ``roi`` = (x, y, width, height) of the inspected area in frame pixels (the
    whole frame when there is no ROI): geometry is normalised to it, as the
    3×3 location is. ``feature``: the region's pooled DINOv2 feature (zeros and
    a 0 flag when unknown). ``image``: the frame, for the intensity statistics.
    """
    r = region.to_json() if isinstance(region, Region) else region
    rx, ry, rw, rh = (float(v) for v in roi)
    rw, rh = max(rw, 1.0), max(rh, 1.0)
    x0, y0, x1, y1 = (float(v) for v in r["bbox"])
    cx, cy = (float(v) for v in r.get("centroid") or ((x0 + x1) / 2, (y0 + y1) / 2))
    nx0, ny0, nx1, ny1 = (x0 - rx) / rw, (y0 - ry) / rh, (x1 - rx) / rw, (y1 - ry) / rh
    ncx, ncy = (cx - rx) / rw, (cy - ry) / rh
    bw, bh = max(nx1 - nx0, 1e-6), max(ny1 - ny0, 1e-6)
    area = float(r["area_px"]) / (rw * rh)
    fill = float(r["area_px"]) / max(1.0, (x1 - x0) * (y1 - y0))
    geometry = [ncx, ncy, nx0, ny0, nx1, ny1, bw, bh, math.sqrt(max(area, 0.0)),
                math.log(area + 1e-5) / 10.0, fill, math.log(bw / bh) / 3.0]
    fourier = []
    for k in (1, 1.5, 2, 3):  # 1.5: sin(3*pi*c) changes sign at thirds of the ROI, a sharp cue for a 3x3 position
        for c in (ncx, ncy):
            fourier += [math.sin(2 * math.pi * k * c), math.cos(2 * math.pi * k * c)]
    thr = float(pixel_threshold) if pixel_threshold else 1.0
    peak, mean = float(r["peak"]), float(r["mean"])
    scores = [peak, mean, min(peak / thr, 10.0), min(mean / thr, 10.0)]
    if feature is not None:
        f = np.asarray(feature, np.float32).reshape(-1)
        if f.shape[0] != feature_dim:
            raise ProjectorError(f"region feature has {f.shape[0]} dims, the projector expects {feature_dim} "
                                 f"(built for another expert); rebuild it: {REBUILD}")
        feat, flag = f, 1.0
    else:
        feat, flag = np.zeros(feature_dim, np.float32), 0.0
    grid = _grid(ncx) + _grid(ncy)
    if image is None:
        intensity, blob = np.zeros(N_INTENSITY, np.float32), np.zeros(N_BLOB, np.float32)
    else:
        inner, diff, bx0, by0 = _box_against_ring(_gray(image), r["bbox"])
        intensity, blob = _intensity(inner, diff), _blob(inner, diff, bx0, by0, (rx, ry, rw, rh), (cx, cy))
    return np.concatenate([np.asarray(geometry + fourier + grid + scores, np.float32), intensity, blob,
                           feat, np.array([flag], np.float32)]).astype(np.float32)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (the activation the projector is trained with)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


@dataclass
class Projector:
    """The trained MLP: ``(x - mean) / std -> W1 -> GELU -> W2 -> [K, n_embd]``, and its manifest."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    manifest: dict[str, Any]
    path: Path

    @property
    def tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def n_embd(self) -> int:
        return int(self.manifest["n_embd"])

    @property
    def feature_dim(self) -> int:
        return int(self.manifest["evidence"]["feature_dim"])

    @property
    def prompt(self) -> dict[str, str]:
        return self.manifest["prompt"]

    @property
    def answer(self) -> dict[str, Any]:
        return self.manifest["answer"]

    def project(self, evidence: np.ndarray) -> np.ndarray:
        """``[E]`` or ``[N, E]`` evidence -> ``[K, n_embd]`` or ``[N, K, n_embd]`` float32 embeddings."""
        x = np.asarray(evidence, np.float32)
        single = x.ndim == 1
        x = (x.reshape(-1, self.w1.shape[0]) - self.mean) / self.std
        y = gelu_tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2
        y = y.reshape(-1, self.tokens, self.n_embd).astype(np.float32)
        return y[0] if single else y

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | Path) -> Projector:
        """Load ``projector.json`` (or the folder holding it) and its npz; check format, hash and shapes."""
        path = Path(path)
        mpath = path / PROJECTOR_JSON if path.is_dir() else path
        if not mpath.is_file():
            raise ProjectorError(f"{mpath}: no projector manifest; build one with: {REBUILD}")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProjectorError(f"{mpath}: not valid JSON ({exc}); rebuild it: {REBUILD}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != PROJECTOR_FORMAT:
            raise ProjectorError(f"{mpath}: not an {PROJECTOR_FORMAT} manifest; rebuild it: {REBUILD}")
        try:
            entry = manifest["files"][PROJECTOR_NPZ]
            dims = (int(manifest["evidence"]["dim"]), int(manifest["hidden"]), int(manifest["tokens"]), int(manifest["n_embd"]))
            manifest["prompt"]["prefix"], manifest["prompt"]["suffix"], manifest["answer"]["locations"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectorError(f"{mpath}: manifest lacks {exc}; rebuild it: {REBUILD}") from None
        npz = mpath.with_name(PROJECTOR_NPZ)
        if not npz.is_file():
            raise ProjectorError(f"{npz}: projector weights missing (the manifest {mpath.name} lists them); rebuild: {REBUILD}")
        size = npz.stat().st_size
        if size != entry.get("bytes"):
            raise ProjectorError(f"{npz}: {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced); rebuild: {REBUILD}")
        actual = sha256_file(npz)
        if actual != entry.get("sha256"):
            raise ProjectorError(f"{npz}: sha256 {actual[:12]}… differs from the manifest's {str(entry.get('sha256'))[:12]}… "
                                 f"(corrupt or replaced); rebuild: {REBUILD}")
        try:
            with np.load(npz, allow_pickle=False) as data:
                arrays = {k: np.ascontiguousarray(data[k], np.float32) for k in ("w1", "b1", "w2", "b2", "mean", "std")}
        except (OSError, ValueError, KeyError) as exc:
            raise ProjectorError(f"{npz}: not a readable projector ({exc}); rebuild: {REBUILD}") from None
        e, h, k, n = dims
        want = {"w1": (e, h), "b1": (h,), "w2": (h, k * n), "b2": (k * n,), "mean": (e,), "std": (e,)}
        for name, shape in want.items():
            if arrays[name].shape != shape:
                raise ProjectorError(f"{npz}: {name} has shape {arrays[name].shape}, the manifest's dims need {shape}; rebuild: {REBUILD}")
        if e != evidence_dim(int(manifest["evidence"]["feature_dim"])) or manifest["evidence"].get("version") != EVIDENCE_VERSION:
            raise ProjectorError(f"{mpath}: evidence layout v{manifest['evidence'].get('version')} / dim {e} is not this "
                                 f"runtime's v{EVIDENCE_VERSION}; rebuild: {REBUILD}")
        return cls(path=mpath, manifest=manifest, **arrays)

    def check_for(self, expert_manifest: str | Path | None, gguf: str | Path, n_embd: int | None = None) -> None:
        """Refuse to run with an expert or GGUF other than the ones this projector was trained for."""
        want = self.manifest.get("expert", {}).get("sha256")
        if expert_manifest is not None:
            have = sha256_file(Path(expert_manifest))
            if have != want:
                raise ProjectorError(
                    f"{self.path}: trained for the expert whose manifest has sha256 {str(want)[:12]}…, but this recipe's "
                    f"{expert_manifest} has sha256 {have[:12]}…; rebuild the projector for this expert: "
                    f"iad-export projector --expert {Path(expert_manifest).parent} --llm HF_DIR --data DATASET --out DIR")
        gguf = Path(gguf)
        want_llm = self.manifest.get("llm", {}).get("sha256")
        have_llm = _gguf_sha256(gguf)
        if have_llm != want_llm:
            raise ProjectorError(
                f"{self.path}: trained for the GGUF with sha256 {str(want_llm)[:12]}… "
                f"({self.manifest.get('llm', {}).get('gguf')}), but the model is {gguf} with sha256 {have_llm[:12]}…; "
                f"use that GGUF or rebuild the projector: {REBUILD}")
        if n_embd is not None and n_embd != self.n_embd:
            raise ProjectorError(f"{self.path}: makes {self.n_embd}-dim embeddings, {gguf.name} has hidden size {n_embd}; rebuild: {REBUILD}")

    # ------------------------------------------------------------------ prompt and answer
    def answer_grammar(self) -> str:
        """GBNF of the answer: exactly ``{"location": L, "defect_type": T, "severity": S}`` with the trained vocabularies."""
        def alt(values: Sequence[str]) -> str:
            return " | ".join(json.dumps(json.dumps(v)) for v in values)

        a = self.answer
        return (
            'root ::= "{\\"location\\": " loc ", \\"defect_type\\": " typ ", \\"severity\\": " sev "}"\n'
            f"loc ::= {alt(a['locations'])}\n"
            f"typ ::= {alt(a['defect_types'])}\n"
            f"sev ::= {alt(a['severities'])}\n"
        )

    def parse_answer(self, text: str) -> dict[str, str] | None:
        """The model's claims, or None when the text is not a complete answer."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        a = self.answer
        if (not isinstance(data, dict) or data.get("location") not in a["locations"]
                or data.get("defect_type") not in a["defect_types"] or data.get("severity") not in a["severities"]):
            return None
        return {k: str(data[k]) for k in ("location", "defect_type", "severity")}


def answer_text(location: str, defect_type: str, severity: str) -> str:
    """The answer exactly as the model is trained to write it (and the grammar allows)."""
    return json.dumps({"location": location, "defect_type": defect_type, "severity": severity})


def _gguf_sha256(path: Path) -> str:
    """sha256 of a GGUF: from the manifest beside it when that vouches for the file (size equal), else hashed."""
    mpath = path.with_name("manifest.json")
    if mpath.is_file():
        try:
            entry = json.loads(mpath.read_text()).get("files", {}).get(path.name)
            if isinstance(entry, dict) and entry.get("bytes") == path.stat().st_size and entry.get("sha256"):
                return str(entry["sha256"])
        except (OSError, ValueError):
            pass
    return sha256_file(path)
