"""A stateful fake Supabase Management API on 127.0.0.1, checked against the operations Supabase documents.

`data/supabase/management-api.json` lists, for each operation drkit uses, what the API's OpenAPI
document says (supabase/cli's generated copy, PROVENANCE.md): the path, its query parameters, the
request's content types with their required and known fields, and the fields every answer has. A
request for another path or method, with an unknown query parameter, a content type the operation
does not take, a JSON field it does not name or without one it requires gets HTTP 422 and is kept in
`violations`; `answers_complete()` checks that every answer this fake gave had every required field.

State: one organization, projects (a new one is COMING_UP, then ACTIVE_HEALTHY), each with its Auth
and API settings, network restrictions, buckets, secrets, Edge Functions (their bundles) and
Supabase's own backups. Faults: `fail(method, path_regex, status, times, retry_after)`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets as pysecrets
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .probeservers import QuietHandler

CONTRACT = Path(__file__).resolve().parent / "data" / "supabase" / "management-api.json"
TOKEN = "sbp_drkit_fake_token_0123456789abcdef"


def contract() -> dict[str, Any]:
    return dict(json.loads(CONTRACT.read_text())["operations"])


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[a-z_]+\}", r"([^/]+)", path) + "$")


def _blank(fields: list[str]) -> dict[str, Any]:
    return {k: None for k in fields}


@dataclass
class Project:
    ref: str
    name: str
    region: str
    status: str = "ACTIVE_HEALTHY"
    auth: dict[str, Any] = field(default_factory=dict)
    postgrest: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    buckets: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    functions: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    backups: dict[str, Any] = field(default_factory=dict)
    polls: int = 0


@dataclass
class FakeSupabase:
    token: str = TOKEN
    org_slug: str = "acme-org"
    plan: str = "pro"
    projects: dict[str, Project] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    answered: list[tuple[str, Any]] = field(default_factory=list)  # (operation, body) of every 2xx JSON answer
    faults: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.ops = contract()
        self.routes = [(key.split(" ", 1)[0], _template(key.split(" ", 1)[1]), key) for key in self.ops]

    # -- state --------------------------------------------------------------------------------
    def add_project(self, ref: str, name: str, region: str = "eu-central-1") -> Project:
        today = dt.datetime.now(dt.UTC).date()  # Supabase's daily backups: the last seven days
        auth = _blank(self.ops["GET /v1/projects/{ref}/config/auth"]["response"]["required"])
        auth.update(site_url="https://app.example.com", uri_allow_list="https://app.example.com/**",
                    disable_signup=False, jwt_exp=3600, external_email_enabled=True,
                    external_google_enabled=True, external_google_client_id="google-client-id.apps",
                    external_google_secret="gsecret-drkit-fixture", smtp_host="smtp.example.com", smtp_port="587",
                    smtp_user="mailer", smtp_pass="smtp-pw-drkit-fixture", mfa_totp_enroll_enabled=True,
                    hook_send_email_enabled=True, hook_send_email_uri="https://hooks.example.com/mail",
                    hook_send_email_secrets="v1,whsec_drkit_fixture", password_min_length=12)
        p = Project(ref, name, region, auth=auth,
                    postgrest={"db_schema": "public,graphql_public", "max_rows": 1000,
                               "db_extra_search_path": "public,extensions", "db_pool": None,
                               "jwt_secret": "jwt-secret-drkit-fixture"},
                    network={"entitlement": "allowed", "status": "applied",
                             "config": {"dbAllowedCidrs": ["203.0.113.0/24"], "dbAllowedCidrsV6": []}},
                    buckets=[{"id": "avatars", "name": "avatars", "owner": "", "public": True,
                              "created_at": "2026-01-02T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"}],
                    secrets={"STRIPE_KEY": "sk_live_drkit_fixture", "RESEND_API_KEY": "re_drkit_fixture"},
                    backups={"region": region, "walg_enabled": True, "pitr_enabled": False,
                             "backups": [{"id": i, "is_physical_backup": True, "status": "COMPLETED",
                                          "inserted_at": (today - dt.timedelta(days=i)).isoformat() + "T03:00:00Z"}
                                         for i in range(7)],
                             "physical_backup_data": {}})
        body = b"ESZIP2.3\x00drkit fake bundle of hello-world\n" * 40
        p.functions["hello-world"] = ({"id": "fn-1", "slug": "hello-world", "name": "hello-world",
                                       "status": "ACTIVE", "version": 7, "verify_jwt": True,
                                       "entrypoint_path": "file:///src/index.ts", "import_map_path": None,
                                       "ezbr_sha256": hashlib.sha256(body).hexdigest(),
                                       "created_at": 1760000000000, "updated_at": 1760000000000}, body)
        self.projects[ref] = p
        return p

    def fail(self, method: str, path_regex: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        self.faults.append([method, re.compile(path_regex), status, times, retry_after])

    def answers_complete(self) -> list[str]:
        """Answers that lacked a field the API documents as always there."""
        out = []
        for op, body in self.answered:
            resp = self.ops[op]["response"]
            for item in (body if resp.get("array") else [body]):
                missing = [k for k in resp.get("required", []) if k not in item]
                if missing:
                    out.append(f"{op}: {missing[:5]}")
        return out

    # -- the server ---------------------------------------------------------------------------
    def start(self) -> FakeSupabase:
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def _json(self, code: int, obj: Any) -> None:
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake.lock:
                    fake.requests.append((method, url.path, raw[:2000]))
                    if self.headers.get("Authorization") != f"Bearer {fake.token}":
                        return self._json(401, {"message": "Unauthorized"})
                    for f in fake.faults:
                        if f[0] == method and f[1].search(url.path) and f[3] > 0:
                            f[3] -= 1
                            headers = {"Retry-After": str(f[4])} if f[4] is not None else {}
                            return self._send(f[2], b'{"message": "injected"}', headers)
                    found = next(((op, m.groups()) for verb, pattern, op in fake.routes if verb == method
                                  for m in [pattern.match(url.path)] if m), None)
                    if found is None:
                        fake.violations.append(f"{method} {url.path}: no such operation")
                        return self._json(404, {"message": "Cannot " + method})
                    op, args = found
                    problem = fake._check(op, parse_qs(url.query), self.headers.get("Content-Type", ""), raw)
                    if problem:
                        fake.violations.append(f"{op}: {problem}")
                        return self._json(422, {"message": problem})
                    code, body, ctype = fake._answer(op, args, parse_qs(url.query), raw)
                    if isinstance(body, bytes):
                        return self._send(code, body, {"Content-Type": ctype})
                    if 200 <= code < 300:
                        fake.answered.append((op, body))
                    return self._json(code, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeSupabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- validation and answers ------------------------------------------------------------------
    def _check(self, op: str, query: dict[str, list[str]], ctype: str, raw: bytes) -> str | None:
        spec = self.ops[op]
        unknown = sorted(set(query) - set(spec["query"]))
        if unknown:
            return f"unknown query parameter(s) {unknown}"
        if "request" not in spec:
            return "this operation takes no body" if raw else None
        ctype = ctype.split(";", 1)[0].strip()
        if ctype not in spec["request"]:
            return f"content type {ctype!r} is not one of {sorted(spec['request'])}"
        req = spec["request"][ctype]
        if ctype != "application/json":
            return None if raw else "an empty body"
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return "the body is not JSON"
        items = body if req.get("array") else [body]
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                return "the body is not an object"
            extra = sorted(set(item) - set(req["properties"])) if req["properties"] else []
            missing = sorted(set(req["required"]) - set(item))
            if extra or missing:
                return f"fields not in the API: {extra}; required fields missing: {missing}"
        return None

    def _answer(self, op: str, args: tuple[str, ...], query: dict[str, list[str]], raw: bytes
                ) -> tuple[int, Any, str]:
        p = self.projects.get(args[0]) if args and op.split(" ", 1)[1].startswith("/v1/projects/{ref}") else None
        if op.startswith("GET /v1/organizations/"):
            if args[0] != self.org_slug:
                return 404, {"message": "organization not found"}, ""
            return 200, {"id": self.org_slug, "name": "Acme", "plan": self.plan, "opt_in_tags": [],
                         "allowed_release_channels": ["ga"]}, ""
        if op == "GET /v1/projects":
            return 200, [self._project(x) for x in self.projects.values()], ""
        if op == "POST /v1/projects":
            body = json.loads(raw)
            ref = "".join(pysecrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20))
            new = self.add_project(ref, body["name"], body.get("region") or "us-east-1")
            new.status, new.functions, new.secrets, new.buckets = "COMING_UP", {}, {}, []
            new.auth = _blank(list(new.auth))
            return 201, {k: v for k, v in self._project(new).items() if k != "database"}, ""
        if p is None:
            return 404, {"message": "project not found"}, ""
        path = op.split(" ", 1)[1]
        if op == "GET /v1/projects/{ref}":
            p.polls += 1
            if p.status == "COMING_UP" and p.polls > 1:
                p.status = "ACTIVE_HEALTHY"
            return 200, self._project(p), ""
        if path.endswith("/config/auth"):
            if op.startswith("PATCH"):
                p.auth.update(json.loads(raw))
            return 200, dict(p.auth), ""
        if path.endswith("/postgrest"):
            if op.startswith("PATCH"):
                p.postgrest.update(json.loads(raw))
            return 200, {k: v for k, v in p.postgrest.items()}, ""
        if path.endswith("/network-restrictions"):
            return 200, dict(p.network), ""
        if path.endswith("/network-restrictions/apply"):
            p.network = {"entitlement": "allowed", "status": "applied", "config": json.loads(raw)}
            return 201, dict(p.network), ""
        if path.endswith("/storage/buckets"):
            return 200, list(p.buckets), ""
        if path.endswith("/secrets"):
            return 200, [{"name": k, "value": hashlib.sha256(v.encode()).hexdigest()} for k, v in p.secrets.items()], ""
        if path.endswith("/database/backups"):
            return 200, dict(p.backups), ""
        if op == "GET /v1/projects/{ref}/functions":
            return 200, [dict(meta) for meta, _ in p.functions.values()], ""
        if op == "GET /v1/projects/{ref}/functions/{function_slug}/body":
            found = p.functions.get(args[1])
            if found is None:
                return 404, {"message": "function not found"}, ""
            return 200, found[1], "application/octet-stream"
        if op == "POST /v1/projects/{ref}/functions":
            slug = query["slug"][0]
            meta = {"id": f"fn-{len(p.functions) + 1}", "slug": slug, "name": query.get("name", [slug])[0],
                    "status": "ACTIVE", "version": 1, "verify_jwt": query.get("verify_jwt", ["true"])[0] == "true",
                    "entrypoint_path": query.get("entrypoint_path", [None])[0],
                    "ezbr_sha256": hashlib.sha256(raw).hexdigest(), "created_at": 1, "updated_at": 1}
            p.functions[slug] = (meta, raw)
            return 201, dict(meta), ""
        return 404, {"message": "not served by the fake"}, ""

    def _project(self, p: Project) -> dict[str, Any]:
        return {"id": p.ref, "ref": p.ref, "organization_id": self.org_slug, "organization_slug": self.org_slug,
                "name": p.name, "region": p.region, "created_at": "2026-01-01T00:00:00Z", "status": p.status,
                "database": {"host": f"db.{p.ref}.supabase.co", "version": "17.6.1.005", "postgres_engine": "17",
                             "release_channel": "ga"}}
