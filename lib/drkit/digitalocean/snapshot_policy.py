"""Snapshot policies (`DRKIT_SNAPSHOT_POLICIES`): tag, resources, cron schedule, retention, checked up front."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from drkit.core.errors import ConfigError
from drkit.platform.config import json_list
from drkit.policy.retention import Policy, parse_policy

TAG_RE = re.compile(r"^[A-Za-z0-9_:\-]{1,255}$")
REGION_RE = re.compile(r"^[a-z]{3}[0-9]$")


@dataclass(frozen=True)
class SnapshotPolicy:
    tag: str
    resources: tuple[str, ...]
    schedule: str
    retention: Policy
    dr_region: str | None = None  # where each droplet's newest snapshot is transferred (regional outage)

    def max_age(self, now: dt.datetime) -> dt.timedelta:
        """How old a resource's newest snapshot may be: two periods of the schedule."""
        from croniter import croniter

        it = croniter(self.schedule, now)
        first = it.get_next(dt.datetime)
        return 2 * (it.get_next(dt.datetime) - first)  # type: ignore[no-any-return]

    def slot(self, now: dt.datetime) -> dt.datetime:
        from croniter import croniter

        return croniter(self.schedule, now).get_prev(dt.datetime).astimezone(dt.UTC)  # type: ignore[no-any-return]


def parse_policies(text: str, where: str = "DRKIT_SNAPSHOT_POLICIES") -> list[SnapshotPolicy]:
    from croniter import croniter

    items = json_list(text, where, items="{tag, resources, schedule, retention, dr_region}",
                      required=f"{where} must be a non-empty JSON list of {{tag, resources, schedule, retention}}")
    problems, out, tags = [], [], set()
    for n, item in enumerate(items, 1):
        label = f"{where} item {n}"
        if not isinstance(item, dict) or set(item) - {"tag", "resources", "schedule", "retention", "dr_region"}:
            problems.append(f"{label}: keys are tag, resources, schedule, retention, dr_region")
            continue
        dr_region = item.get("dr_region")
        if dr_region is not None and (not isinstance(dr_region, str) or not REGION_RE.match(dr_region)):
            problems.append(f"{label}: dr_region must be a region slug like nyc3 (where the newest droplet snapshot "
                            "is copied)")
            continue
        tag = item.get("tag")
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            problems.append(f"{label}: tag must be a DigitalOcean tag (letters, digits, _ : -)")
            continue
        if tag in tags:
            problems.append(f"{label}: tag {tag!r} has two policies")
        tags.add(tag)
        resources = item.get("resources", ["droplet", "volume"])
        if not isinstance(resources, list) or not resources or not set(resources) <= {"droplet", "volume"}:
            problems.append(f"{label}: resources must be a list of droplet and/or volume")
            continue
        schedule = item.get("schedule", "0 3 * * 0")
        if not isinstance(schedule, str) or len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            problems.append(f"{label}: schedule {schedule!r} is not a 5-field cron expression (UTC)")
            continue
        try:
            retention = parse_policy(str(item.get("retention", "keep_last=4")))
        except ValueError as exc:
            problems.append(f"{label}: retention: {exc}")
            continue
        out.append(SnapshotPolicy(tag, tuple(resources), schedule, retention, dr_region))
    if problems:
        raise ConfigError(problems)
    return out
