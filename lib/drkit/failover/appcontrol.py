"""App Platform apps stopped, started and redeployed for a recovery (DR plan scenario 1, steps 2 and 5).

Stopping an app is App Platform's maintenance mode (`spec.maintenance.enabled`): the app keeps its
spec, domains and deployments, and answers with the maintenance page (or `offline_page_url`), so no
writes reach a database while it is restored. Starting switches it off again. Both PUT the app's
whole spec as read, changed in that one field: repeating either is harmless. Redeploying creates a
deployment of the current spec (new connections to a restored database, say). Every change is an
audit event.
"""

from __future__ import annotations

import copy
from typing import Any

from drkit.core import suggest
from drkit.core.errors import ConfigError
from drkit.digitalocean.api import DoApi
from drkit.storage import audit
from drkit.storage.store import Store

FUNCTION = "cli"


def find(api: DoApi, name: str) -> dict[str, Any]:
    apps = api.list_all("apps")
    found = [a for a in apps if (a.get("spec") or {}).get("name") == name or a.get("id") == name]
    if not found:
        raise ConfigError(suggest.unknown("app", [name], sorted(str((a.get("spec") or {}).get("name")) for a in apps)))
    return dict(found[0])


def set_maintenance(api: DoApi, store: Store, name: str, enabled: bool, *, offline_page_url: str | None = None,
                    dry_run: bool = False) -> dict[str, Any]:
    app = api.get_app(str(find(api, name)["id"]))
    spec = copy.deepcopy(app["spec"])
    current = bool((spec.get("maintenance") or {}).get("enabled"))
    word = "stopped (maintenance mode)" if enabled else "started"
    if current == enabled and not (enabled and offline_page_url):
        return {"app": name, "id": app["id"], "changed": False, "sentence": f"{name} is already {word}"}
    maintenance = dict(spec.get("maintenance") or {})
    maintenance["enabled"] = enabled
    if offline_page_url:
        maintenance["offline_page_url"] = offline_page_url
    spec["maintenance"] = maintenance
    if dry_run:
        return {"app": name, "id": app["id"], "changed": False, "sentence": f"dry run: {name} would be {word}"}
    api.update_app(str(app["id"]), spec)
    audit.record(store, FUNCTION, "app.stopped" if enabled else "app.started", {"app": name, "id": app["id"]})
    return {"app": name, "id": app["id"], "changed": True,
            "sentence": f"{name} {word}" + (": users see the maintenance page" if enabled else ": it serves again")}


def redeploy(api: DoApi, store: Store, name: str, *, dry_run: bool = False) -> dict[str, Any]:
    app = find(api, name)
    if dry_run:
        return {"app": name, "id": app["id"], "sentence": f"dry run: {name} would be redeployed"}
    dep = api.redeploy_app(str(app["id"]))
    audit.record(store, FUNCTION, "app.redeployed", {"app": name, "id": app["id"], "deployment": dep.get("id")})
    return {"app": name, "id": app["id"], "deployment": dep.get("id"),
            "sentence": f"{name}: deployment {dep.get('id')} started ({dep.get('phase')})"}
