"""Plant-floor integration: Sparkplug B for SCADA, Prometheus metrics, the technician console.

None of it is on the decision path: Sparkplug and metrics hang off the lane's
post-thread observer (and their own threads), the console is its own process
that reads MQTT, the archive and the recipe file.
"""
