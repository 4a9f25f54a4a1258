"""Translate torch-hub DINOv2 state dicts (``dinov2_vits14_pretrain.pth`` …) to the
transformers ``Dinov2Model`` layout, and infer the architecture from the weights.

Why a translation instead of the hub code: the hub model needs the
``facebookresearch/dinov2`` repository (a download, plus xFormers paths), while
``transformers`` is already our reference implementation. The hub file carries
no config, so depth, width, patch size, MLP kind and register tokens are read
from tensor shapes; the head count (not stored anywhere) follows the DINOv2
convention of 64-dim heads unless given.

Works on plain tensors (``dict[str, Tensor]``); torch is imported lazily by the
caller, nothing here needs more than ``.shape`` and ``torch.cat``/``chunk``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export.errors import CheckpointError

# Standard DINOv2 backbones: (hidden, depth) -> (name, heads)
STANDARD_SIZES = {
    (384, 12): ("vits14", 6),
    (768, 12): ("vitb14", 12),
    (1024, 24): ("vitl14", 16),
    (1536, 40): ("vitg14", 24),
}

# Per-block renames hub -> HF (suffix after "blocks.N." / "encoder.layer.N.").
_BLOCK_RENAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.proj.weight": "attention.o_proj.weight",
    "attn.proj.bias": "attention.o_proj.bias",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "mlp.w3.weight": "mlp.down_proj.weight",
    "mlp.w3.bias": "mlp.down_proj.bias",
    "ls2.gamma": "layer_scale2.lambda1",
}
_TOP_RENAMES = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
# Prefixes of training checkpoints / wrapped models that are stripped before mapping.
_STRIP_PREFIXES = ("module.", "backbone.", "teacher.backbone.", "student.backbone.")
# Unwrap {"model": sd} / {"state_dict": sd} / {"teacher": sd} containers.
_CONTAINER_KEYS = ("teacher", "model", "state_dict", "model_state_dict")
# A chunked hub model ("block_chunks > 0") names blocks "blocks.<chunk>.<index>.".
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.(.+)$")
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HubArchitecture:
    """What the hub weights say about the model (enough to build a ``Dinov2Config``)."""

    name: str  # "vits14", "vitb14", ... or "custom-d{D}-l{L}"
    hidden_size: int
    num_layers: int
    num_heads: int
    patch_size: int
    image_size: int
    mlp_ratio: float
    use_swiglu: bool
    num_register_tokens: int

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Dinov2Config`` / ``Dinov2WithRegistersConfig``."""
        kwargs: dict[str, Any] = dict(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            patch_size=self.patch_size,
            image_size=self.image_size,
            mlp_ratio=self.mlp_ratio,
            use_swiglu_ffn=self.use_swiglu,
            layer_norm_eps=1e-6,
            qkv_bias=True,
        )
        if self.num_register_tokens:
            kwargs["num_register_tokens"] = self.num_register_tokens
        return kwargs


