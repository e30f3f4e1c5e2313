"""Running an evaluation under MLPerf LoadGen and describing its result."""
