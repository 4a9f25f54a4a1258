"""iad-export: the offline step from checkpoints to deployable artifacts.

``iad-export dinov2`` turns a DINOv2 checkpoint (a local Hugging Face folder, a
torch-hub state dict, or ``--tiny`` random weights) into the region-expert ONNX
graph plus its ``manifest.json``. Only this package imports torch and
transformers; the runtime (:mod:`edge`) never does.
"""
