"""Publishes the status page: `public/status.json` and `public/index.html`, the only public objects in the bucket."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from drkit.core import log
from drkit.health import notices, statuspage
from drkit.health.memory import HealthState
from drkit.policy import layout
from drkit.storage import records
from drkit.storage.records import RecordError
from drkit.storage.store import Store

PUBLIC_JSON = "public/status.json"
PUBLIC_HTML = "public/index.html"
CACHE = "public, max-age=30"  # a minute's probe cycle: browsers and the Spaces CDN re-read within it


def saved_states(store: Store, now: dt.datetime) -> tuple[dict[str, Any], str | None]:
    """health-probe's last target states and when it wrote them (nothing before its first run). An unreadable
    or unbelieved state raises: republishing would otherwise replace a true page with "status not yet known"."""
    got = records.read(store, layout.HEALTH_STATE_KEY, HealthState, now)
    if got is None:
        return {}, None
    return dict(got.value.targets), got.value.updated_at.isoformat()


def publish(store: Store, config: statuspage.PageConfig, now: dt.datetime,
            states: Mapping[str, Mapping[str, Any]] | None = None, updated_at: str | None = None,
            failover: str | None = None, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Render from the given states (health-probe's run) or the saved ones (the CLI), and write both objects.
    `failover`: the site traffic was moved to, when it is not the primary (the banner says so); `items`: the
    believed notices, when the caller has read them already (else they are read here)."""
    if states is None:
        states, updated_at = saved_states(store, now)
    problem = None
    if items is None:
        try:
            items = notices.load(store, now)
        except RecordError as exc:  # a planted notice never reaches the public page
            log.error("status notices not believed; publishing without them", error=exc.reason)
            items, problem = [], exc.reason
    doc = statuspage.build(config, states, items, now, updated_at, failover)
    store.put_bytes(PUBLIC_JSON, (json.dumps(doc, indent=1) + "\n").encode(), "application/json",
                    public=True, cache_control=CACHE)
    store.put_bytes(PUBLIC_HTML, statuspage.render_html(doc).encode(), "text/html; charset=utf-8",
                    public=True, cache_control=CACHE)
    return doc | ({"notices_error": problem} if problem else {})
