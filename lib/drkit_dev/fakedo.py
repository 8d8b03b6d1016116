"""A stateful fake DigitalOcean API over HTTPS on 127.0.0.1, checked against DO's OpenAPI spec.

Every request is validated with openapi-core against
`shared/do-openapi/digitalocean-public.v2.yaml`, and additionally refused if
its JSON body has a key the operation's schema does not name (the spec allows
extra properties; a misspelt field must fail): `$ref`, `allOf` and
discriminated `anyOf`/`oneOf` are followed. A request that fails either
check gets HTTP 422 with the reason, and is recorded in `violations`.

State: domains and records, reserved IPs, droplets (ids only), apps and
deployments, actions. Faults: `fail(method, path_regex, status, times,
retry_after)`. Every request is logged in `requests` (method, path, body).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# A copy of shared/do-openapi's spec travels with the project (data/do-openapi/README.md says
# where it comes from; a test keeps it equal to shared/'s); DRKIT_DO_SPEC overrides.
SPEC = Path(os.environ.get("DRKIT_DO_SPEC") or
            Path(__file__).resolve().parent / "data" / "do-openapi" / "digitalocean-public.v2.yaml")
SPEC_HOST = "https://api.digitalocean.com"

_spec_cache: dict[str, Any] = {}
NOT_FOUND = {"id": "not_found", "message": "The resource you were accessing could not be found."}


def load_spec(path: Path = SPEC) -> tuple[dict[str, Any], Any]:
    if "spec" not in _spec_cache:
        import yaml

        if not path.exists():
            raise FileNotFoundError(f"DigitalOcean's OpenAPI spec is not at {path} (DRKIT_DO_SPEC)")
        from openapi_core import Config, OpenAPI

        spec = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        _spec_cache["spec"] = spec
        _spec_cache["api"] = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    return _spec_cache["spec"], _spec_cache["api"]


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/")
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def unknown_keys(schema: dict[str, Any], value: Any, spec: dict[str, Any], path: str = "") -> list[str]:
    """Keys in `value` that `schema` does not name, following $ref/allOf/anyOf/oneOf (+ discriminator)."""
    schema = _resolve(schema, spec)
    if not isinstance(value, dict):
        if isinstance(value, list) and "items" in schema:
            return [p for i, v in enumerate(value) for p in unknown_keys(schema["items"], v, spec, f"{path}[{i}]")]
        return []
    props: dict[str, Any] = {}
    open_ended = schema.get("additionalProperties") not in (None, False)
    for part in schema.get("allOf", []):
        part = _resolve(part, spec)
        props.update(_properties(part, spec))
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        disc = schema.get("discriminator")
        chosen = None
        if disc and isinstance(value.get(disc["propertyName"]), str):
            target = disc.get("mapping", {}).get(value[disc["propertyName"]])
            if target:
                chosen = _resolve({"$ref": target}, spec)
        if chosen is None:  # no discriminator: the branch naming most of the keys
            chosen = max((_resolve(c, spec) for c in choices), key=lambda c: len(set(_properties(c, spec)) & set(value)))
        props.update(_properties(chosen, spec))
    props.update(schema.get("properties", {}))
    if open_ended and not props:
        return []
    out = [f"{path}{k}" for k in value if k not in props]
    for k, v in value.items():
        if k in props and isinstance(v, (dict, list)):
            out += unknown_keys(props[k], v, spec, f"{path}{k}.")
    return out


def _properties(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema, spec)
    props = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        props.update(_properties(part, spec))
    return props


@dataclass
class Fault:
    method: str
    path: str  # regex
    status: int
    times: int | None = 1
    retry_after: int | None = None
    hits: int = 0


@dataclass
class FakeDO:
    token: str = "dop_v1_fake_test_token"
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # domain -> records
    reserved_ips: dict[str, dict[str, Any]] = field(default_factory=dict)
    droplets: set[int] = field(default_factory=set)  # ids that exist (reserved IP targets)
    droplet_objs: dict[int, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    action_steps: int = 1  # GETs of an action before it completes (droplet snapshots)
    transfer_steps: int = 1  # snapshot listings a transfer to another region takes
    apps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # app id -> deployments
    # read-only inventory for config-backup: kind -> objects (apps, firewalls, load_balancers, vpcs, projects)
    inventory: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    databases: list[dict[str, Any]] = field(default_factory=list)
    database_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    database_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    project_resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    domain_ttl: dict[str, int] = field(default_factory=dict)
    page_cap: int = 200  # DO's maximum per_page; lower it to force many pages
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)  # values: Any-typed JSON
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1000

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_record(self, domain: str, rtype: str, name: str, data: str, ttl: int = 1800,
                   **extra: Any) -> dict[str, Any]:
        rec = {"id": self.next_id(), "type": rtype, "name": name, "data": data, "priority": None, "port": None,
               "ttl": ttl, "weight": None, "flags": None, "tag": None}
        rec.update({k: v for k, v in extra.items() if k in ("priority", "port", "weight", "flags", "tag")})
        self.records.setdefault(domain, []).append(rec)
        return rec

    def add_domain(self, domain: str, ttl: int = 1800) -> None:
        """A domain as DO creates it: SOA and three apex NS records."""
        self.domain_ttl[domain] = ttl
        self.records.setdefault(domain, [])
        self.add_record(domain, "SOA", "@", "1800", 1800)
        for n in (1, 2, 3):
            self.add_record(domain, "NS", "@", f"ns{n}.digitalocean.com", 1800)

    def add_droplet(self, name: str, tags: list[str], region: str = "fra1", size: str = "s-2vcpu-4gb") -> dict[str, Any]:
        ident = self.next_id()
        d: dict[str, Any] = {"id": ident, "name": name, "status": "active", "tags": tags, "region": {"slug": region},
             "size_slug": size, "vpc_uuid": "vpc-1", "image": {"id": 1, "name": "ubuntu"},
             "created_at": dt.datetime.now(dt.UTC).isoformat(),
             "networks": {"v4": [{"ip_address": f"192.0.2.{ident % 250 + 1}", "type": "public"},
                                 {"ip_address": f"10.10.0.{ident % 250 + 1}", "type": "private"}], "v6": []}}
        self.droplet_objs[d["id"]] = d
        self.droplets.add(d["id"])
        return d

    def add_volume(self, name: str, tags: list[str], region: str = "fra1") -> dict[str, Any]:
        import uuid

        v: dict[str, Any] = {"id": str(uuid.uuid4()), "name": name, "tags": tags, "region": {"slug": region},
             "size_gigabytes": 10, "droplet_ids": []}
        self.volumes[v["id"]] = v
        return v

    def add_snapshot(self, name: str, resource_id: Any, rtype: str, created: dt.datetime) -> dict[str, Any]:
        s: dict[str, Any] = {"id": str(self.next_id()), "name": name, "created_at": created.isoformat().replace("+00:00", "Z"),
             "regions": ["fra1"], "resource_id": str(resource_id), "resource_type": rtype, "min_disk_size": 20,
             "size_gigabytes": 1.5, "tags": []}
        self.snapshots.append(s)
        return s

    def fail(self, method: str, path: str, status: int, times: int | None = 1, retry_after: int | None = None) -> Fault:
        f = Fault(method.upper(), path, status, times, retry_after)
        self.faults.append(f)
        return f

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    # -- serving ---------------------------------------------------------------------------
    def start(self) -> FakeDO:
        from .probeservers import self_signed

        folder = Path(tempfile.mkdtemp(prefix="drkit-fakedo-"))
        ctx, pem = self_signed(30, folder)
        self.ca_file = str(folder / "cert.pem")
        self.ca_pem = pem
        fake = self
        spec, api = load_spec()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                body = json.loads(raw) if raw else None
                with fake.lock:
                    fake.requests.append((self.command, url.path, body))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"id": "unauthorized", "message": "Unable to authenticate you."})
                problem = fake._validate(spec, api, self.command, url.path, url.query, raw, dict(self.headers))
                if problem:
                    with fake.lock:
                        fake.violations.append(f"{self.command} {url.path}: {problem}")
                    return self._reply(422, {"id": "unprocessable_entity", "message": problem})
                for f in fake.faults:
                    if f.method == self.command and re.search(f.path, url.path) and (f.times is None or f.hits < f.times):
                        f.hits += 1
                        headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
                        code = {429: "too_many_requests", 500: "server_error", 503: "service_unavailable"}
                        return self._reply(f.status, {"id": code.get(f.status, "error"), "message": "injected"}, headers)
                status, reply = fake._route(self.command, url.path, parse_qs(url.query), body)
                self._reply(status, reply)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"https://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _validate(self, spec: dict[str, Any], api: Any, method: str, path: str, query: str, raw: bytes,
                  headers: dict[str, str]) -> str | None:
        from openapi_core.testing import MockRequest

        req = MockRequest(SPEC_HOST, method.lower(), path, args=parse_qs(query),
                          headers={k.lower(): v for k, v in headers.items()}, data=raw or None,
                          content_type="application/json")
        try:
            api.validate_request(req)
        except Exception as exc:  # noqa: BLE001 - the reason is the fake's answer
            detail = getattr(exc, "__cause__", None) or exc
            return f"not valid for the DO API spec: {type(exc).__name__}: {detail}"[:800]
        if raw:
            pattern = next((p for p in spec["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path)), None)
            op = spec["paths"][pattern][method.lower()]
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            extra = unknown_keys(schema, json.loads(raw), spec)
            if extra:
                return f"request has keys the operation's schema does not name: {', '.join(extra)}"
        return None

    # -- resources ---------------------------------------------------------------------------
    def _route_inventory(self, method: str, path: str, query: dict[str, list[str]],
                         body: Any) -> tuple[int, Any] | None:
        """Domains and the read-only inventory config-backup collects (None: not one of these routes)."""
        if path == "/v2/domains" and method == "GET":
            items = [{"name": d, "ttl": self.domain_ttl.get(d, 1800), "zone_file": f"$ORIGIN {d}.\n"}
                     for d in sorted(self.records)]
            return 200, self._page(items, "domains", query, path)
        if path == "/v2/domains" and method == "POST":
            if body["name"] in self.records:
                return 422, {"id": "unprocessable_entity", "message": "Name already exists"}
            self.add_domain(body["name"])
            return 201, {"domain": {"name": body["name"], "ttl": 1800, "zone_file": None}}
        m = re.fullmatch(r"/v2/domains/([^/]+)", path)
        if m and method == "GET":
            if m.group(1) not in self.records:
                return 404, NOT_FOUND
            return 200, {"domain": {"name": m.group(1), "ttl": self.domain_ttl.get(m.group(1), 1800), "zone_file": ""}}
        for kind in ("apps", "firewalls", "load_balancers", "vpcs", "projects"):
            if path == f"/v2/{kind}" and method == "GET":
                return 200, self._page(self.inventory.get(kind, []), kind, query, path)
        if path == "/v2/reserved_ips" and method == "GET":
            return 200, self._page(list(self.reserved_ips.values()), "reserved_ips", query, path)
        if path == "/v2/databases" and method == "GET":
            return 200, {"databases": self.databases}
        m = re.fullmatch(r"/v2/databases/([^/]+)/(config|firewall)", path)
        if m and method == "GET":
            if not any(d["id"] == m.group(1) for d in self.databases):
                return 404, NOT_FOUND
            if m.group(2) == "config":
                return 200, {"config": self.database_configs.get(m.group(1), {})}
            return 200, {"rules": self.database_rules.get(m.group(1), [])}
        m = re.fullmatch(r"/v2/projects/([^/]+)/resources", path)
        if m and method == "GET":
            if m.group(1) not in self.project_resources:
                return 404, NOT_FOUND
            return 200, self._page(self.project_resources[m.group(1)], "resources", query, path)
        return None

    def _page(self, items: list[Any], key: str, query: dict[str, list[str]], path: str) -> dict[str, Any]:
        per_page = min(int(query.get("per_page", ["20"])[0]), self.page_cap)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page: page * per_page]
        pages: dict[str, str] = {}
        if page * per_page < len(items):
            pages["next"] = f"{SPEC_HOST}{path}?page={page + 1}&per_page={per_page}"
            pages["last"] = f"{SPEC_HOST}{path}?page={(len(items) + per_page - 1) // per_page}&per_page={per_page}"
        return {key: chunk, "links": {"pages": pages}, "meta": {"total": len(items)}}

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        with self.lock:
            answer = self._route_inventory(method, path, query, body)
            if answer is not None:
                return answer
            m = re.fullmatch(r"/v2/domains/([^/]+)/records", path)
            if m:
                domain = m.group(1)
                if domain not in self.records:
                    return 404, NOT_FOUND
                if method == "GET":
                    recs = self.records[domain]
                    if "type" in query:
                        recs = [r for r in recs if r["type"] == query["type"][0]]
                    if "name" in query:
                        fqdn = query["name"][0]
                        recs = [r for r in recs if (r["name"] + "." + domain if r["name"] != "@" else domain) == fqdn]
                    return 200, self._page(recs, "domain_records", query, path)
                created = self.add_record(domain, body["type"], body["name"], body["data"], body.get("ttl", 1800),
                                          **{k: body[k] for k in ("priority", "port", "weight", "flags", "tag") if k in body})
                return 201, {"domain_record": created}
            m = re.fullmatch(r"/v2/domains/([^/]+)/records/(\d+)", path)
            if m:
                recs = self.records.get(m.group(1), [])
                rec = next((r for r in recs if r["id"] == int(m.group(2))), None)
                if rec is None:
                    return 404, NOT_FOUND
                if method in ("PATCH", "PUT"):
                    rec.update({k: v for k, v in body.items()
                                if k in ("type", "name", "data", "ttl", "priority", "port", "weight", "flags", "tag")})
                if method == "DELETE":
                    recs.remove(rec)
                    return 204, None
                return 200, {"domain_record": rec}
            m = re.fullmatch(r"/v2/reserved_ips/([^/]+)(/actions)?", path)
            if m:
                ip = self.reserved_ips.get(m.group(1))
                if ip is None:
                    return 404, NOT_FOUND
                if m.group(2) and method == "POST":
                    if body["type"] == "assign":
                        if body["droplet_id"] not in self.droplets:
                            return 422, {"id": "unprocessable_entity", "message": "Droplet not found"}
                        ip["droplet"] = {"id": body["droplet_id"]}
                    else:
                        ip["droplet"] = None
                    action_id = self.next_id()
                    action = {"id": action_id, "status": "completed", "type": f"{body['type']}_ip",
                              "started_at": dt.datetime.now(dt.UTC).isoformat(), "resource_type": "reserved_ip"}
                    self.actions[action_id] = action
                    return 201, {"action": action}
                return 200, {"reserved_ip": ip}
            if path == "/v2/droplets" and method == "GET":
                items = list(self.droplet_objs.values())
                if "tag_name" in query:
                    items = [d for d in items if query["tag_name"][0] in d["tags"]]
                return 200, self._page(items, "droplets", query, path)
            if path == "/v2/droplets" and method == "POST":
                d = self.add_droplet(body["name"], body.get("tags", []), body["region"], body["size"])
                d["status"], d["image"] = "new", {"id": body["image"]}
                return 202, {"droplet": {**d, "networks": {"v4": [], "v6": []}}}  # addresses come once it is up
            m = re.fullmatch(r"/v2/droplets/(\d+)(/actions)?", path)
            if m:
                drop = self.droplet_objs.get(int(m.group(1)))
                if drop is None:
                    return 404, NOT_FOUND
                if m.group(2) and method == "GET":
                    mine = [{k: v for k, v in a.items() if not k.startswith("_")} for a in self.actions.values()
                            if a.get("resource_id") == drop["id"]]
                    return 200, self._page(mine, "actions", query, path)
                if m.group(2):
                    action_id = self.next_id()
                    started: dict[str, Any] = {
                        "id": action_id, "status": "in-progress", "type": body["type"], "resource_id": drop["id"],
                        "resource_type": "droplet", "started_at": dt.datetime.now(dt.UTC).isoformat(),
                        "_name": body.get("name"), "_gets": 0}
                    self.actions[action_id] = started
                    return 201, {"action": {k: v for k, v in started.items() if not k.startswith("_")}}
                if drop["status"] == "new":
                    drop["status"] = "active"  # becomes active on the next look
                return 200, {"droplet": drop}
            m = re.fullmatch(r"/v2/actions/(\d+)", path)
            if m:
                found = self.actions.get(int(m.group(1)))
                if found is None:
                    return 404, NOT_FOUND
                gets = int(found.get("_gets", 0)) + 1
                found["_gets"] = gets
                if found["status"] == "in-progress" and gets >= self.action_steps:
                    found["status"] = "completed"
                    if found["type"] == "snapshot":
                        self.add_snapshot(str(found["_name"]), found["resource_id"], "droplet", dt.datetime.now(dt.UTC))
                return 200, {"action": {k: v for k, v in found.items() if not k.startswith("_")}}
            if path == "/v2/volumes" and method == "GET":
                return 200, self._page(list(self.volumes.values()), "volumes", query, path)
            m = re.fullmatch(r"/v2/volumes/([^/]+)/snapshots", path)
            if m and method == "POST":
                if m.group(1) not in self.volumes:
                    return 404, NOT_FOUND
                s = self.add_snapshot(body["name"], m.group(1), "volume", dt.datetime.now(dt.UTC))
                return 201, {"snapshot": s}
            m = re.fullmatch(r"/v2/images/(\d+)/actions", path)
            if m:
                image = next((x for x in self.snapshots if x["id"] == m.group(1)), None)
                if image is None:
                    return 404, NOT_FOUND
                if method == "GET":
                    mine = [{k: v for k, v in a.items() if not k.startswith("_")} for a in self.actions.values()
                            if a.get("resource_id") == int(m.group(1)) and a.get("resource_type") == "image"]
                    return 200, self._page(mine, "actions", query, path)
                action_id = self.next_id()
                moving: dict[str, Any] = {"id": action_id, "status": "in-progress", "type": body["type"],
                                          "resource_id": int(m.group(1)), "resource_type": "image",
                                          "region_slug": body.get("region"),
                                          "started_at": dt.datetime.now(dt.UTC).isoformat(), "_gets": 0}
                self.actions[action_id] = moving
                return 201, {"action": {k: v for k, v in moving.items() if not k.startswith("_")}}
            if path == "/v2/snapshots" and method == "GET":
                for a in self.actions.values():  # a transfer takes a while: it is done by the next listing
                    if a.get("type") == "transfer" and a["status"] == "in-progress":
                        if int(a.get("_gets", 0)) >= self.transfer_steps:
                            a["status"] = "completed"
                            found = next(x for x in self.snapshots if x["id"] == str(a["resource_id"]))
                            found["regions"] = sorted({*found["regions"], a["region_slug"]})
                        a["_gets"] = int(a.get("_gets", 0)) + 1
                items = self.snapshots
                if "resource_type" in query:
                    items = [s for s in items if s["resource_type"] == query["resource_type"][0]]
                return 200, self._page(items, "snapshots", query, path)
            m = re.fullmatch(r"/v2/snapshots/([^/]+)", path)
            if m and method == "DELETE":
                before = len(self.snapshots)
                self.snapshots = [s for s in self.snapshots if s["id"] != m.group(1)]
                if len(self.snapshots) == before:
                    return 404, NOT_FOUND
                return 204, None
            m = re.fullmatch(r"/v2/apps/([^/]+)", path)
            if m and method in ("GET", "PUT"):
                app = next((a for a in self.inventory.get("apps", []) if a["id"] == m.group(1)), None)
                if app is None:
                    return 404, {"id": "not_found", "message": "app not found"}
                if method == "PUT":
                    app["spec"] = body["spec"]
                    app["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
                return 200, {"app": app}
            m = re.fullmatch(r"/v2/apps/([^/]+)/deployments", path)
            if m and method == "POST":
                if m.group(1) not in self.apps:
                    return 404, {"id": "not_found", "message": "app not found"}
                dep = {"id": f"dep-{self.next_id()}", "phase": "PENDING_BUILD"}
                self.apps[m.group(1)].append(dep)
                return 200, {"deployment": dep}
        return 404, {"id": "not_found", "message": f"fake DO API has no route for {method} {path}"}
