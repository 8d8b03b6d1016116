"""The operator CLI (`scripts/drkit`), one module per command group; `main` builds the parser."""
