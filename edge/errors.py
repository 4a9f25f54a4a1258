"""Errors the runtime raises on purpose, each with a message a person can act on."""


class IadError(Exception):
    """Base of every deliberate iad-edge error (the CLI prints it without a traceback)."""


class BadFrameError(IadError):
    """A frame the expert cannot take (wrong dtype, empty, wrong channel count)."""


class ModelLoadError(IadError):
    """A model/engine file that is missing, corrupt, or does not match its manifest."""


class BankError(IadError):
    """A memory bank that is missing, corrupt, or does not fit the expert."""


class NonFiniteError(IadError):
    """The expert or the scoring produced NaN or infinity (e.g. an FP16 overflow): no verdict can be trusted.

    The lane answers such a frame with the fail-safe verdict and counts it as ``non_finite``.
    """
