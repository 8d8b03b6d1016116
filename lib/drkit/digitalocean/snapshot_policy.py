"""Snapshot policies (`DRKIT_SNAPSHOT_POLICIES`): tag, resources, cron schedule, retention, checked up front."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from drkit.core.errors import ConfigError
from drkit.platform.config import json_list
from drkit.policy.retention import Policy, parse_policy

TAG_RE = re.compile(r"^[A-Za-z0-9_:\-]{1,255}$")


@dataclass(frozen=True)
class SnapshotPolicy:
    tag: str
    resources: tuple[str, ...]
    schedule: str
    retention: Policy

    def slot(self, now: dt.datetime) -> dt.datetime:
        from croniter import croniter

        return croniter(self.schedule, now).get_prev(dt.datetime).astimezone(dt.UTC)  # type: ignore[no-any-return]


def parse_policies(text: str, where: str = "DRKIT_SNAPSHOT_POLICIES") -> list[SnapshotPolicy]:
    from croniter import croniter

    items = json_list(text, where, items="{tag, resources, schedule, retention}",
                      required=f"{where} must be a non-empty JSON list of {{tag, resources, schedule, retention}}")
    problems, out, tags = [], [], set()
    for n, item in enumerate(items, 1):
        label = f"{where} item {n}"
        if not isinstance(item, dict) or set(item) - {"tag", "resources", "schedule", "retention"}:
            problems.append(f"{label}: keys are tag, resources, schedule, retention")
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
        out.append(SnapshotPolicy(tag, tuple(resources), schedule, retention))
    if problems:
        raise ConfigError(problems)
    return out
