"""Random-weight DINOv2 checkpoints of the real architectures, exported once per benchmark run.

Benchmarks measure the architecture (ViT-S/14, ViT-B/14), not the weights, so
random initialisation gives the real cost without any download.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = {
    "vits14": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "vitb14": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
}


def random_checkpoint(folder: Path, arch: str = "vits14", seed: int = 0) -> Path:
    """Save a randomly initialised Dinov2Model of ``arch`` as a Hugging Face folder."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0, **ARCHITECTURES[arch])
    model = Dinov2Model(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def exported_expert(workdir: Path, arch: str, resolution: int) -> Path:
    """expert.onnx of a random ``arch`` at ``resolution`` (cached in ``workdir``)."""
    from export.dinov2 import export_dinov2

    out = workdir / f"{arch}-{resolution}"
    if not (out / "expert.onnx").exists():
        checkpoint = workdir / f"{arch}-checkpoint"
        if not (checkpoint / "config.json").exists():
            random_checkpoint(checkpoint, arch)
        export_dinov2(out, checkpoint=checkpoint, resolution=resolution, progress=lambda _msg: None)
    return out / "expert.onnx"
