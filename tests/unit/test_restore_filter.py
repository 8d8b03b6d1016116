"""The restore-script gate: one transaction whose COMMIT only drkit sends (pure)."""

from __future__ import annotations

import pytest

from drkit.core.errors import PgError
from drkit.postgres import script

DROP = frozenset({b"SET transaction_timeout = 0;\n"})
HEAD = [b"--\n", b"-- PostgreSQL database dump\n", b"\\restrict abc\n", b"\n", b"BEGIN;\n", b"\n"]
TAIL = [b"COMMIT;\n", b"\n", b"--\n", b"-- PostgreSQL database dump complete\n", b"\\unrestrict abc\n", b"\n"]


def gate(lines: list[bytes], drop: frozenset[bytes] = DROP) -> list[bytes]:
    return list(script.Gate(drop).run(iter(lines)))


def test_strategy_by_target_version() -> None:
    assert script.restore_strategy(180001) == ("direct", frozenset())
    assert script.restore_strategy(170004) == ("direct", frozenset())
    strategy, drop = script.restore_strategy(160010)
    assert strategy == "script" and drop == {b"SET transaction_timeout = 0;\n"}
    assert script.restore_strategy(150008)[0] == "script"


def test_the_final_commit_is_withheld_and_the_rest_passes() -> None:
    body = [b"SET statement_timeout = 0;\n", b"CREATE TABLE t (a int);\n", b"COPY public.t (a) FROM stdin;\n",
            b"1\n", b"\\.\n"]
    out = gate(HEAD + body + TAIL)
    assert out == HEAD + body + TAIL[1:]  # everything but the COMMIT, which drkit sends after its checks


def test_the_statement_is_dropped_only_outside_copy_data() -> None:
    body = [b"SET transaction_timeout = 0;\n", b"CREATE TABLE notes (body text);\n",
            b"COPY public.notes (body) FROM stdin;\n",
            b"SET transaction_timeout = 0;\n",  # a row whose text is exactly the statement: data, kept
            b"COMMIT;\n",  # a row that reads COMMIT; is data too
            b"\\.\n", b"SET transaction_timeout = 0;\n", b"SELECT 1;\n"]
    out = gate(HEAD + body + TAIL)
    assert out == HEAD + body[1:6] + body[7:] + TAIL[1:]
    assert gate(HEAD + body + TAIL, frozenset()) == HEAD + body + TAIL[1:]


def test_a_commit_inside_a_procedure_body_is_passed_on() -> None:
    body = [b"CREATE PROCEDURE public.p()\n", b"    AS $$\n", b"BEGIN\n", b"COMMIT;\n", b"\n", b"END $$;\n"]
    assert gate(HEAD + body + TAIL) == HEAD + body + TAIL[1:]


@pytest.mark.parametrize("cut", [len(HEAD) + 1, len(HEAD) + 3, len(HEAD) + 4, len(HEAD) + 5])
def test_a_script_cut_anywhere_before_its_commit_is_refused(cut: int) -> None:
    """pg_restore died or its input was cut: even at a row boundary, no COMMIT ever reaches psql."""
    body = [b"CREATE TABLE t (a int);\n", b"COPY public.t (a) FROM stdin;\n", b"1\n", b"2\n", b"\\.\n"]
    lines = (HEAD + body + TAIL)[:cut]
    sent: list[bytes] = []
    with pytest.raises(PgError, match="without its COMMIT"):
        for line in script.Gate(DROP).run(iter(lines)):
            sent.append(line)
    assert script.COMMIT not in sent


def test_a_script_that_does_not_open_a_transaction_is_refused() -> None:
    with pytest.raises(PgError, match="does not open a transaction"):
        gate([b"SET statement_timeout = 0;\n", b"CREATE TABLE t (a int);\n", b"COMMIT;\n"])
