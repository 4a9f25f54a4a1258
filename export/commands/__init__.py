"""Sub-commands of ``iad-export``: every module here with a ``register(subparsers)``
function becomes a command (discovered at start-up, so adding one needs no edit
of :mod:`export.cli`)."""
