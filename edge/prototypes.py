"""Few-shot defect-type prototypes: name a region's defect type from its DINOv2 feature.

``iad-edge calibrate --defects DIR`` (one sub-folder per defect type, a few NG
images each) inspects every image, takes the pooled L2-normalised feature of
its strongest region, and keeps one prototype per type: the normalised mean of
its shots (plus the shots themselves). Features are first *centred* on the
mean of all shots: pooled DINOv2 features share a large common component
("this is a defect on this part"), and removing it lets the type-specific
part decide (measured on the tiny random expert, scratch vs missing, 8 shots:
top-1 0.93 without centring, 0.97 with). At run time a region's centred
feature is compared to every prototype by cosine similarity and the top-k types go into
the assistant's prompt as *candidates with a similarity*. Without prototypes
the candidate list is empty: the model is never handed an invented type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge.errors import IadError
from edge.files import load_npz, save_npz
from edge.imageio import IMAGE_SUFFIXES, read_image

log = logging.getLogger(__name__)

PROTOTYPES_FORMAT = "iad-prototypes/1"


class PrototypeError(IadError):
    """Prototypes that cannot be built or read (empty folders, no regions found, wrong file)."""


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class Prototypes:
    """One L2-normalised prototype per defect type ([K, D]) and the shots it was made from."""

    types: list[str]
    features: np.ndarray  # [K, D] normalised mean of each type's centred, normalised shots
    shots: np.ndarray  # [S, D] every shot (normalised, not centred)
    shot_types: list[str]  # type of each shot
    meta: dict[str, Any] = field(default_factory=dict)
    center: np.ndarray | None = None  # [D] mean of all shots (zeros for a single type)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def match(self, feature: np.ndarray | None, k: int = 3) -> list[dict[str, Any]]:
        """Top-``k`` defect types for a region feature: ``[{"type", "similarity"}]``, most similar first.

        A type's similarity is the cosine to its prototype. A missing feature
        gives an empty list; a feature of the wrong size is an error (the
        prototypes were made with another expert).
        """
        if feature is None:
            return []
        f = _normalise(np.asarray(feature, dtype=np.float32).reshape(-1))
        if f.shape[0] != self.dim:
            raise PrototypeError(
                f"region feature has {f.shape[0]} dims but the prototypes have {self.dim}; "
                "rebuild them with `iad-edge calibrate --defects DIR` for this expert"
            )
        if self.center is not None:
            f = _normalise(f - self.center)
        sims = self.features @ f
        order = np.argsort(-sims, kind="stable")[: max(0, k)]
        return [{"type": self.types[i], "similarity": round(float(sims[i]), 4)} for i in order]

    def save(self, path: str | Path) -> Path:
        """Write atomically as ``.npz`` (:func:`edge.files.save_npz`)."""
        meta = dict(self.meta, format=PROTOTYPES_FORMAT, types=self.types, shot_types=self.shot_types)
        center = self.center if self.center is not None else np.zeros(self.dim, np.float32)
        return save_npz(path, meta, {"features": self.features, "shots": self.shots, "center": center})

    @classmethod
    def load(cls, path: str | Path) -> Prototypes:
        path = Path(path)
        if not path.is_file():
            raise PrototypeError(f"{path}: no prototypes file; build it with `iad-edge calibrate RECIPE --defects DIR`")
        try:
            meta, arrays = load_npz(path, ("features", "shots", "center"))
        except (OSError, ValueError, KeyError) as exc:
            raise PrototypeError(f"{path}: not a readable prototypes file ({exc})") from None
        features = arrays["features"]
        if meta.get("format") != PROTOTYPES_FORMAT or features.ndim != 2 or len(meta.get("types", [])) != features.shape[0]:
            raise PrototypeError(f"{path}: not an {PROTOTYPES_FORMAT} file; rebuild it with `iad-edge calibrate --defects DIR`")
        return cls(list(meta["types"]), features, arrays["shots"], list(meta.get("shot_types", [])), meta, arrays["center"])


def prototypes_from_features(shots: Mapping[str, Sequence[np.ndarray]], meta: dict | None = None) -> Prototypes:
    """Prototypes from already pooled region features, ``{type: [feature, ...]}``."""
    types = sorted(t for t, feats in shots.items() if len(feats))
    empty = sorted(t for t, feats in shots.items() if not len(feats))
    if empty:
        raise PrototypeError(f"no usable example for defect type(s) {', '.join(empty)}")
    if not types:
        raise PrototypeError("no defect examples given")
    per_type = {t: _normalise(np.stack([np.asarray(v, np.float32).reshape(-1) for v in shots[t]])) for t in types}
    all_shots = np.concatenate([per_type[t] for t in types])
    shot_types = [t for t in types for _ in range(len(per_type[t]))]
    # centring needs two types at least: with one, the centred shots would average to ~0
    center = all_shots.mean(axis=0) if len(types) > 1 else np.zeros(all_shots.shape[1], np.float32)
    protos = np.stack([_normalise(_normalise(per_type[t] - center).mean(axis=0)) for t in types])
    return Prototypes(types, protos, all_shots, shot_types,
                      dict(meta or {}, shots_per_type={t: len(shots[t]) for t in types}), center.astype(np.float32))


def strongest_region_feature(result: Any) -> np.ndarray | None:
    """Feature of the region with the highest peak in an InspectionResult (None when there is no region)."""
    regions = [r for r in getattr(result, "regions", []) if getattr(r, "feature", None) is not None]
    if not regions:
        return None
    return max(regions, key=lambda r: r.peak).feature


def build_prototypes(
    inspector: Any,
    defects_dir: str | Path,
    progress: bool = True,
    min_shots: int = 1,
    read: Callable[[Path], np.ndarray] | None = None,
) -> Prototypes:
    """Inspect ``defects_dir/<type>/*`` and build one prototype per type from the strongest region's feature.

    ``inspector``: an :class:`edge.inspector.Inspector` with its bank loaded
    (the regions come from the same expert, thresholds and ROI that run on the
    line). Images where the expert finds no region are skipped with a warning;
    a type with fewer than ``min_shots`` usable images is an error naming it.
    This is what ``iad-edge calibrate RECIPE --defects DIR`` calls; save the
    result with ``.save(path)`` and set ``assistant.prototypes`` to that path.
    """

    read = read or read_image
    root = Path(defects_dir)
    if not root.is_dir():
        raise PrototypeError(f"{root}: defects folder not found (expected one sub-folder per defect type)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise PrototypeError(f"{root}: no sub-folders; put the examples of each defect type in its own folder, e.g. {root}/scratch/")
    shots: dict[str, list[np.ndarray]] = {}
    skipped: list[str] = []
    jobs = [(f.name, p) for f in folders for p in sorted(f.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    empty = [f.name for f in folders if not any(t == f.name for t, _ in jobs)]
    if empty:
        raise PrototypeError(f"{root}: no images in {', '.join(empty)} (supported: {', '.join(IMAGE_SUFFIXES)})")
    iterator: Iterable = jobs
    if progress:

        iterator = tqdm(jobs, desc="defect prototypes", unit="img")
    for kind, path in iterator:
        feature = strongest_region_feature(inspector.inspect(read(path)))
        if feature is None:
            skipped.append(str(path))
            log.warning("%s: the expert found no region in this defect example; skipped", path)
            continue
        shots.setdefault(kind, []).append(feature)
    few = [f"{f.name} ({len(shots.get(f.name, []))} usable)" for f in folders if len(shots.get(f.name, [])) < min_shots]
    if few:
        raise PrototypeError(
            f"{root}: too few examples where the expert found a region: {', '.join(few)}; "
            f"need at least {min_shots} per type (check thresholds.pixel or add clearer examples)"
        )
    return prototypes_from_features(shots, {"source": str(root), "skipped": skipped})


def load_prototypes(path: str | Path | None) -> Prototypes | None:
    """The recipe's prototypes, or None when ``assistant.prototypes`` is not set."""
    return Prototypes.load(path) if path else None


def match_candidates(prototypes: Prototypes | None, feature: np.ndarray | None, k: int = 3) -> list[dict[str, Any]]:
    """Candidates for a region; empty when there are no prototypes or no feature (never invented)."""
    return prototypes.match(feature, k) if prototypes is not None else []
