"""The assistant lane: grounded explanations of NG regions with a GGUF model, defect generation requests.

Runs in its own process at lower CPU/IO priority and yields to the real-time
lane between generated tokens (``busy_signal``). Nothing here is imported by
the real-time lane except :mod:`edge.assistant.busy_signal` (the flag it sets)
and :mod:`edge.assistant.spool` (where it drops NG jobs) — both stdlib-only.
"""
