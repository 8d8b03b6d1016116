"""The DigitalOcean API, through pydo, wrapped once.

* pydo's own retry policy is off (`retry_total=0`): it re-sends POSTs after a
  5xx, which can duplicate a non-idempotent action. Here:
  429 is retried after `Retry-After` (the request was not processed), within
  the deadline; 5xx and connection errors are retried only for idempotent
  calls (GET, and PATCH/PUT that set absolute values); a POST is never
  retried blindly: the caller re-reads state and decides.
* pydo returns some errors as dicts (any status the spec lists for the
  operation, e.g. 404) instead of raising: those become `DoApiError` too.
* Lists are paginated to the end (`links.pages.next`), 200 per page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DeadlineExceeded, DoApiError
from drkit.core.secret import Secret
from drkit.platform.config import secure_url

MAX_ATTEMPTS = 4
# inventory kind -> (pydo operation group, response key); all paginated
INVENTORY_LISTS = {
    "apps": ("apps", "apps"),
    "firewalls": ("firewalls", "firewalls"),
    "load_balancers": ("load_balancers", "load_balancers"),
    "droplets": ("droplets", "droplets"),
    "volumes": ("volumes", "volumes"),
    "reserved_ips": ("reserved_ips", "reserved_ips"),
    "vpcs": ("vpcs", "vpcs"),
    "projects": ("projects", "projects"),
}
MAX_WAIT_S = 30.0
BACKOFF_S = 0.5  # 0.5, 1, 2 s: a web call must answer well under DO's 30 s


class DoApi:
    def __init__(self, token: Secret, *, endpoint: str = "https://api.digitalocean.com",
                 ca_file: str | None = None, deadline: Deadline | None = None, timeout_s: int = 20):
        import pydo

        kwargs: dict[str, Any] = {"endpoint": endpoint, "retry_total": 0, "timeout": timeout_s}
        if ca_file:
            kwargs["connection_verify"] = ca_file
        self.client = pydo.Client(token.reveal(), **kwargs)
        self.deadline = deadline or Deadline(None)
        self.calls = 0

    @classmethod
    def from_env(cls, environ: Any, deadline: Deadline, token: Secret | None = None) -> DoApi:
        """DRKIT_DO_TOKEN (required unless `token` is given), DRKIT_DO_ENDPOINT and DRKIT_DO_CA_FILE (tests)."""
        from drkit.core.errors import ConfigError

        if token is None:
            raw = str(environ.get("DRKIT_DO_TOKEN", "")).strip()
            if not raw:
                raise ConfigError("DRKIT_DO_TOKEN is not set (a DigitalOcean API token with the scopes this function needs)")
            token = Secret(raw)
        endpoint = str(environ.get("DRKIT_DO_ENDPOINT", "")).strip() or "https://api.digitalocean.com"
        if not secure_url(endpoint):
            raise ConfigError(f"DRKIT_DO_ENDPOINT {endpoint!r} must be https:// (the API token would travel in clear text)")
        return cls(token, endpoint=endpoint, ca_file=str(environ.get("DRKIT_DO_CA_FILE", "")).strip() or None,
                   deadline=deadline)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, idempotent: bool, expect: str | None = None,
              **kwargs: Any) -> Any:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.calls += 1
            wait = 0.0
            try:
                result = fn(*args, **kwargs)
            except HttpResponseError as exc:
                status = exc.status_code or 0
                message = _message(exc)
                if status == 429:
                    wait = _retry_after(exc, attempt)
                elif status >= 500 and idempotent:
                    wait = BACKOFF_S * 2 ** (attempt - 1)
                else:
                    raise DoApiError(f"{what}: HTTP {status}: {message}", http_status=status) from None
                log.warning("DO API call will be retried", call=what, status=status, wait_s=wait, attempt=attempt)
            except (ServiceRequestError, ServiceResponseError) as exc:
                if not idempotent:
                    raise DoApiError(f"{what}: connection failed ({type(exc).__name__}); not retried (not idempotent)") from None
                wait = BACKOFF_S * 2 ** (attempt - 1)
            else:
                if isinstance(result, dict) and "id" in result and "message" in result and (expect is None or expect not in result):
                    raise DoApiError(f"{what}: {result['id']}: {result['message']}",
                                     http_status=404 if result["id"] == "not_found" else None)
                return result
            if attempt == MAX_ATTEMPTS:
                break
            if wait > self.deadline.remaining() - 5:
                raise DeadlineExceeded(f"{what}: DigitalOcean asked to wait {wait:.0f}s; not enough time left")
            time.sleep(wait)
        raise DoApiError(f"{what}: still failing after {MAX_ATTEMPTS} attempts (rate limited or DigitalOcean errors)")

    def _pages(self, what: str, fn: Callable[..., Any], key: str, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            resp = self._call(what, fn, *args, idempotent=True, expect=key, page=page, per_page=200, **kwargs)
            yield from resp.get(key, [])
            if "next" not in (resp.get("links") or {}).get("pages", {}):
                return
            page += 1

    # -- DNS -------------------------------------------------------------------------------
    def list_records(self, domain: str, *, name: str | None = None, rtype: str | None = None) -> list[dict[str, Any]]:
        kwargs = {k: v for k, v in (("name", name), ("type", rtype)) if v}
        return list(self._pages(f"list records of {domain}", self.client.domains.list_records, "domain_records",
                                domain, **kwargs))

    def update_record(self, domain: str, record_id: int, rtype: str, data: str, ttl: int) -> dict[str, Any]:
        body = {"type": rtype, "data": data, "ttl": ttl}
        resp = self._call(f"update record {record_id} of {domain}", self.client.domains.patch_record, domain,
                          record_id, body, idempotent=True, expect="domain_record")
        return dict(resp["domain_record"])

    def create_record(self, domain: str, rtype: str, name: str, data: str, ttl: int) -> dict[str, Any]:
        body = {"type": rtype, "name": name, "data": data, "ttl": ttl}
        resp = self._call(f"create record {name} in {domain}", self.client.domains.create_record, domain, body,
                          idempotent=False, expect="domain_record")
        return dict(resp["domain_record"])

    def list_domains(self) -> list[dict[str, Any]]:
        return list(self._pages("list domains", self.client.domains.list, "domains"))

    def get_domain(self, domain: str) -> dict[str, Any] | None:
        try:
            return dict(self._call(f"get domain {domain}", self.client.domains.get, domain, idempotent=True,
                                   expect="domain")["domain"])
        except DoApiError as exc:
            if exc.http_status == 404:
                return None
            raise

    def create_domain(self, domain: str) -> dict[str, Any]:
        resp = self._call(f"create domain {domain}", self.client.domains.create, {"name": domain},
                          idempotent=False, expect="domain")
        return dict(resp["domain"])

    def create_record_from(self, domain: str, record: dict[str, Any]) -> dict[str, Any]:
        """Create a record with every field it carries (priority, port, weight, flags, tag for MX/SRV/CAA)."""
        resp = self._call(f"create {record['type']} record {record['name']} in {domain}",
                          self.client.domains.create_record, domain, record, idempotent=False, expect="domain_record")
        return dict(resp["domain_record"])

    def patch_record(self, domain: str, record_id: int, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._call(f"update record {record_id} of {domain}", self.client.domains.patch_record, domain,
                          record_id, body, idempotent=True, expect="domain_record")
        return dict(resp["domain_record"])

    def delete_record(self, domain: str, record_id: int) -> None:
        self._call(f"delete record {record_id} of {domain}", self.client.domains.delete_record, domain, record_id,
                   idempotent=True)

    # -- inventory (config-backup) -------------------------------------------------------------
    def list_all(self, kind: str) -> list[dict[str, Any]]:
        """Every item of one paginated collection: apps, firewalls, load_balancers, droplets,
        volumes, reserved_ips, vpcs, projects."""
        group, key = INVENTORY_LISTS[kind]
        return list(self._pages(f"list {kind}", getattr(self.client, group).list, key))

    def database_clusters(self) -> list[dict[str, Any]]:
        """Database clusters (one call: the API does not paginate this list)."""
        resp = self._call("list database clusters", self.client.databases.list_clusters, idempotent=True,
                          expect="databases")
        return list(resp.get("databases") or [])

    def database_config(self, cluster_id: str) -> dict[str, Any]:
        return dict(self._call(f"get config of database cluster {cluster_id}", self.client.databases.get_config,
                               cluster_id, idempotent=True, expect="config").get("config") or {})

    def database_firewall(self, cluster_id: str) -> list[dict[str, Any]]:
        return list(self._call(f"list trusted sources of database cluster {cluster_id}",
                               self.client.databases.list_firewall_rules, cluster_id, idempotent=True,
                               expect="rules").get("rules") or [])

    def project_resources(self, project_id: str) -> list[dict[str, Any]]:
        return list(self._pages(f"list resources of project {project_id}", self.client.projects.list_resources,
                                "resources", project_id))

    # -- reserved IPs, apps ------------------------------------------------------------------
    def get_reserved_ip(self, ip: str) -> dict[str, Any]:
        return dict(self._call(f"get reserved IP {ip}", self.client.reserved_ips.get, ip, idempotent=True,
                               expect="reserved_ip")["reserved_ip"])

    def assign_reserved_ip(self, ip: str, droplet_id: int) -> dict[str, Any]:
        resp = self._call(f"assign reserved IP {ip}", self.client.reserved_ips_actions.post, ip,
                          {"type": "assign", "droplet_id": droplet_id}, idempotent=False, expect="action")
        return dict(resp["action"])

    # -- droplets, volumes, snapshots, actions ---------------------------------------------------
    def droplets_by_tag(self, tag: str) -> list[dict[str, Any]]:
        return list(self._pages(f"list droplets tagged {tag}", self.client.droplets.list, "droplets", tag_name=tag))

    def droplets_by_tag_or_all(self, tag: str | None) -> list[dict[str, Any]]:
        if tag:
            return self.droplets_by_tag(tag)
        return list(self._pages("list droplets", self.client.droplets.list, "droplets"))

    def volumes_by_tag(self, tag: str) -> list[dict[str, Any]]:
        return [v for v in self._pages("list volumes", self.client.volumes.list, "volumes") if tag in (v.get("tags") or [])]

    def snapshots(self, resource_type: str) -> list[dict[str, Any]]:
        return list(self._pages(f"list {resource_type} snapshots", self.client.snapshots.list, "snapshots",
                                resource_type=resource_type))

    def snapshot_droplet(self, droplet_id: int, name: str) -> dict[str, Any]:
        resp = self._call(f"snapshot droplet {droplet_id}", self.client.droplet_actions.post, droplet_id,
                          {"type": "snapshot", "name": name}, idempotent=False, expect="action")
        return dict(resp["action"])

    def snapshot_volume(self, volume_id: str, name: str, tags: list[str]) -> dict[str, Any]:
        resp = self._call(f"snapshot volume {volume_id}", self.client.volume_snapshots.create, volume_id,
                          {"name": name, "tags": tags}, idempotent=False, expect="snapshot")
        return dict(resp["snapshot"])

    def droplet_actions(self, droplet_id: int) -> list[dict[str, Any]]:
        return list(self._pages(f"list actions of droplet {droplet_id}", self.client.droplet_actions.list, "actions",
                                droplet_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._call(f"delete snapshot {snapshot_id}", self.client.snapshots.delete, snapshot_id, idempotent=True)

    def image_actions(self, image_id: int) -> list[dict[str, Any]]:
        """Actions on a snapshot (an image): transfers to other regions among them."""
        resp = self._call(f"list actions of image {image_id}", self.client.image_actions.list, image_id,
                          idempotent=True, expect="actions")  # pydo takes no page arguments here
        return list(resp.get("actions") or [])

    def transfer_image(self, image_id: int, region: str) -> dict[str, Any]:
        """Copy a snapshot into another region (the same image then lists both regions)."""
        resp = self._call(f"transfer image {image_id} to {region}", self.client.image_actions.post, image_id,
                          {"type": "transfer", "region": region}, idempotent=False, expect="action")
        return dict(resp["action"])

    def get_action(self, action_id: int) -> dict[str, Any]:
        return dict(self._call(f"get action {action_id}", self.client.actions.get, action_id, idempotent=True,
                               expect="action")["action"])

    def get_droplet(self, droplet_id: int) -> dict[str, Any]:
        return dict(self._call(f"get droplet {droplet_id}", self.client.droplets.get, droplet_id, idempotent=True,
                               expect="droplet")["droplet"])

    def create_droplet(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._call(f"create droplet {body.get('name')}", self.client.droplets.create, body,
                          idempotent=False, expect="droplet")
        return dict(resp["droplet"])

    def get_app(self, app_id: str) -> dict[str, Any]:
        return dict(self._call(f"get app {app_id}", self.client.apps.get, app_id, idempotent=True, expect="app")["app"])

    def update_app(self, app_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole spec (absolute: safe to repeat)."""
        resp = self._call(f"update app {app_id}", self.client.apps.update, app_id, {"spec": spec},
                          idempotent=True, expect="app")
        return dict(resp["app"])

    def redeploy_app(self, app_id: str) -> dict[str, Any]:
        resp = self._call(f"redeploy app {app_id}", self.client.apps.create_deployment, app_id,
                          {"force_build": False}, idempotent=False, expect="deployment")
        return dict(resp["deployment"])


def _message(exc: Any) -> str:
    err = getattr(exc, "error", None)
    return str(getattr(err, "message", None) or exc.reason or exc)[:300]


def _retry_after(exc: Any, attempt: int) -> float:
    try:
        value = float(exc.response.headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        value = 2.0 ** attempt
    return max(0.0, min(value, MAX_WAIT_S))
