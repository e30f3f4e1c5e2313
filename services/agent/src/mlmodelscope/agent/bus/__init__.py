"""The agent's side of the message bus: an embedded NATS server for local mode, and the run publisher."""
