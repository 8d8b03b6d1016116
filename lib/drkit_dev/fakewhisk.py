"""A DigitalOcean Functions namespace API stand-in (OpenWhisk REST) on 127.0.0.1, checked against the spec.

Every request is validated against OpenWhisk's own `apiv1swagger.json` (data/openwhisk-api): the path
must be one of its templates under `/api/v1`, the method one it defines there, every query parameter
one the operation declares (enum values included), and the request must carry HTTP Basic with the
namespace key. A request that breaks any of that is answered 400/401 and recorded in `violations`
(tests assert it stays empty). Invokes answer `202 {"activationId"}`; activation records have every
field the spec's `Activation` definition requires.

What an invoked function does is up to the test: `outcomes[action]` is `succeeded` (default),
`failed`, `timed_out` or `lost` (never a record: 404 forever); a `runner(action, params)` runs it for
real (in-process `handle`) and its result decides. `fail_next(status, times, retry_after)` answers the
next invokes with 429/5xx; `hang_s` makes each invoke answer that late (after the function started);
`clock` dates the activation records (a test's simulated time). `GET …/activations` lists the finished
ones (name, since, upto, limit, docs), as the scheduler does to find a dispatch whose answer was lost.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SPEC = Path(__file__).resolve().parent / "data" / "openwhisk-api" / "apiv1swagger.json"
Runner = Callable[[str, dict[str, Any]], dict[str, Any]]


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


@dataclass
class Invocation:
    activation_id: str
    action: str  # "dr/db-backup"
    params: dict[str, Any]
    at: float
    record: dict[str, Any] | None = None  # None: running, or lost


@dataclass
class FakeWhisk:
    namespace: str = "fn-00000000-drkit-test"
    key_id: str = "dof_v1_scheduler"
    secret: str = "scheduler-Secret-0123456789abcdef"
    runner: Runner | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # action -> succeeded|failed|timed_out|lost
    invocations: list[Invocation] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _faults: list[tuple[int, int, int | None]] = field(default_factory=list)  # (status, times, retry_after)
    clock: Callable[[], float] = time.time  # the activations' start and end (a test's simulated clock)
    duration_s: float = 0.0  # how long each simulated activation runs, by its record
    hang_s: float = 0.0  # an invoke that answers this late (after the activation started)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.spec = load_spec()
        self._routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(p).replace(r"\{", "{").replace(r"\}", "}"))
                                    + "$"), p) for p in self.spec["paths"]]

    # -- test controls --------------------------------------------------------------------
    @property
    def key(self) -> str:
        return f"{self.key_id}:{self.secret}"

    def fail_next(self, status: int, times: int = 1, retry_after: int | None = None) -> None:
        with self._lock:
            self._faults.append((status, times, retry_after))

    def invoked(self, action: str | None = None) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if action is None or i.action == f"dr/{action}"]

    # -- server ---------------------------------------------------------------------------
    def start(self) -> FakeWhisk:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake._serve(self.command, self.path, dict(self.headers.items()), raw)
                self._reply(status, body, headers)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        """What the scheduler's environment holds for this namespace."""
        return {"DRKIT_FUNCTIONS_API_HOST": self.host, "DRKIT_FUNCTIONS_NAMESPACE": self.namespace,
                "DRKIT_FUNCTIONS_KEY": self.key}

    # -- the API --------------------------------------------------------------------------
    def _violation(self, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.violations.append(text)
        return 400, {"error": text, "code": "drkit-fake"}, {}

    def _serve(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(target)
        with self._lock:
            self.requests.append((method, target))
        base = self.spec.get("basePath", "/api/v1")
        if not url.path.startswith(base + "/"):
            return self._violation(f"{method} {url.path}: not under {base}")
        path = url.path[len(base):]
        template = next((t for rx, t in self._routes if rx.match(path)), None)
        if template is None:
            return self._violation(f"{method} {path}: no such path in the OpenWhisk API")
        item = self.spec["paths"][template]
        op = item.get(method.lower())
        if op is None:
            return self._violation(f"{method} {template}: method not defined for this path")
        params = [*item.get("parameters", []), *op.get("parameters", [])]
        declared = {p["name"]: p for p in params if isinstance(p, dict) and p.get("in") == "query"}
        for name, values in parse_qs(url.query, keep_blank_values=True).items():
            p = declared.get(name)
            if p is None:
                return self._violation(f"{method} {template}: undeclared query parameter {name!r}")
            if "enum" in p and values[-1] not in p["enum"]:
                return self._violation(f"{method} {template}: {name}={values[-1]!r} not in {p['enum']}")
            if p.get("type") == "integer" and not values[-1].lstrip("-").isdigit():
                return self._violation(f"{method} {template}: {name} must be an integer")
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if scheme != "Basic":
            with self._lock:
                self.violations.append(f"{method} {template}: not HTTP Basic ({scheme or 'no Authorization'})")
            return 401, {"error": "The supplied authentication is invalid", "code": "x"}, {}
        if base64.b64decode(cred).decode() != self.key:
            return 401, {"error": "The supplied authentication is invalid", "code": "x"}, {}
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if segments[1] != self.namespace:
            return 403, {"error": "The supplied authentication is not authorized to access this resource."}, {}
        if template == "/namespaces/{namespace}/actions/{packageName}/{actionName}" and method == "POST":
            return self._invoke(f"{segments[3]}/{segments[4]}", url.query, raw)
        if template == "/namespaces/{namespace}/activations/{activationid}" and method == "GET":
            return self._activation(segments[3])
        if template == "/namespaces/{namespace}/activations" and method == "GET":
            return self._list(parse_qs(url.query))
        return self._violation(f"{method} {template}: not something drkit should call")

    def _invoke(self, action: str, query: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        if parse_qs(query).get("blocking", ["false"])[-1] != "false":
            return self._violation(f"POST {action}: drkit invokes without blocking")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return self._violation(f"POST {action}: body is not JSON")
        if not isinstance(params, dict):
            return self._violation(f"POST {action}: the payload must be a JSON object")
        with self._lock:
            if self._faults:
                status, times, retry_after = self._faults[0]
                self._faults[0] = (status, times - 1, retry_after)
                if times - 1 <= 0:
                    self._faults.pop(0)
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return status, {"error": "Too many requests" if status == 429 else "injected", "code": "f"}, headers
            inv = Invocation(uuid.uuid4().hex, action, params, time.time())
            self.invocations.append(inv)
        outcome = self.outcomes.get(action.split("/", 1)[1], "succeeded")
        if outcome != "lost":
            threading.Thread(target=self._finish, args=(inv, outcome), daemon=True).start()
        if self.hang_s:
            time.sleep(self.hang_s)  # the function runs; its caller waits (and may give up)
        return 202, {"activationId": inv.activation_id}, {}

    def _finish(self, inv: Invocation, outcome: str) -> None:
        start = int(self.clock() * 1000)
        if self.runner is not None and outcome == "succeeded":
            try:
                result = self.runner(inv.action.split("/", 1)[1], inv.params)
            except Exception as exc:  # noqa: BLE001 - the stand-in reports a crash as OpenWhisk does
                result = {"error": f"{type(exc).__name__}: {exc}"}
            success = "error" not in result
            status = "success" if success else "application error"
        elif outcome == "failed":
            result, success, status = {"ok": False, "error": "injected failure"}, False, "application error"
        elif outcome == "timed_out":
            result = {"error": "The action exceeded its time limits of 900000 milliseconds."}
            success, status = False, "developer error"
        else:
            result, success, status = {"ok": True, "status": "ok", "decision": "done"}, True, "success"
        if self.runner is None and isinstance(inv.params.get("dispatch_ref"), str):
            result["dispatch_ref"] = inv.params["dispatch_ref"]  # what drkit's edge does (platform/runtime.py)
        end = int(self.clock() * 1000) + int(self.duration_s * 1000)
        record = {"namespace": self.namespace, "name": inv.action.split("/", 1)[1], "version": "0.0.1",
                  "publish": False, "subject": self.namespace, "activationId": inv.activation_id,
                  "start": start, "end": end, "duration": end - start, "statusCode": 0 if success else 1,
                  "response": {"status": status, "statusCode": 0 if success else 1, "success": success,
                               "result": result, "size": len(json.dumps(result))},
                  "logs": [], "annotations": [{"key": "path", "value": f"{self.namespace}/{inv.action}"},
                                              {"key": "kind", "value": "python:3.11"}]}
        with self._lock:
            inv.record = record

    def _activation(self, activation_id: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            inv = next((i for i in self.invocations if i.activation_id == activation_id), None)
            record = inv.record if inv else None
        if record is None:
            return 404, {"error": "The requested resource does not exist.", "code": "x"}, {}
        missing = [k for k in self.spec["definitions"]["Activation"]["required"] if k not in record]
        if missing:
            return self._violation(f"activation record lacks {missing}")
        return 200, record, {}

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        """Finished activations, newest first, filtered by `name` and `since`/`upto` (ms); full records with
        `docs=true`, as OpenWhisk lists them (a running activation has no record yet, so it is not listed)."""
        name = query.get("name", [""])[-1]
        since = int(query.get("since", ["0"])[-1])
        upto = int(query.get("upto", [str(2**62)])[-1])
        limit = int(query.get("limit", ["30"])[-1])
        docs = query.get("docs", ["false"])[-1] == "true"
        with self._lock:
            found = [i.record for i in self.invocations if i.record is not None
                     and (not name or i.action == name or i.action.split("/", 1)[1] == name)
                     and since <= i.record["start"] <= upto]
        found.sort(key=lambda r: r["start"], reverse=True)
        out = [r if docs else {k: v for k, v in r.items() if k not in ("response", "logs")} for r in found[:limit]]
        return 200, out, {}

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until every invoked activation that will finish has its record."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                busy = [i for i in self.invocations if i.record is None
                        and self.outcomes.get(i.action.split("/", 1)[1], "succeeded") != "lost"]
            if not busy:
                return
            time.sleep(0.02)
        raise TimeoutError(f"{len(busy)} activation(s) still running")
