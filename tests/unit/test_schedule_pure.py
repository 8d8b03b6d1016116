"""policy/schedule.py: the schedule table and which slot is due (pure, no servers)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from drkit.core.errors import ConfigError
from drkit.policy import schedule

NOW = dt.datetime(2026, 11, 30, 10, 30, tzinfo=dt.UTC)  # a Monday


def names(slots: list[schedule.Slot]) -> list[str]:
    return [s.name for s in slots]


def test_the_defaults_follow_the_dr_plan() -> None:
    slots = schedule.parse("", ["odoo", "superset"], [("dr:snapshot", "0 4 * * *")], NOW)
    assert names(slots) == ["health-probe", "db-backup/odoo", "db-backup/superset", "config-backup",
                            "snapshot-rotate/dr:snapshot", "restore-verify/odoo", "restore-verify/superset", "report",
                            "backup-copy"]
    by = {s.name: s for s in slots}
    assert by["backup-copy"].cron == "37 */6 * * *" and by["backup-copy"].params == {}  # catch-up
    assert schedule.AFTER == {"db-backup": "backup-copy"}  # and after each backup
    assert by["report"].cron == "40 5 * * *" and by["report"].params == {}  # daily, after the night's backups
    assert by["db-backup/odoo"].params == {"database": "odoo"} and by["db-backup/odoo"].cron == "7 * * * *"
    assert by["restore-verify/odoo"].params == {"database": "odoo", "backup": "latest"}
    assert by["snapshot-rotate/dr:snapshot"].params == {"tag": "dr:snapshot"}
    assert by["snapshot-rotate/dr:snapshot"].within == dt.timedelta(days=1, hours=6)  # its period + 6 h
    assert by["health-probe"].within == dt.timedelta(minutes=10)


def test_every_problem_in_the_table_is_reported_at_once() -> None:
    text = json.dumps([{"job": "db-backup", "cron": "every hour", "databases": ["odo"]},
                       {"job": "backup-everything"},
                       {"job": "config-backup", "within": "soon", "enabled": "yes", "when": 1},
                       {"job": "snapshot-rotate", "cron": "0 4 * * *"},
                       {"job": "config-backup"}])
    with pytest.raises(ConfigError) as err:
        schedule.parse(text, ["odoo"], [], NOW)
    problems = err.value.problems
    assert len(problems) == 8, problems
    joined = "\n".join(problems)
    for expected in ("'every hour' is not a 5-field cron", "unknown database(s) 'odo' (did you mean 'odoo'?)", "job must be one of",
                     "within must be a duration", "enabled must be true or false", "unknown key(s) 'when'",
                     "each policy's own schedule", "appears twice"):
        assert expected in joined


def test_overrides_disable_restrict_and_reschedule() -> None:
    text = json.dumps([{"job": "health-probe", "enabled": False},
                       {"job": "db-backup", "cron": "*/30 * * * *", "within": "90m", "databases": ["odoo"]}])
    slots = schedule.parse(text, ["odoo", "superset"], [], NOW)
    by = {s.name: s for s in slots}
    assert "health-probe" not in by and "db-backup/superset" not in by
    assert by["db-backup/odoo"].cron == "*/30 * * * *" and by["db-backup/odoo"].within == dt.timedelta(minutes=90)


def test_a_slot_is_due_once_and_an_outage_runs_only_the_latest_missed_slot() -> None:
    hourly = schedule.Slot("db-backup", "odoo", "7 * * * *", dt.timedelta(hours=2))
    first = schedule.due(hourly, None, NOW)
    assert first == schedule.Due(dt.datetime(2026, 11, 30, 10, 7, tzinfo=dt.UTC), 0)
    assert schedule.due(hourly, first.slot, NOW) is None  # already ran
    assert schedule.due(hourly, first.slot, NOW + dt.timedelta(minutes=36)) is None  # 11:06: not yet
    on_time = schedule.due(hourly, first.slot, NOW + dt.timedelta(minutes=37))  # 11:07 exactly
    assert on_time == schedule.Due(dt.datetime(2026, 11, 30, 11, 7, tzinfo=dt.UTC), 0)
    after_outage = schedule.due(hourly, first.slot, NOW + dt.timedelta(hours=6, minutes=10))  # 16:40
    assert after_outage == schedule.Due(dt.datetime(2026, 11, 30, 16, 7, tzinfo=dt.UTC), 5)  # 11:07 … 15:07 skipped


def test_slot_names_and_stamps() -> None:
    assert schedule.Slot("config-backup", "", "15 2 * * *", dt.timedelta(hours=26)).name == "config-backup"
    assert schedule.stamp(dt.datetime(2026, 11, 30, 2, 15, tzinfo=dt.UTC)) == "20261130T0215Z"
    weekly = schedule.Slot("restore-verify", "odoo", "17 3 * * 1", dt.timedelta(days=8))
    assert weekly.next(NOW) == dt.datetime(2026, 12, 7, 3, 17, tzinfo=dt.UTC)
