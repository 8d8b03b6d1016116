"""The deployed functions, one module each: what `packages/dr/<fn>/__main__.py` calls (orchestration only)."""
