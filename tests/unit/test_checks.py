"""Operator SQL checks: parsing and evaluation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from drkit.policy.checks import evaluate, parse_checks

T = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)


def one(expect: str) -> object:
    return parse_checks(f'[{{"name": "c", "sql": "SELECT 1;", "expect": {expect!r}}}]'.replace("'", '"'), "X")[0]


def test_parse_and_evaluate_numbers() -> None:
    checks = parse_checks('[{"name": "users", "sql": "SELECT count(*) FROM res_users;", "expect": "> 0"},'
                          ' {"name": "exact", "sql": "SELECT 2.50", "expect": "== 2.5"}]', "DRKIT_DB_ODOO_CHECKS")
    assert checks[0].sql == "SELECT count(*) FROM res_users"
    assert evaluate(checks[0], 52, T).passed
    assert not evaluate(checks[0], 0, T).passed
    assert evaluate(checks[1], Decimal("2.50"), T).passed
    assert "not a number" in evaluate(checks[0], "abc", T).detail
    assert not evaluate(checks[0], None, T).passed


def test_text_and_not_null() -> None:
    assert evaluate(parse_checks('[{"name":"a","sql":"x","expect":"== \\"on\\""}]', "X")[0], "on", T).passed
    assert not evaluate(parse_checks('[{"name":"a","sql":"x","expect":"!= \\"on\\""}]', "X")[0], "on", T).passed
    nn = parse_checks('[{"name":"a","sql":"x","expect":"not null"}]', "X")[0]
    assert evaluate(nn, 0, T).passed and not evaluate(nn, None, T).passed


def test_age_against_the_backup_time() -> None:
    check = parse_checks('[{"name":"fresh","sql":"x","expect":"age <= 2h"}]', "X")[0]
    assert evaluate(check, T - dt.timedelta(minutes=90), T).passed
    stale = evaluate(check, T - dt.timedelta(hours=3), T)
    assert not stale.passed and "3.0 h before the backup" in stale.detail
    assert evaluate(check, dt.datetime(2026, 11, 26, 2, 0), T).passed  # naive = UTC
    day = parse_checks('[{"name":"d","sql":"x","expect":"age <= 1d"}]', "X")[0]
    assert evaluate(day, dt.date(2026, 11, 25), T).passed  # the day ends 3 h before the backup
    assert not evaluate(day, dt.date(2026, 11, 23), T).passed
    assert not evaluate(check, "yesterday", T).passed


def test_age_minutes_are_minutes_as_everywhere_else() -> None:
    """`30m` is half an hour, as in DRKIT_RPO and DRKIT_SCHEDULE (it once meant 30 months here)."""
    check = parse_checks('[{"name":"fresh","sql":"x","expect":"age <= 30m"}]', "X")[0]
    assert evaluate(check, T - dt.timedelta(minutes=20), T).passed
    late = evaluate(check, T - dt.timedelta(hours=2), T)
    assert not late.passed and "allowed 30 min" in late.detail
    with pytest.raises(ValueError, match="not a duration"):
        parse_checks('[{"name":"y","sql":"x","expect":"age <= 1y"}]', "X")  # no years or months: say days


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ('{"name": "a"}', "JSON list"),
    ('[{"name": "a", "sql": "x"}]', "exactly name, sql and expect"),
    ('[{"name": "a", "sql": "x", "expect": "> 0", "extra": 1}]', "exactly name, sql and expect"),
    ('[{"name": "a", "sql": "", "expect": "> 0"}]', "non-empty"),
    ('[{"name": "a", "sql": "x", "expect": "greater than zero"}]', "is not one of"),
    ('[{"name": "a", "sql": "x", "expect": "age <= soon"}]', "not a duration"),
    ('[{"name": "a", "sql": "x", "expect": "> 0"}, {"name": "a", "sql": "y", "expect": "> 0"}]', "used twice"),
])
def test_bad_check_config(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_checks(text, "DRKIT_DB_ODOO_CHECKS")
