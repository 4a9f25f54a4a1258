"""The region-expert graph: uint8 RGB NHWC tiles + memory bank -> patch distances + features.

Everything that must be bit-for-bit the same on every backend lives *inside*
the graph: uint8 -> float, /255, ImageNet mean/std, DINOv2, patch-token
selection (CLS and register tokens dropped), L2 normalisation and the cosine
k=1 nearest-neighbour distance to the bank. The runtime then only cuts tiles
and post-processes maps, so ORT CPU/CUDA/TensorRT cannot drift apart in
preprocessing. The bank is an *input*, not a constant: recalibration swaps a
tensor and never needs a re-export or engine rebuild.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INPUT_NAMES = ("tiles", "bank")
OUTPUT_NAMES = ("distances", "features")


def bake_position_embeddings(backbone: nn.Module, resolution: int) -> None:
    """Replace DINOv2's per-call position-embedding interpolation by its result at ``resolution``.

    Why: the resolution is fixed per export, so interpolating the 37x37 grid of
    the checkpoint on every call is wasted work, and the registers variant uses
    antialiased bicubic resampling, which has no ONNX operator. The values are
    computed once here by transformers' own code, so they equal what the model
    computes in eager mode. The backbone then only accepts ``resolution`` inputs.
    """
    embeddings = backbone.embeddings
    dim = embeddings.position_embeddings.shape[-1]
    patch = embeddings.patch_embeddings.patch_size
    patch = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
    grid = resolution // patch
    with torch.no_grad():
        dummy = torch.zeros(1, 1 + grid * grid, dim, dtype=embeddings.position_embeddings.dtype)
        fixed = embeddings.interpolate_pos_encoding(dummy, resolution, resolution).detach().clone()
    embeddings.register_buffer("iad_fixed_positions", fixed, persistent=False)

    def fixed_positions(_embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if height != resolution or width != resolution:
            raise ValueError(f"this expert is exported for {resolution}x{resolution} tiles, got {height}x{width}")
        return embeddings.iad_fixed_positions

    embeddings.interpolate_pos_encoding = fixed_positions


class RegionExpertGraph(nn.Module):
    """Wrap a transformers DINOv2 backbone into the exported contract.

    ``forward(tiles uint8 [B, R, R, 3], bank float32 [N, D])`` returns
    ``distances float32 [B, R/p, R/p]`` (1 - max cosine similarity to the bank)
    and ``features float32 [B, R/p, R/p, D]`` (L2-normalised patch tokens of
    the last block, after the final LayerNorm).

    Note: the backbone is modified in place (position embeddings baked for
    ``resolution``, see :func:`bake_position_embeddings`).
    """

    def __init__(self, backbone: nn.Module, resolution: int, patch_size: int, num_register_tokens: int = 0) -> None:
        super().__init__()
        if resolution % patch_size:
            raise ValueError(f"resolution {resolution} is not a multiple of the patch size {patch_size}")
        bake_position_embeddings(backbone, resolution)
        self.backbone = backbone
        self.resolution = resolution
        self.patch_size = patch_size
        self.grid = resolution // patch_size
        self.feature_dim = int(backbone.config.hidden_size)
        self.num_prefix_tokens = 1 + num_register_tokens  # CLS + registers precede the patch tokens
        # Folded into one scale/shift per channel: x*scale + shift == (x/255 - mean)/std.
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def patch_features(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 [B, R, R, 3] -> L2-normalised patch tokens float32 [B, h*w, D]."""
        pixels = tiles.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift
        hidden = self.backbone(pixel_values=pixels).last_hidden_state
        patches = hidden[:, self.num_prefix_tokens :, :]
        return F.normalize(patches, p=2.0, dim=-1, eps=1e-12)

    def forward(self, tiles: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patch_features(tiles)
        dim = self.feature_dim  # a Python int, so the ONNX output shape is static but for B
        flat = features.reshape(-1, dim)  # [B*h*w, D]
        similarity = torch.matmul(flat, bank.transpose(0, 1))  # [B*h*w, N]
        best = similarity.max(dim=1).values
        distances = (1.0 - best).reshape(-1, self.grid, self.grid)
        return distances, features.reshape(-1, self.grid, self.grid, dim)
