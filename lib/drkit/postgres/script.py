"""The restore script gate: the restore runs as one transaction whose COMMIT is withheld until the script is whole."""

from __future__ import annotations

from typing import Any

from drkit.core.errors import PgError

# -- restore targets ---------------------------------------------------------------------

# Session settings pg_restore 18 always sends that older servers reject, with the
# first server version that knows them. For such targets drkit restores through
# `pg_restore -f -` (a script), drops exactly these statements outside COPY data,
# and runs the script with `psql -v ON_ERROR_STOP=1`: still strict, no ignored errors.
UNKNOWN_BEFORE: dict[bytes, int] = {
    b"SET transaction_timeout = 0;\n": 170000,
}


def restore_strategy(server_version_num: int) -> tuple[str, frozenset[bytes]]:
    """("direct", {}) or ("script", statements to drop) for a target server version."""
    drop = frozenset(stmt for stmt, since in UNKNOWN_BEFORE.items() if server_version_num < since)
    return ("script", drop) if drop else ("direct", frozenset())


COMMIT = b"COMMIT;\n"
BEGIN = b"BEGIN;\n"


def gate_script(lines: Any, drop: frozenset[bytes]) -> Any:
    """A `pg_restore --single-transaction --file=-` script, with its final COMMIT withheld.

    Yields the script's lines, dropping `drop` statements outside COPY data (a row whose
    text is exactly such a statement is data, and kept), and keeps back the last top-level `COMMIT;`: the caller sends it
    only when everything upstream was verified. A `COMMIT;` line that more statements
    follow (inside a procedure's body, say) is passed on when they arrive. Raises
    PgError when the script does not open with BEGIN before its first statement, or
    ends without the COMMIT (pg_restore died, or its input was cut).
    """
    in_copy = False
    began = False
    held: list[bytes] = []  # a COMMIT line and the comments/blank lines/\unrestrict after it
    for line in lines:
        if in_copy:
            if line == b"\\.\n":
                in_copy = False
            yield line
            continue
        quiet = line.strip() == b"" or line.startswith((b"--", b"\\restrict", b"\\unrestrict"))
        if held:
            if quiet:
                held.append(line)
                continue
            yield from held  # that COMMIT was not the last statement
            held = []
        if line == COMMIT:
            held = [line]
            continue
        if not quiet and not began:
            if line != BEGIN:
                raise PgError("the restore script does not open a transaction (pg_restore --single-transaction)",
                              tool="pg_restore")
            began = True
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            in_copy = True
        elif line in drop:
            continue
        yield line
    if not held:
        raise PgError("the restore script ended without its COMMIT (pg_restore stopped early)", tool="pg_restore")
    yield from held[1:]
