"""The error generation raises for inputs it cannot use."""

from edge.errors import IadError


class GenerationError(IadError):
    """Bad input to defect generation (mask size, empty mask, unknown type, image dtype)."""
