"""Storage: the SQL schema, its versioned migrations, the engine, idempotent ingestion and the read queries."""
