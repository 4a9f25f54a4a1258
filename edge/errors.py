"""Errors the runtime raises on purpose, each with a message a person can act on."""


class IadError(Exception):
    """Base of every deliberate iad-edge error (the CLI prints it without a traceback)."""


class BadFrameError(IadError):
    """A frame the expert cannot take (wrong dtype, empty, wrong channel count)."""


class ModelLoadError(IadError):
    """A model/engine file that is missing, corrupt, or does not match its manifest."""


class BankError(IadError):
    """A memory bank that is missing, corrupt, or does not fit the expert."""
