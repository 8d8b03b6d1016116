"""Publishes the status page: `public/status.json` and `public/index.html`, the only public objects in the bucket."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from drkit.health import notices, statuspage
from drkit.policy import layout
from drkit.storage.store import Store

PUBLIC_JSON = "public/status.json"
PUBLIC_HTML = "public/index.html"
CACHE = "public, max-age=30"  # a minute's probe cycle: browsers and the Spaces CDN re-read within it


def saved_states(store: Store) -> tuple[dict[str, Any], str | None]:
    """health-probe's last target states and when it wrote them (nothing before its first run). An unreadable
    state raises: republishing would otherwise replace a true page with "status not yet known"."""
    saved = store.get_json_or_none(layout.HEALTH_STATE_KEY) or {}
    if not isinstance(saved, dict):
        return {}, None
    return dict(saved.get("targets") or {}), saved.get("updated_at")


def publish(store: Store, config: statuspage.PageConfig, now: dt.datetime,
            states: Mapping[str, Mapping[str, Any]] | None = None, updated_at: str | None = None) -> dict[str, Any]:
    """Render from the given states (health-probe's run) or the saved ones (the CLI), and write both objects."""
    if states is None:
        states, updated_at = saved_states(store)
    doc = statuspage.build(config, states, notices.load(store), now, updated_at)
    store.put_bytes(PUBLIC_JSON, (json.dumps(doc, indent=1) + "\n").encode(), "application/json",
                    public=True, cache_control=CACHE)
    store.put_bytes(PUBLIC_HTML, statuspage.render_html(doc).encode(), "text/html; charset=utf-8",
                    public=True, cache_control=CACHE)
    return doc
