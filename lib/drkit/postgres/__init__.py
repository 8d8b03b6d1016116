"""PostgreSQL: tool binaries, connections, the dump source snapshot, the restore engine, database admin."""