def unwrap_state_dict(obj: Any, source: str) -> dict[str, Any]:
    """Return the flat ``name -> tensor`` dict inside a loaded checkpoint object."""
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not any(hasattr(v, "shape") for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} does not contain a state dict (got {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if hasattr(v, "shape")}  # skip e.g. an "epoch" counter
    backbone_keys = [k for k in tensors if k.startswith(("backbone.", "teacher.backbone.", "student.backbone."))]
    if backbone_keys:
        # A training checkpoint: keep the backbone, drop the DINO/iBOT projection heads beside it.
        tensors = {k: tensors[k] for k in backbone_keys}
    flat: dict[str, Any] = {}
    for name, value in tensors.items():
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        flat[name] = value
    if not flat:
        raise CheckpointError(f"{source} holds no tensors, so it is not a model checkpoint")
    return flat


def is_hub_layout(state: Mapping[str, Any]) -> bool:
    """True for the torch-hub naming (``patch_embed.proj.weight``, ``blocks.N.*``)."""
    return "patch_embed.proj.weight" in state


def infer_architecture(state: Mapping[str, Any], source: str, num_heads: int | None = None) -> HubArchitecture:
    """Read the architecture from tensor shapes of a hub-layout state dict."""
    try:
        proj = state["patch_embed.proj.weight"]
        pos = state["pos_embed"]
    except KeyError as exc:
        raise CheckpointError(f"{source}: not a DINOv2 torch-hub state dict (no {exc.args[0]!r})") from None
    hidden, _, patch, _ = tuple(proj.shape)
    blocks = sorted({int(_block_index_and_rest(k)[0]) for k in state if k.startswith("blocks.")})
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"{source}: transformer blocks missing or not numbered 0..N-1 (found {blocks[:5]}…)")
    depth = len(blocks)
    num_positions = int(pos.shape[1]) - 1
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise CheckpointError(f"{source}: pos_embed has {num_positions} patch positions, not a square grid")
    registers = int(state["register_tokens"].shape[1]) if "register_tokens" in state else 0

    swiglu = "blocks.0.mlp.w12.weight" in state
    if swiglu:
        swiglu_hidden = int(state["blocks.0.mlp.w12.weight"].shape[0]) // 2
        mlp_ratio = _swiglu_ratio(hidden, swiglu_hidden, source)
    elif "blocks.0.mlp.fc1.weight" in state:
        mlp_ratio = int(state["blocks.0.mlp.fc1.weight"].shape[0]) / hidden
        if mlp_ratio.is_integer():
            mlp_ratio = int(mlp_ratio)
    else:
        raise CheckpointError(f"{source}: block 0 has neither mlp.fc1 nor mlp.w12 weights")

    standard = STANDARD_SIZES.get((hidden, depth))
    if num_heads is None:
        if standard is not None:
            num_heads = standard[1]
        elif hidden % 64 == 0:
            num_heads = hidden // 64
        else:
            raise CheckpointError(
                f"{source}: hidden size {hidden} is not a standard DINOv2 width; pass the head count (--num-heads)"
            )
    if hidden % num_heads:
        raise CheckpointError(f"{source}: hidden size {hidden} is not divisible by {num_heads} heads")
    name = standard[0] if standard is not None else f"custom-d{hidden}-l{depth}"
    return HubArchitecture(
        name=name,
        hidden_size=hidden,
        num_layers=depth,
        num_heads=num_heads,
        patch_size=int(patch),
        image_size=side * int(patch),
        mlp_ratio=mlp_ratio,
        use_swiglu=swiglu,
        num_register_tokens=registers,
    )


def _swiglu_ratio(hidden: int, swiglu_hidden: int, source: str) -> float:
    """Find the mlp_ratio for which transformers' SwiGLU sizing gives ``swiglu_hidden``."""

    def sized(ratio: float) -> int:
        return (int(int(hidden * ratio) * 2 / 3) + 7) // 8 * 8

    for ratio in (4, swiglu_hidden * 1.5 / hidden, 8 / 3 * 1.5):
        if sized(ratio) == swiglu_hidden:
            return ratio
    raise CheckpointError(f"{source}: SwiGLU hidden size {swiglu_hidden} cannot be expressed by transformers' sizing rule")


def _block_index_and_rest(key: str) -> tuple[str, str]:
    """Split ``blocks.N.rest`` (or chunked ``blocks.C.N.rest``) into ``(N, rest)``."""
    match = _CHUNKED_BLOCK.match(key) or _BLOCK.match(key)
    if not match:
        raise CheckpointError(f"unexpected block key {key!r}")
    return match.group(1), match.group(2)


