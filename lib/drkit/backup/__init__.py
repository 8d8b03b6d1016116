"""Database backups: the dump pipeline and its manifest, the catalog bookkeeping, retention applied."""
