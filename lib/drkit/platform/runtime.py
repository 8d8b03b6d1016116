"""DigitalOcean Functions adapter: event -> params, deadline, result, logs.

`handle()` is the only place where errors become results: ConfigError ->
`invalid_config`, DeadlineExceeded -> `timed_out`, other DrkitError ->
`failed`, anything unexpected -> `error` (traceback in the log only). Results
are JSON objects under 1 MB, redacted like the logs, and carry `ok`,
`function`, `status` and a one-sentence `decision`.

`ok` means the run did its job. A run that did not (a database not backed up, a
verification that failed, a config source lost) always carries `error` (one
sentence), which is what makes DigitalOcean list the activation as failed.

The environment is read through `without_unset`: the deployer refuses empty
`${VAR}` values, so unset optional variables arrive as `envvars.UNSET`.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit import __version__
from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DrkitError
from drkit.platform.envvars import UNSET, missing
from drkit.platform.web import WebError, body_limit, from_event

MAX_RESULT_BYTES = 900_000  # DO limit is 1 MB; keep headroom
DISPATCH_REF = "dispatch_ref"  # set by the scheduler on each invoke, echoed in the result (finds a lost dispatch)
TRUE = ("true", "1", "yes", "y", "on")
FALSE = ("false", "0", "no", "n", "off", "")

RunFn = Callable[[Mapping[str, Any], Mapping[str, str], Deadline], dict[str, Any]]


class Params:
    """Strict call parameters. `doctl … -p key:value` sends every value as a string."""

    def __init__(self, params: Mapping[str, Any], known: tuple[str, ...]):
        self.params = dict(params)
        self.known = known
        self.problems: list[str] = []
        unknown = sorted(k for k in self.params if k not in known)
        if unknown:
            self.problems.append(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}")

    def string(self, name: str, default: str) -> str:
        value = self.params.get(name, default)
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problems.append(f"parameter {name!r} must be a string")
            return default
        return str(value).strip()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.params.get(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        self.problems.append(f"parameter {name!r} must be true or false, not {str(value)[:40]!r}")
        return default

    def databases(self) -> tuple[str, ...] | None:
        """The `database` parameter: a name, a comma list, or all (None)."""
        raw = self.string("database", "all")
        return None if raw in ("all", "*", "") else tuple(n.strip() for n in raw.split(",") if n.strip())

    def finish(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def params_from_event(event: Any) -> dict[str, Any]:
    """Call parameters from a scheduled/invoked event (drop OpenWhisk transport keys)."""
    if event is None:
        return {}
    if not isinstance(event, Mapping):
        raise ConfigError("the function was called with a non-object event")
    return {k: v for k, v in event.items() if not k.startswith("__ow_") and k != "http"}


def without_unset(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment as the code should see it: deploy-time `unset` placeholders removed."""
    return {k: v for k, v in environ.items() if v.strip() != UNSET}


def with_missing(exc: ConfigError, function: str, environ: Mapping[str, str]) -> ConfigError:
    """A function's configuration problems, plus every required variable it did not get to name
    (a function may stop at its first missing group: the operator hears of all of them at once)."""
    said = " ".join(exc.problems)
    extra = [m for m in missing(function, environ) if m.split(" ")[1 if m.startswith("set ") else 0] not in said]
    return ConfigError([*exc.problems, *extra]) if extra else exc