def hub_to_hf(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Rename/split hub tensors into the transformers ``Dinov2Model`` key layout.

    ``attn.qkv`` is split into q/k/v, SwiGLU's fused ``w12`` into gate/up.
    Unknown keys are an error (a silently dropped weight would give a wrong model).
    """
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = tensor
            continue
        if not key.startswith("blocks."):
            unknown.append(key)
            continue
        index, rest = _block_index_and_rest(key)
        prefix = f"encoder.layer.{index}."
        if rest in ("attn.qkv.weight", "attn.qkv.bias"):
            kind = rest.rsplit(".", 1)[1]
            if tensor.shape[0] % 3:
                raise CheckpointError(f"{source}: {key} has {tensor.shape[0]} rows, not 3 × hidden")
            q, k, v = tensor.chunk(3, dim=0)
            out[f"{prefix}attention.q_proj.{kind}"] = q
            out[f"{prefix}attention.k_proj.{kind}"] = k
            out[f"{prefix}attention.v_proj.{kind}"] = v
        elif rest in ("mlp.w12.weight", "mlp.w12.bias"):
            kind = rest.rsplit(".", 1)[1]
            gate, up = tensor.chunk(2, dim=0)
            out[f"{prefix}mlp.gate_proj.{kind}"] = gate
            out[f"{prefix}mlp.up_proj.{kind}"] = up
        elif rest in _BLOCK_RENAMES:
            out[prefix + _BLOCK_RENAMES[rest]] = tensor
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        raise CheckpointError(
            f"{source}: {len(unknown)} unexpected key(s) for a DINOv2 torch-hub state dict: {shown}"
            + (" …" if len(unknown) > 8 else "")
        )
    return out


# transformers < 5 (and some 5.x) name the DINOv2 modules differently; the mapping above
# produces the current names and these convert between the two layouts.
_LEGACY_RENAMES = (
    ("attention.q_proj.", "attention.attention.query."),
    ("attention.k_proj.", "attention.attention.key."),
    ("attention.v_proj.", "attention.attention.value."),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.down_proj.", "mlp.weights_out."),
)


def uses_legacy_names(model_keys: Any) -> bool:
    """True when a model's state-dict keys use the pre-5 layout (``attention.attention.query``)."""
    return any(".attention.attention.query." in key for key in model_keys)


def to_legacy_names(state: Mapping[str, Any]) -> dict[str, Any]:
    """Current transformers names -> legacy ones (SwiGLU gate/up fused back into ``weights_in``)."""
    import torch

    out: dict[str, Any] = {}
    gates: dict[str, Any] = {}
    for key, tensor in state.items():
        if ".mlp.gate_proj." in key or ".mlp.up_proj." in key:
            gates[key] = tensor
            continue
        for new, old in _LEGACY_RENAMES:
            key = key.replace(new, old)
        out[key] = tensor
    for key in [k for k in gates if ".mlp.gate_proj." in k]:
        up = key.replace(".mlp.gate_proj.", ".mlp.up_proj.")
        out[key.replace(".mlp.gate_proj.", ".mlp.weights_in.")] = torch.cat([gates[key], gates[up]], dim=0)
    return out


def to_current_names(state: Mapping[str, Any]) -> dict[str, Any]:
    """Legacy transformers names -> current ones (inverse of :func:`to_legacy_names`)."""
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        if ".mlp.weights_in." in key:
            gate, up = tensor.chunk(2, dim=0)
            out[key.replace(".mlp.weights_in.", ".mlp.gate_proj.")] = gate
            out[key.replace(".mlp.weights_in.", ".mlp.up_proj.")] = up
            continue
        for new, old in _LEGACY_RENAMES:
            key = key.replace(old, new)
        out[key] = tensor
    return out


def hf_to_hub(state: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`hub_to_hf` (used by tests to fabricate hub checkpoints from tiny HF models)."""
    import torch  # export-only module; torch is present wherever this is called

    state = to_current_names(state)
    top = {v: k for k, v in _TOP_RENAMES.items()}
    block = {v: k for k, v in _BLOCK_RENAMES.items()}
    out: dict[str, Any] = {}
    pending: dict[tuple[str, str, str], Any] = {}
    for key, tensor in state.items():
        if key in top:
            out[top[key]] = tensor
            continue
        match = re.match(r"^encoder\.layer\.(\d+)\.(.+)$", key)
        if not match:
            raise ValueError(f"unexpected HF key {key!r}")
        index, rest = match.groups()
        part = re.match(r"^attention\.([qkv])_proj\.(weight|bias)$", rest) or re.match(
            r"^mlp\.(gate|up)_proj\.(weight|bias)$", rest
        )
        if part:
            pending[(index, part.group(1), part.group(2))] = tensor
        else:
            out[f"blocks.{index}.{block[rest]}"] = tensor
    indices = sorted({i for i, _, _ in pending}, key=int)
    for index in indices:
        for kind in ("weight", "bias"):
            if (index, "q", kind) in pending:
                out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat(
                    [pending[(index, p, kind)] for p in ("q", "k", "v")], dim=0
                )
            if (index, "gate", kind) in pending:
                out[f"blocks.{index}.mlp.w12.{kind}"] = torch.cat(
                    [pending[(index, p, kind)] for p in ("gate", "up")], dim=0
                )
    return out
