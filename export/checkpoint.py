"""Load a DINOv2 backbone from a *local* checkpoint, or build the seeded tiny one.

Three sources, one result (:class:`LoadedBackbone`, a transformers model in
eval/float32 plus what the manifest records about where it came from):

* a Hugging Face folder (``config.json`` + ``model.safetensors`` /
  ``pytorch_model.bin``, possibly sharded), e.g. a copy of facebook/dinov2-small;
* a torch-hub state dict file (``dinov2_vits14_pretrain.pth``, ``*_reg4_*``,
  or the same tensors as ``.safetensors``), translated by :mod:`export.hub_keys`;
* ``tiny``: a deterministic randomly initialised DINOv2 of the real
  architecture (patch 14) for tests and the demo.

Nothing is ever downloaded: ``HF_HUB_OFFLINE`` is forced on and every
transformers call passes ``local_files_only=True``. Pickles are never executed
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Belt and braces: local_files_only=True below is the guarantee; these stop any other hub call.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # after the offline switches, before transformers

from edge.expert.manifest import sha256_file
from export.errors import CheckpointError
from export.hub_keys import (
    hub_to_hf,
    infer_architecture,
    is_hub_layout,
    to_legacy_names,
    unwrap_state_dict,
    uses_legacy_names,
)

# The tiny expert: real DINOv2 layout (patch 14, layer scale, 518-px position grid
# interpolated like the real checkpoints), small width/depth so tests take seconds.
TINY_CONFIG: dict[str, Any] = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,
    layer_norm_eps=1e-6,
    qkv_bias=True,
)
TINY_SEED = 0

_HF_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
_HF_WEIGHT_PATTERNS = ("model.safetensors", "pytorch_model.bin", "model-*-of-*.safetensors", "pytorch_model-*-of-*.bin")
# Tensors a checkpoint may lack without changing inference (mask_token is used only in pre-training).
_OPTIONAL_KEYS = ("embeddings.mask_token",)


@dataclass
class LoadedBackbone:
    """A DINOv2 backbone ready for export, with its provenance for the manifest."""

    model: torch.nn.Module
    architecture: str  # e.g. "dinov2-vits14", "dinov2-vits14-reg4", "dinov2-tiny"
    patch_size: int
    feature_dim: int
    num_register_tokens: int
    source: dict[str, Any] = field(default_factory=dict)


def load_backbone(
    checkpoint: os.PathLike[str] | str | None = None,
    tiny: bool = False,
    seed: int = TINY_SEED,
    num_heads: int | None = None,
) -> LoadedBackbone:
    """Dispatch on the source kind; exactly one of ``checkpoint`` / ``tiny`` must be given."""
    if tiny == (checkpoint is not None):
        raise CheckpointError("give exactly one of a checkpoint path or tiny=True")
    if tiny:
        return build_tiny(seed)
    path = Path(checkpoint).expanduser()  # type: ignore[arg-type]
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist (nothing is downloaded: give a local Hugging Face folder "
            "or a torch-hub .pth file)"
        )
    if path.is_dir():
        return load_hf_folder(path)
    return load_hub_file(path, num_heads=num_heads)


def _dinov2_classes(registers: bool) -> tuple[type, type]:
    if registers:
        from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

        return Dinov2WithRegistersConfig, Dinov2WithRegistersModel
    from transformers import Dinov2Config, Dinov2Model

    return Dinov2Config, Dinov2Model


def _finish(model: torch.nn.Module) -> torch.nn.Module:
    model = model.to(torch.float32)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def build_tiny(seed: int = TINY_SEED) -> LoadedBackbone:
    """The seeded tiny DINOv2: the same seed gives bit-identical weights (and thus the same graph)."""
    config_cls, model_cls = _dinov2_classes(registers=False)
    config = config_cls(**TINY_CONFIG, attn_implementation="eager")
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_cls(config)
    finally:
        torch.random.set_rng_state(generator_state)  # do not disturb the caller's RNG
    identity = json.dumps({"seed": seed, "config": TINY_CONFIG}, sort_keys=True)
    return LoadedBackbone(
        model=_finish(model),
        architecture="dinov2-tiny",
        patch_size=TINY_CONFIG["patch_size"],
        feature_dim=TINY_CONFIG["hidden_size"],
        num_register_tokens=0,
        source={
            "format": "tiny",
            "path": None,
            "seed": seed,
            "config": dict(TINY_CONFIG),
            "sha256": hashlib.sha256(identity.encode()).hexdigest(),
        },
    )


def _architecture_name(hidden: int, depth: int, registers: int) -> str:
    from export.hub_keys import STANDARD_SIZES

    standard = STANDARD_SIZES.get((hidden, depth))
    name = f"dinov2-{standard[0]}" if standard else f"dinov2-custom-d{hidden}-l{depth}"
    return f"{name}-reg{registers}" if registers else name


def _folder_weight_files(folder: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in _HF_WEIGHT_PATTERNS:
        files.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(files)


def _combined_sha(files: list[Path], root: Path) -> tuple[str, dict[str, str]]:
    """Per-file sha256 and one digest over ``name:sha`` lines (stable whatever the order on disk)."""
    per_file = {str(p.relative_to(root)): sha256_file(p) for p in files}
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(per_file.items())).encode()).hexdigest()
    return combined, per_file


def load_hf_folder(folder: Path) -> LoadedBackbone:
    """Load a ``save_pretrained`` folder of ``Dinov2Model`` / ``Dinov2WithRegistersModel``."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{folder} is a folder but has no config.json: expected a Hugging Face DINOv2 folder "
            "(config.json + model.safetensors or pytorch_model.bin)"
        )
    try:
        config_data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_file} is not valid JSON ({exc})") from None
    model_type = config_data.get("model_type") if isinstance(config_data, dict) else None
    if model_type not in _HF_MODEL_TYPES:
        raise CheckpointError(f"{config_file}: model_type is {model_type!r}, expected one of {', '.join(_HF_MODEL_TYPES)}")
    weights = _folder_weight_files(folder)
    if not weights:
        raise CheckpointError(f"{folder} has a config.json but no weights (model.safetensors or pytorch_model.bin)")

    registers = model_type == "dinov2_with_registers"
    _, model_cls = _dinov2_classes(registers)
    try:
        model, info = model_cls.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, attn_implementation="eager"
        )
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, safetensors errors)
        raise CheckpointError(f"cannot load the Hugging Face checkpoint in {folder}: {exc}") from None
    missing = [k for k in info.get("missing_keys", []) if k not in _OPTIONAL_KEYS]
    unexpected = list(info.get("unexpected_keys", []))
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{folder}: the weights do not fit {model_cls.__name__} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {mismatched[:5]})"
        )
    config = model.config
    num_registers = int(getattr(config, "num_register_tokens", 0) or 0) if registers else 0
    combined, per_file = _combined_sha(weights + [config_file], folder)
    return LoadedBackbone(
        model=_finish(model),
        architecture=_architecture_name(config.hidden_size, config.num_hidden_layers, num_registers),
        patch_size=int(config.patch_size),
        feature_dim=int(config.hidden_size),
        num_register_tokens=num_registers,
        source={"format": "hf-folder", "path": str(folder.resolve()), "sha256": combined, "files": per_file},
    )


