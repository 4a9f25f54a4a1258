"""The real-time lane: acquire -> inspect -> decide -> publish, one decision per trigger.

Import :class:`edge.lane.lane.Lane` from its module (this package stays import-free
so that :mod:`edge.mqtt.payloads` can use :mod:`edge.lane.decision` without cycles).
"""
