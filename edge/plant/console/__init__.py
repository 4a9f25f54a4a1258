"""The technician console: a small web app in its own process (`iad-edge console RECIPE`).

It reads what the station publishes (MQTT decision/status/explanation), the NG
archive and the recipe file, and edits the recipe only through the live-reload
path: validate like `iad-edge check`, then write the file the station watches.
See docs/console.md.
"""
