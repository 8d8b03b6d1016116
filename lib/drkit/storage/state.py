"""Per-subject run state in Spaces (`state/...json`): last run, last success, failures in a row.

Written by the functions after every run and read by health-probe. Overlapping
runs may overwrite each other's write (last writer wins): the state is a
summary for monitoring, never a lock or a source of truth for data.
"""

from __future__ import annotations

from typing import Any

from drkit.core.errors import StoreError
from drkit.storage.store import Store


def record_run(store: Store, key: str, subject: str, run_info: dict[str, Any], *, success: bool) -> None:
    try:
        state = store.get_json_or_none(key) or {}
    except StoreError:
        state = {}  # an unreadable state object is replaced, not fatal
    state["subject"] = subject
    state["last_run"] = run_info
    if success:
        state["last_success"] = run_info
        state["consecutive_failures"] = 0
    else:
        state["consecutive_failures"] = int(state.get("consecutive_failures", 0)) + 1
    store.put_json(key, state)
