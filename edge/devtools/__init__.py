"""Tooling for tests, benchmarks and the demo (a throw-away mosquitto); never used by `iad-edge run`."""
