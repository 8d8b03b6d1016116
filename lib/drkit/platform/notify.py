"""Notifications: a Slack-compatible incoming webhook and/or a generic JSON webhook.

    DRKIT_NOTIFY_SLACK_URL    https://hooks.slack.com/services/... (Slack, Mattermost, Rocket.Chat)
    DRKIT_NOTIFY_WEBHOOK_URL  any https endpoint; receives the event as JSON
    DRKIT_NOTIFY_SECRET       optional: signs the generic webhook:
                              X-Drkit-Timestamp: <unix seconds>
                              X-Drkit-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

Webhook URLs are secrets (they authorise posting) and are never logged. A
failed delivery is logged and reported in the result; it never fails the run
whose outcome it reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core import log
from drkit.core.errors import ConfigError
from drkit.core.secret import Secret
from drkit.platform.config import secure_url

TIMEOUT_S = 10
CHANNELS = ("slack", "webhook")


@dataclass(frozen=True)
class Notifier:
    slack_url: Secret | None = None
    webhook_url: Secret | None = None
    secret: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Notifier:
        problems = []
        urls: dict[str, Secret | None] = {}
        for var in ("DRKIT_NOTIFY_SLACK_URL", "DRKIT_NOTIFY_WEBHOOK_URL"):
            value = environ.get(var, "").strip()
            if value and not secure_url(value):
                problems.append(f"{var} must be an https:// URL")
            urls[var] = Secret(value) if value else None
        secret = environ.get("DRKIT_NOTIFY_SECRET", "").strip()
        if secret and len(secret) < 16:
            problems.append("DRKIT_NOTIFY_SECRET must be at least 16 characters")
        if problems:
            raise ConfigError(problems)
        return cls(urls["DRKIT_NOTIFY_SLACK_URL"], urls["DRKIT_NOTIFY_WEBHOOK_URL"], Secret(secret) if secret else None)

    @classmethod
    def collect(cls, environ: Mapping[str, str], problems: list[str]) -> Notifier:
        """from_env for a caller that gathers every configuration problem before raising."""
        try:
            return cls.from_env(environ)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return cls()

    @property
    def configured(self) -> bool:
        return self.slack_url is not None or self.webhook_url is not None

    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, url in zip(CHANNELS, (self.slack_url, self.webhook_url), strict=True) if url is not None)

    def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Deliver to every configured endpoint; return one status per endpoint."""
        return [self.send_to(channel, event) for channel in self.channels()]

    def send_to(self, channel: str, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver to one endpoint; its status (`ok` only for a 2xx answer)."""
        import requests

        event = log.redact_obj(event)
        if channel == "slack" and self.slack_url is not None:
            return _post(requests, "slack", self.slack_url.reveal(), {"text": slack_text(event)}, {})
        if channel == "webhook" and self.webhook_url is not None:
            body = json.dumps(event, sort_keys=True, default=str)
            headers = {"Content-Type": "application/json", "X-Drkit-Event": str(event.get("event", ""))}
            if self.secret is not None:
                ts = str(int(time.time()))
                mac = hmac.new(self.secret.reveal().encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
                headers |= {"X-Drkit-Timestamp": ts, "X-Drkit-Signature": f"sha256={mac}"}
            return _post(requests, "webhook", self.webhook_url.reveal(), body, headers)
        return {"channel": channel, "ok": False, "error": "not configured"}


def slack_text(event: dict[str, Any]) -> str:
    icon = {"passed": ":white_check_mark:", "failed": ":rotating_light:", "timed_out": ":hourglass:",
            "partial": ":warning:"}.get(
        str(event.get("status")), ":information_source:")
    lines = [f"{icon} *drkit {event.get('function', '')}*: {event.get('decision', '')}"]
    for failed in event.get("failed_checks", [])[:10]:
        lines.append(f"• {failed}")
    return "\n".join(lines)


def _post(requests: Any, kind: str, url: str, payload: Any, headers: dict[str, str]) -> dict[str, Any]:
    for attempt in (1, 2):
        try:
            if isinstance(payload, str):
                resp = requests.post(url, data=payload.encode(), headers=headers, timeout=TIMEOUT_S)
            else:
                resp = requests.post(url, json=payload, headers=headers, timeout=TIMEOUT_S)
            if resp.status_code < 300:
                return {"channel": kind, "ok": True, "status": resp.status_code}
            if resp.status_code < 500 and resp.status_code != 429:
                break
        except requests.RequestException as exc:
            error = type(exc).__name__
            log.warning("notification failed", channel=kind, attempt=attempt, error=error)
            if attempt == 2:
                return {"channel": kind, "ok": False, "error": error}
        time.sleep(1)
    log.warning("notification rejected", channel=kind, status=resp.status_code)
    return {"channel": kind, "ok": False, "status": resp.status_code}
