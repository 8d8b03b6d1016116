"""The restore script gate: the restore runs as one transaction whose COMMIT is withheld until the script is whole."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from typing import Any

from drkit.core.errors import PgError
from drkit.postgres.placement import Entry

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


HEADER = re.compile(rb"^-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: .*\n$")
# session settings pg_restore writes between entries: kept when the entry around them is skipped
_BETWEEN = (b"SET default_tablespace = ", b"SET default_table_access_method = ")


def _quiet(line: bytes) -> bool:
    return line.strip() == b"" or line.startswith((b"--", b"\\restrict", b"\\unrestrict"))


class Gate:
    """A `pg_restore --single-transaction --file=-` script, with its final COMMIT withheld.

    Yields the script's lines, dropping `drop` statements outside COPY data (a row whose
    text is exactly such a statement is data, and kept), and keeps back the last top-level `COMMIT;`: the caller sends it
    only when everything upstream was verified. A `COMMIT;` line that more statements
    follow (inside a procedure's body, say) is passed on when they arrive. Raises
    PgError when the script does not open with BEGIN before its first statement, or
    ends without the COMMIT (pg_restore died, or its input was cut).

    With `decide`, whole archive entries are left out: each entry's heading
    (`-- Name: …; Type: …; Schema: …`) and first statement go to `decide`, which returns why
    to skip it, or None; `skipped` lists them. `preamble` statements follow the BEGIN.
    `entry_at(line)` names the entry that psql's line number `line` falls in.
    """

    def __init__(self, drop: frozenset[bytes] = frozenset(), decide: Callable[[Entry], str | None] | None = None,
                 preamble: Sequence[str] = ()):
        self.drop = drop
        self.decide = decide
        self.preamble = [f"{s}\n".encode() for s in preamble]
        self.skipped: list[tuple[str, str]] = []
        self._starts: list[int] = []   # output line numbers where entries begin
        self._labels: list[str] = []
        self.lines_out = 0

    def entry_at(self, line: int) -> str | None:
        i = bisect.bisect_right(self._starts, line) - 1
        return self._labels[i] if i >= 0 else None

    def _heading(self, pending: list[bytes], first: bytes) -> tuple[bool, list[bytes]]:
        """Decide an entry from its heading and first statement line: (skip, lines to yield)."""
        m = HEADER.match(pending[1])
        assert m is not None
        name, kind, schema = (g.decode("utf-8", "replace") for g in m.groups())
        entry = Entry(kind, None if schema == "-" else schema, name, first.decode("utf-8", "replace").strip()[:300])
        why = self.decide(entry) if self.decide else None
        if why is not None:
            self.skipped.append((entry.label, why))
            return True, []
        self._starts.append(self.lines_out + 1)
        self._labels.append(entry.label + (f" (`{entry.statement[:120]}`)" if entry.statement else ""))
        return False, pending

    def run(self, lines: Any) -> Any:
        in_copy = False
        began = False
        skipping = False
        held: list[bytes] = []     # a COMMIT line and the quiet lines after it
        pending: list[bytes] = []  # "--", a heading, and the quiet lines up to the entry's first statement
        for line in lines:
            if in_copy:
                if line == b"\\.\n":
                    in_copy = False
                if not skipping:
                    self.lines_out += 1
                    yield line
                continue
            if pending:
                if len(pending) == 1 and not HEADER.match(line):
                    out, pending = pending, []  # a "--" that heads no entry: an ordinary comment
                    for x in self._plain(out, skipping, held):
                        yield x
                elif _quiet(line):
                    pending.append(line)
                    continue
                else:
                    if held:  # the COMMIT before an entry was not the last statement: the previous entry's
                        if not skipping:
                            for x in held:
                                self.lines_out += 1
                                yield x
                        held = []
                    skipping, out = self._heading(pending, line)
                    pending = []
                    for x in out:
                        self.lines_out += 1
                        yield x
            if line == b"--\n" and began:
                pending = [line]
                continue
            quiet = _quiet(line)
            if held:
                if quiet:
                    held.append(line)
                    continue
                if not skipping:
                    for x in held:  # that COMMIT was not the last statement
                        self.lines_out += 1
                        yield x
                held = []
            if line == COMMIT:
                held = [line]
                continue
            if not quiet and not began:
                if line != BEGIN:
                    raise PgError("the restore script does not open a transaction (pg_restore --single-transaction)",
                                  tool="pg_restore")
                began = True
                self.lines_out += 1
                yield line
                for stmt in self.preamble:
                    self.lines_out += 1
                    yield stmt
                continue
            if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                in_copy = True
            elif line in self.drop:
                continue
            if skipping and not line.startswith(_BETWEEN):
                continue
            self.lines_out += 1
            yield line
        held.extend(pending)
        if not held:
            raise PgError("the restore script ended without its COMMIT (pg_restore stopped early)", tool="pg_restore")
        for x in held[1:]:
            self.lines_out += 1
            yield x

    def _plain(self, lines: list[bytes], skipping: bool, held: list[bytes]) -> Any:
        for x in lines:
            if held:
                held.append(x)
            elif not skipping:
                self.lines_out += 1
                yield x
