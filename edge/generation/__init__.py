"""Mask-guided defect generation: a realistic defect of a chosen type, inside a mask.

Used by operators (``iad-edge generate``: what would this defect look like), by
``iad-edge calibrate --synthetic N`` (synthetic NG images for threshold
selection without scrap parts) and by the assistant's self-test canary.

The one promise that matters for all three: pixels outside the mask's feather
band are bit-identical to the input, so a generated image is a faithful
full-resolution frame with exactly one edited place.
"""

from edge.generation.errors import GenerationError
from edge.generation.generator import DEFECT_TYPES, GeneratedDefect, generate_defect, normalise_defect_type
from edge.generation.masks import feather_alpha, random_defect_mask, validate_mask
from edge.generation.synthetic import SyntheticDefect, synthesize_defect

__all__ = [
    "DEFECT_TYPES",
    "GeneratedDefect",
    "GenerationError",
    "SyntheticDefect",
    "feather_alpha",
    "generate_defect",
    "normalise_defect_type",
    "random_defect_mask",
    "synthesize_defect",
    "validate_mask",
]