def _read_state_file(path: Path) -> Any:
    """Load tensors without executing pickled code; a non-checkpoint file is a CheckpointError."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a PyTorch state-dict checkpoint (torch.load with weights_only=True failed: {reason})"
        ) from None


def load_hub_file(path: Path, num_heads: int | None = None) -> LoadedBackbone:
    """Load a torch-hub DINOv2 state dict; the architecture is inferred from tensor shapes."""
    source = str(path)
    state = unwrap_state_dict(_read_state_file(path), source)
    if not is_hub_layout(state):
        if any(k.startswith("embeddings.") for k in state):
            raise CheckpointError(
                f"{path} holds Hugging Face-layout weights without a config: pass the folder with its config.json"
            )
        raise CheckpointError(
            f"{path}: not a DINOv2 torch-hub state dict (no 'patch_embed.proj.weight'; first keys: "
            f"{', '.join(list(state)[:5])})"
        )
    arch = infer_architecture(state, source, num_heads=num_heads)
    hf_state = hub_to_hf(state, source)
    config_cls, model_cls = _dinov2_classes(arch.num_register_tokens > 0)
    config = config_cls(**arch.config_kwargs(), attn_implementation="eager")
    model = model_cls(config)
    if uses_legacy_names(model.state_dict().keys()):  # older transformers module layout
        hf_state = to_legacy_names(hf_state)
    try:
        result = model.load_state_dict(hf_state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path}: tensor shapes do not fit the inferred {arch.name}: {exc}") from None
    missing = [k for k in result.missing_keys if k not in _OPTIONAL_KEYS]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit the inferred {arch.name} (missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]})"
        )
    return LoadedBackbone(
        model=_finish(model),
        architecture=_architecture_name(arch.hidden_size, arch.num_layers, arch.num_register_tokens),
        patch_size=arch.patch_size,
        feature_dim=arch.hidden_size,
        num_register_tokens=arch.num_register_tokens,
        source={"format": "torch-hub", "path": str(path.resolve()), "sha256": sha256_file(path)},
    )
