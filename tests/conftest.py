"""Test-suite wiring: every module in tests/fixtures/ contributes fixtures.

One fixture module per concern (tiny expert, broker, GGUF, ...) so that work on
different parts of the suite never edits the same file.
"""

import importlib
import pkgutil

import tests.fixtures as _fixtures

for _info in pkgutil.iter_modules(_fixtures.__path__):
    _module = importlib.import_module(f"tests.fixtures.{_info.name}")
    globals().update({k: v for k, v in vars(_module).items() if not k.startswith("_")})
