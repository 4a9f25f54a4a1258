"""Test doubles: stand-ins for libraries that cannot be installed on CI (named as doubles)."""
