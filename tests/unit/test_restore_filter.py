"""The restore-script filter for targets older than pg_restore (pure)."""

from __future__ import annotations

from drkit import pg


def test_strategy_by_target_version() -> None:
    assert pg.restore_strategy(180001) == ("direct", frozenset())
    assert pg.restore_strategy(170004) == ("direct", frozenset())
    strategy, drop = pg.restore_strategy(160010)
    assert strategy == "script" and drop == {b"SET transaction_timeout = 0;\n"}
    assert pg.restore_strategy(150008)[0] == "script"


def test_filter_drops_the_statement_only_outside_copy_data() -> None:
    script = [
        b"SET statement_timeout = 0;\n",
        b"SET transaction_timeout = 0;\n",
        b"CREATE TABLE notes (body text);\n",
        b"COPY public.notes (body) FROM stdin;\n",
        b"SET transaction_timeout = 0;\n",  # a row whose text is exactly the statement: data, kept
        b"ordinary row\n",
        b"\\.\n",
        b"SET transaction_timeout = 0;\n",  # after a reconnect: dropped again
        b"SELECT 1;\n",
    ]
    out = list(pg.filter_script(iter(script), frozenset({b"SET transaction_timeout = 0;\n"})))
    assert out == [script[0], script[2], script[3], script[4], script[5], script[6], script[8]]


def test_filter_keeps_everything_when_nothing_is_dropped() -> None:
    script = [b"SET transaction_timeout = 0;\n", b"SELECT 1;\n"]
    assert list(pg.filter_script(iter(script), frozenset())) == script
