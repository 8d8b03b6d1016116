"""Every JSON setting refuses a key given twice (it was "the last one wins"), naming the key; nothing runs."""

from __future__ import annotations

import datetime as dt

import pytest

from drkit.core.errors import ConfigError
from drkit.digitalocean.snapshot_policy import parse_policies
from drkit.health import probe
from drkit.health.statuspage import PageConfig
from drkit.policy import checks, schedule

NOW = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)


@pytest.mark.parametrize("parse, text", [
    (lambda t: probe.parse_targets(t),
     '[{"name": "web", "type": "tcp", "host": "127.0.0.1", "port": 443, "port": 8443}]'),
    (lambda t: parse_policies(t), '[{"tag": "dr:snapshot", "retention": "keep_last=4", "retention": "keep_last=1"}]'),
    (lambda t: schedule.parse(t, ["odoo"], [], NOW), '[{"job": "db-backup", "enabled": true, "enabled": false}]'),
    (lambda t: PageConfig.parse(t), '{"title": "Acme", "title": "Evil", "services": []}'),
    (lambda t: checks.parse_checks(t, "DRKIT_DB_ODOO_CHECKS"),
     '[{"name": "a", "sql": "SELECT 1", "expect": "> 0", "expect": "== 0"}]'),
])
def test_a_key_given_twice_is_refused_by_name(parse: object, text: str) -> None:
    with pytest.raises((ConfigError, ValueError), match="given twice"):
        parse(text)  # type: ignore[operator]
