"""The Supabase Management API (https://api.supabase.com/v1), wrapped once, with requests.

* A personal access token (or an organization's OAuth token) as a bearer; it never appears in a
  message. Only https endpoints (tests name a loopback stand-in with its CA file).
* 429 is retried after `Retry-After` (the request was not processed), within the deadline; 5xx and
  connection errors are retried only for idempotent calls (GET, PATCH of absolute values); a POST
  is never retried blindly: the caller re-reads state and decides (a project created twice costs
  money and a name).
* Every failure is a `SupabaseApiError` with the HTTP status and what to check next.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DeadlineExceeded, SupabaseApiError
from drkit.core.secret import Secret
from drkit.platform.config import secure_url

DEFAULT_URL = "https://api.supabase.com"
MAX_ATTEMPTS = 4
BACKOFF_S = 0.5
MAX_WAIT_S = 30.0
TIMEOUT = (10, 60)
MAX_BODY = 64 << 20  # an Edge Function bundle larger than this is refused, not held in memory


class SupabaseApi:
    def __init__(self, token: Secret, *, url: str = DEFAULT_URL, ca_file: str | None = None,
                 deadline: Deadline | None = None, token_label: str = "DRKIT_SUPABASE_TOKEN"):
        import requests

        from drkit import __version__

        if not secure_url(url):
            raise ConfigError(f"the Supabase API URL {url!r} must be https:// (the token would travel in clear text)")
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token.reveal()}", "User-Agent": f"drkit/{__version__}",
                                  "Accept": "application/json"})
        if ca_file:
            self.http.verify = ca_file
        self.deadline = deadline or Deadline(None)
        self.token_label = token_label
        self.calls = 0

    def _request(self, method: str, path: str, what: str, *, idempotent: bool, params: Mapping[str, Any] | None = None,
                 json: Any = None, data: bytes | None = None, headers: Mapping[str, str] | None = None,
                 raw: bool = False) -> Any:
        import requests

        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.calls += 1
            wait = 0.0
            try:
                resp = self.http.request(method, self.url + path, params=params, json=json, data=data,
                                         headers=dict(headers or {}), timeout=TIMEOUT, stream=raw)
            except requests.RequestException as exc:
                if not idempotent:
                    raise SupabaseApiError(f"{what}: connection failed ({type(exc).__name__}); not retried (not "
                                           "idempotent): check the project before trying again") from None
                wait = BACKOFF_S * 2 ** (attempt - 1)
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return self._body(resp, what, raw)
                detail = _message(resp)
                if status == 429:
                    wait = min(float(resp.headers.get("Retry-After") or BACKOFF_S * 2 ** attempt), MAX_WAIT_S)
                elif status >= 500 and idempotent:
                    wait = BACKOFF_S * 2 ** (attempt - 1)
                elif status in (401, 403):
                    raise SupabaseApiError(f"{what}: the token was refused (HTTP {status}): check {self.token_label} "
                                           "(a personal access token of a member of the project's organization)",
                                           http_status=status)
                else:
                    raise SupabaseApiError(f"{what}: HTTP {status}: {detail}", http_status=status)
                log.warning("Supabase API call will be retried", call=what, status=status, wait_s=wait, attempt=attempt)
            if attempt == MAX_ATTEMPTS:
                break
            if wait > self.deadline.remaining() - 5:
                raise DeadlineExceeded(f"{what}: the Supabase API asked to wait {wait:.0f}s; not enough time left")
            time.sleep(wait)
        raise SupabaseApiError(f"{what}: still failing after {MAX_ATTEMPTS} attempts (rate limited or Supabase errors)")

    @staticmethod
    def _body(resp: Any, what: str, raw: bool) -> Any:
        if raw:
            data = bytearray()
            for chunk in resp.iter_content(1 << 16):
                data.extend(chunk)
                if len(data) > MAX_BODY:
                    resp.close()
                    raise SupabaseApiError(f"{what}: more than {MAX_BODY >> 20} MB")
            return bytes(data), resp.headers.get("Content-Type", "application/octet-stream")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise SupabaseApiError(f"{what}: the answer is not JSON (is the API URL right?)") from None

    def get(self, path: str, what: str) -> Any:
        return self._request("GET", path, what, idempotent=True)

    # -- a project's configuration (config-backup) --------------------------------------------------
    def project(self, ref: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/projects/{_seg(ref)}", f"project {ref}"))

    def projects(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/projects", "list projects") or [])

    def organization(self, slug: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/organizations/{_seg(slug)}", f"organization {slug}"))

    def function_body(self, ref: str, slug: str) -> tuple[bytes, str]:
        body, ctype = self._request("GET", f"/v1/projects/{_seg(ref)}/functions/{_seg(slug)}/body",
                                    f"Edge Function {slug} of {ref}", idempotent=True, raw=True)
        return body, ctype

    # -- rebuilding a project (drkit supabase recreate --apply) ---------------------------------------
    def create_project(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/projects", f"create project {body.get('name')}", idempotent=False,
                                  json=dict(body)))

    def patch(self, path: str, body: Mapping[str, Any], what: str) -> Any:
        return self._request("PATCH", path, what, idempotent=True, json=dict(body))

    def post(self, path: str, body: Any, what: str) -> Any:
        return self._request("POST", path, what, idempotent=False, json=body)

    def deploy_function(self, ref: str, meta: Mapping[str, Any], bundle: bytes, content_type: str) -> dict[str, Any]:
        params = {k: v for k, v in meta.items() if v is not None}
        return dict(self._request("POST", f"/v1/projects/{_seg(ref)}/functions", f"deploy Edge Function {meta['slug']}",
                                  idempotent=False, params=params, data=bundle,
                                  headers={"Content-Type": content_type}))


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _message(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:200] or resp.reason or "no detail"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]
