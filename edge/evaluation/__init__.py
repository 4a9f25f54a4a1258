"""Offline evaluation of a recipe on MVTec-layout / VisA datasets (`iad-edge eval`).

Not part of the real-time lane: this package may use matplotlib and tqdm, and
imports them lazily so that ``import edge`` stays light.
"""
