"""Recipe (calibration YAML) models and loading.

``load_recipe`` is the one entry point the rest of the runtime uses;
``parse_recipe`` validates text in memory (live reload, `iad-edge check`).
"""

from edge.config.loader import RecipeError, load_recipe, parse_recipe
from edge.config.recipe import Recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "parse_recipe"]
