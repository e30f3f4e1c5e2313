"""The agent's side of the message bus: the run publisher and its spool (the embedded NATS server of local mode is the
CLI's: mlmodelscope.cli.nats_server)."""
