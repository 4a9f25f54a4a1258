"""MQTT side of the real-time lane: topics, payloads, the durable result outbox and the client.

The client never blocks the lane on the network: paho's network thread sends,
decisions are dropped (and counted) rather than queued while the broker is
away, and full results wait in the SQLite outbox until the broker acknowledges them.
"""
