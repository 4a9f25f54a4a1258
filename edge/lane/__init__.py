"""The real-time lane: acquire -> inspect -> decide -> publish, one decision per trigger.

Also what runs beside it in the same process: live recipe reload (:mod:`edge.lane.watch`),
shadow mode (:mod:`edge.lane.shadow`) and systemd notify/watchdog (:mod:`edge.lane.notify`).
Import :class:`edge.lane.lane.Lane` from its module.
"""
