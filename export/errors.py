"""Errors of the export step. They subclass :class:`edge.errors.IadError`, so the
CLI prints them as one clear line (no traceback) and exits non-zero."""

from edge.errors import IadError


class ExportError(IadError):
    """An export that cannot be done as asked (nothing is written)."""


class CheckpointError(ExportError):
    """A checkpoint path that is missing, of an unknown format, or with unexpected weights."""


class ParityError(ExportError):
    """The ONNX graph does not reproduce the PyTorch reference within tolerance."""