def handle(function: str, run: RunFn, event: Any, context: Any = None,
           environ: Mapping[str, str] | None = None, default_deadline_s: float | None = 900.0) -> dict[str, Any]:
    environ = without_unset(os.environ if environ is None else environ)
    t0 = time.monotonic()
    activation = getattr(context, "activation_id", None) or environ.get("__OW_ACTIVATION_ID")
    log.configure(environ.get("DRKIT_LOG_LEVEL", "info"))
    log.reset(function=function, activation_id=activation)
    deadline = Deadline.from_context(context, default_deadline_s)
    log.info("run starting", deadline_s=None if deadline.remaining() == float("inf") else round(deadline.remaining(), 1))
    dispatch_ref = None
    try:
        params = params_from_event(event)
        if isinstance(params.get(DISPATCH_REF), str):
            dispatch_ref = str(params.pop(DISPATCH_REF))[:120]
        try:
            result = run(params, environ, deadline)
        except ConfigError as exc:
            raise with_missing(exc, function, environ) from None
    except ConfigError as exc:
        result = {"ok": False, "status": "invalid_config", "error": str(exc), "problems": exc.problems,
                  "decision": f"refused: invalid configuration or parameters; nothing was changed ({exc})"}
    except DrkitError as exc:
        result = {"ok": False, "status": exc.status, "error": str(exc), "decision": f"{exc.status}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - the edge: an unexpected error must still give a result
        log.error("internal error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        result = {"ok": False, "status": "error", "error": f"internal error: {type(exc).__name__}: {exc}",
                  "decision": "internal error; see the activation log"}
    out = {"ok": bool(result.pop("ok", False)), "function": function, **result,
           "duration_s": round(time.monotonic() - t0, 3), "drkit_version": __version__}
    if not out["ok"] and not out.get("error"):
        # DigitalOcean marks an activation failed only when the result holds `error`.
        out["error"] = str(out.get("decision") or f"{function} did not do its job ({out.get('status')})")
    if activation:
        out["activation_id"] = activation
    if dispatch_ref:
        out[DISPATCH_REF] = dispatch_ref
    out = fit_result(log.redact_obj(out))
    log.info("run finished", ok=out["ok"], status=out.get("status"), decision=out.get("decision"))
    return out


@dataclass(frozen=True)
class TextReply:
    """A web answer that is not JSON (Prometheus text): sent as is, with its content type."""
    text: str
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


WebFn = Callable[[Any, Mapping[str, str], Deadline], tuple[int, "dict[str, Any] | TextReply"]]


def handle_web(function: str, run_web: WebFn, run_invoke: RunFn, event: Any, context: Any = None,
               environ: Mapping[str, str] | None = None, methods: tuple[str, ...] = ("POST",)) -> dict[str, Any]:
    """A web function: HTTP calls go to run_web and get {statusCode, headers, body};
    plain invocations (doctl invoke, triggers) go to run_invoke through `handle`."""
    environ = without_unset(os.environ if environ is None else environ)
    try:
        request = from_event(event if isinstance(event, Mapping) else {}, body_limit(environ), methods)
    except WebError as exc:
        return _web_reply(exc.http_status, {"ok": False, "error": str(exc)})
    except ConfigError as exc:
        log.error("web call refused: the function is misconfigured", problems=exc.problems)
        return _web_reply(500, {"ok": False, "error": "the function is misconfigured; see its activation log"})
    if request is None:
        return handle(function, run_invoke, event, context, environ)
    t0 = time.monotonic()
    activation = getattr(context, "activation_id", None) or environ.get("__OW_ACTIVATION_ID")
    log.configure(environ.get("DRKIT_LOG_LEVEL", "info"))
    log.reset(function=function, activation_id=activation)
    deadline = Deadline.from_context(context, 25.0)
    try:
        try:
            status, body = run_web(request, environ, deadline)
        except ConfigError as exc:
            raise with_missing(exc, function, environ) from None
    except WebError as exc:
        status, body = exc.http_status, {"ok": False, "error": str(exc)}
    except ConfigError as exc:
        log.error("web call refused: the function is misconfigured", problems=exc.problems)
        status, body = 500, {"ok": False, "error": "the function is misconfigured; see its activation log"}
    except DrkitError as exc:
        status, body = 502, {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the edge
        log.error("internal error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        status, body = 500, {"ok": False, "error": "internal error; see the activation log"}
    if isinstance(body, TextReply):
        log.info("web call answered", status=status, bytes=len(body.text))
        return {"statusCode": status, "headers": {"Content-Type": body.content_type, **body.headers},
                "body": body.text}
    body = log.redact_obj({"function": function, **body, "duration_s": round(time.monotonic() - t0, 3)})
    log.info("web call answered", status=status, decision=body.get("decision"), error=body.get("error"))
    return _web_reply(status, body)


def _web_reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": body}


def fit_result(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the result under the platform's 1 MB limit by dropping detail, never the verdict."""
    if len(json.dumps(result, default=str)) <= MAX_RESULT_BYTES:
        return result
    slim = dict(result)
    for entry in slim.get("databases", []) or []:
        if isinstance(entry, dict) and isinstance(entry.get("retention"), dict):
            entry["retention"] = {k: v for k, v in entry["retention"].items() if k != "plan"}
    slim["truncated"] = True
    if len(json.dumps(slim, default=str)) <= MAX_RESULT_BYTES:
        return slim
    keep = ("ok", "function", "status", "decision", "error", "duration_s", "drkit_version", "activation_id",
            DISPATCH_REF)
    return {k: slim[k] for k in keep if k in slim} | {"truncated": True}
