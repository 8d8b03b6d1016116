"""Operator-defined SQL checks for restore-verify: parsing and evaluation (pure).

Configured per database as JSON in `DRKIT_DB_<NAME>_CHECKS`:

    [{"name": "users exist", "sql": "SELECT count(*) FROM res_users", "expect": "> 0"},
     {"name": "invoices are recent", "sql": "SELECT max(create_date) FROM account_move",
      "expect": "age <= 2h"}]

Each query must return one row with one column. Expectations:

    == N, != N, > N, >= N, < N, <= N   numeric comparison
    == "text", != "text"              text comparison
    not null                          any non-NULL value
    age <= DURATION                   a timestamp (or a date, taken as its day's end) no older than the
                                      backup's start minus DURATION: 90s, 30m (minutes), 2h, 7d, as in every
                                      other drkit duration (e.g. the RPO: proves the backup holds recent writes)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from drkit.core import jsontext
from drkit.core.errors import ConfigError
from drkit.policy.durations import human, parse_interval

_NUM = re.compile(r"^(==|!=|>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)$")
_TEXT = re.compile(r'^(==|!=)\s*"(.*)"$')
_AGE = re.compile(r"^age\s*<=\s*(\S+)$")
MAX_CHECKS = 50


@dataclass(frozen=True)
class Check:
    name: str
    sql: str
    expect: str
    kind: str  # "number" | "text" | "not_null" | "age"
    op: str = ""
    number: Decimal | None = None
    text: str = ""
    max_age: dt.timedelta | None = None


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    detail: str
    value: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "value": self.value}


def parse_checks(text: str, where: str) -> list[Check]:
    """Parse the JSON list; raise ValueError with the item and the reason."""
    if not text.strip():
        return []
    try:
        items = jsontext.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise ValueError(f"{where} must be a JSON list of {{name, sql, expect}} objects")
    if len(items) > MAX_CHECKS:
        raise ValueError(f"{where} has {len(items)} checks; at most {MAX_CHECKS}")
    out: list[Check] = []
    names = set()
    for n, item in enumerate(items, 1):
        label = f"{where} item {n}"
        if not isinstance(item, dict) or set(item) - {"name", "sql", "expect"} or not {"name", "sql", "expect"} <= set(item):
            raise ValueError(f"{label} must be an object with exactly name, sql and expect")
        name, sql, expect = item["name"], item["sql"], item["expect"]
        if not all(isinstance(v, str) and v.strip() for v in (name, sql, expect)):
            raise ValueError(f"{label}: name, sql and expect must be non-empty strings")
        if name in names:
            raise ValueError(f"{label}: check name {name!r} is used twice")
        names.add(name)
        out.append(_parse_expect(name, sql.strip().rstrip(";"), expect.strip(), label))
    return out


def _parse_expect(name: str, sql: str, expect: str, label: str) -> Check:
    if m := _NUM.match(expect):
        return Check(name, sql, expect, "number", op=m.group(1), number=Decimal(m.group(2)))
    if m := _TEXT.match(expect):
        return Check(name, sql, expect, "text", op=m.group(1), text=m.group(2))
    if expect.lower() == "not null":
        return Check(name, sql, expect, "not_null")
    if m := _AGE.match(expect):
        try:  # the operational grammar (m = minutes), not retention's (m = months): `age <= 30m` is half an hour
            return Check(name, sql, expect, "age", max_age=parse_interval(m.group(1), f"{name!r}: age"))
        except ConfigError as exc:
            raise ValueError(f"{label}: {exc}; it is not a duration") from None
    raise ValueError(f"{label}: expect {expect!r} is not one of '> 0', '== \"text\"', 'not null', 'age <= 1h'")


_OPS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def evaluate(check: Check, value: Any, backup_started: dt.datetime) -> Outcome:
    """Judge one query result against its expectation."""
    shown = None if value is None else str(value)[:200]
    if check.kind == "not_null":
        ok = value is not None
        return Outcome(check.name, ok, "value is present" if ok else "value is NULL", shown)
    if value is None:
        return Outcome(check.name, False, f"value is NULL, expected {check.expect}", shown)
    if check.kind == "number":
        try:
            number = Decimal(str(value))
        except ArithmeticError:
            return Outcome(check.name, False, f"value {shown!r} is not a number", shown)
        ok = bool(_OPS[check.op](number, check.number))
        return Outcome(check.name, ok, f"{shown} {check.op} {check.number}: {'yes' if ok else 'no'}", shown)
    if check.kind == "text":
        ok = bool(_OPS[check.op](str(value), check.text))
        return Outcome(check.name, ok, f"{shown!r} {check.op} {check.text!r}: {'yes' if ok else 'no'}", shown)
    assert check.max_age is not None
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):  # a date covers its whole day: judge it by the day's end
        when = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    else:
        return Outcome(check.name, False, f"value {shown!r} is not a timestamp or date", shown)
    limit = backup_started - check.max_age
    ok = when >= limit
    age = backup_started - when
    return Outcome(check.name, ok, f"newest {when.isoformat()} is {_fmt(age)} before the backup "
                                   f"(allowed {human(check.max_age.total_seconds())})", shown)


def _fmt(delta: dt.timedelta) -> str:
    s = delta.total_seconds()
    if s < 0:
        return "after"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
