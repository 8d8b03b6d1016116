"""Configuration, call parameters, the runtime adapter and redaction (no servers)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, PgError
from drkit.core.secret import Secret
from drkit.platform.config import Config
from drkit.platform.runtime import Params, fit_result, handle, params_from_event
from drkit.policy import layout
from drkit.storage.transfer import MAX_PARTS, part_size_for
from drkit_dev.keys import signing_env

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
GOOD = {
    "DRKIT_SPACES_BUCKET": "acme-dr",
    "DRKIT_SPACES_REGION": "fra1",
    "DRKIT_SPACES_KEY": "DO00EXAMPLEKEY",
    "DRKIT_SPACES_SECRET": "very-Secret-spaces-key",
    "DRKIT_AGE_RECIPIENTS": RECIPIENT,
    "DRKIT_DATABASES": "odoo,superset",
    "DRKIT_DB_ODOO_URL": "postgresql://postgres:odoo-Pass-1@db.abc.supabase.co:5432/postgres?sslmode=require",
    "DRKIT_DB_SUPERSET_URL": "host=10.0.0.5 user=superset password=ss-Pass-2 dbname=superset",
    **signing_env(),
}


def test_good_config() -> None:
    cfg = Config.from_env(GOOD)
    assert cfg.spaces.endpoint_url == "https://fra1.digitaloceanspaces.com"
    odoo = cfg.databases["odoo"]
    assert odoo.params["host"] == "db.abc.supabase.co" and odoo.params["sslmode"] == "require"
    assert "password" not in odoo.params and odoo.password is not None and odoo.password.reveal() == "odoo-Pass-1"
    assert cfg.databases["superset"].params["dbname"] == "superset"
    assert str(odoo.retention) == "keep_within_hourly=7d keep_within_daily=30d"
    text = repr(cfg)
    for secret in ("odoo-Pass-1", "ss-Pass-2", "very-Secret-spaces-key", "DO00EXAMPLEKEY"):
        assert secret not in text


def test_every_problem_is_reported_at_once() -> None:
    env = dict(GOOD)
    del env["DRKIT_SPACES_BUCKET"]
    env.update({
        "DRKIT_AGE_RECIPIENTS": "AGE-SECRET-KEY-1QQQQ",
        "DRKIT_DB_ODOO_URL": "postgresql:///nohost",
        "DRKIT_DB_SUPERSET_URL": "",
        "DRKIT_DB_ODOO_PG_DUMP_ARGS": "--file=/tmp/x --no-owner",
        "DRKIT_DB_ODOO_RETENTION": "keep_daily=0",
        "DRKIT_PART_SIZE_MB": "2",
    })
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    text = " | ".join(info.value.problems)
    for expected in ("DRKIT_SPACES_BUCKET is not set", "private age identity", "database 'odoo': URL has no host",
                     "DRKIT_DB_SUPERSET_URL is not set", "'--file=/tmp/x' is not allowed",
                     "keep_daily must be a positive", "DRKIT_PART_SIZE_MB must be from 5"):
        assert expected in text, (expected, text)
    assert "'--no-owner' is not allowed" not in text  # allowed options are not reported


@pytest.mark.parametrize("url, message", [
    ("postgresql://db.example.com/x", "URL has no user"),
    ("postgresql://u:p@h:notaport/x", "port 'notaport' is not a number"),
    ("not a url at all", "cannot be parsed"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Config.from_env({**GOOD, "DRKIT_DB_ODOO_URL": url})
    assert "p@h" not in str(info.value)


def test_bad_database_names_and_duplicates() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**GOOD, "DRKIT_DATABASES": "Odoo,odoo,odoo"})
    text = str(info.value)
    assert "'Odoo'" in text and "listed twice" in text


def test_secret_never_prints() -> None:
    s = Secret("hunter2-Long")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + repr([s])
    assert s.reveal() == "hunter2-Long"


def test_redaction_patterns() -> None:
    text = ("postgresql://postgres:pa55@db:5432/x password=abc123 AGE-SECRET-KEY-1ABCDEFGHIJKLMNOPQRSTUVWXYZ "
            "sslpassword='q w'")
    red = log.redact(text)
    assert "pa55" not in red and "abc123" not in red and "ABCDEFGH" not in red and "q w" not in red
    assert "postgresql://postgres:***@db:5432/x" in red
    log.register_secret("registered-Secret-1")
    assert log.redact_obj({"k": ["registered-Secret-1 here"]}) == {"k": ["*** here"]}


def test_log_lines_are_json_with_context_and_redacted() -> None:
    buf = io.StringIO()
    log.configure("info", buf)
    log.reset(function="db-backup", activation_id="a1")
    log.bind(database="odoo")
    log.info("hello", url="postgresql://u:topsecret@h/db")
    log.unbind("database")
    log.debug("not shown")
    log.configure("info", None)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 1
    assert list(lines[0])[:5] == ["ts", "level", "function", "activation_id", "database"]
    assert lines[0]["url"] == "postgresql://u:***@h/db"


def test_params_are_strict() -> None:
    p = Params({"dry_run": "TRUE", "prune": "no", "database": "odoo"}, known=("dry_run", "prune", "database"))
    assert p.boolean("dry_run", False) is True and p.boolean("prune", True) is False
    assert p.string("database", "all") == "odoo"
    p.finish()
    bad = Params({"dry_run": "maybe", "databse": "x"}, known=("dry_run", "database"))
    bad.boolean("dry_run", False)
    with pytest.raises(ConfigError) as info:
        bad.finish()
    assert "unknown parameter 'databse'" in str(info.value) and "true or false" in str(info.value)


def test_params_from_event_drops_transport_keys() -> None:
    assert params_from_event({"__ow_method": "post", "http": {}, "database": "x"}) == {"database": "x"}
    assert params_from_event(None) == {}
    with pytest.raises(ConfigError):
        params_from_event(["not", "a", "dict"])


def _ctx(ms: int) -> Any:
    class C:
        activation_id = "act-123"

        def get_remaining_time_in_millis(self) -> int:
            return ms
    return C()


def test_handle_maps_errors_at_the_edge() -> None:
    def ok(params: Any, env: Any, deadline: Deadline) -> dict[str, Any]:
        assert 29 < deadline.remaining() <= 30
        return {"ok": True, "status": "ok", "decision": "fine", "secret": "postgresql://a:b-Secret@h/d"}

    r = handle("example", ok, {}, _ctx(30_000), {})
    assert r["ok"] and r["function"] == "example" and r["activation_id"] == "act-123"
    assert r["secret"] == "postgresql://a:***@h/d"

    def bad_config(*_: Any) -> dict[str, Any]:
        raise ConfigError(["A is not set", "B is wrong"])

    r = handle("example", bad_config, {}, None, {})
    assert r == r | {"ok": False, "status": "invalid_config", "problems": ["A is not set", "B is wrong"]}

    def pg_fail(*_: Any) -> dict[str, Any]:
        raise PgError("pg_dump exited with status 1")

    assert handle("example", pg_fail, {}, None, {})["status"] == "failed"

    def crash(*_: Any) -> dict[str, Any]:
        raise KeyError("boom")

    r = handle("example", crash, {}, None, {})
    assert r["status"] == "error" and "KeyError" in r["error"] and not r["ok"]

    def did_not_do_its_job(*_: Any) -> dict[str, Any]:
        return {"ok": False, "status": "partial", "decision": "backed up a; b failed: no route"}

    r = handle("example", did_not_do_its_job, {}, None, {})
    assert r["error"] == "backed up a; b failed: no route"  # DigitalOcean lists the activation as failed


def test_handle_names_every_missing_required_variable_at_once() -> None:
    def stops_at_the_first(params: Any, env: Any, deadline: Deadline) -> dict[str, Any]:
        assert "DRKIT_LOG_LEVEL" not in env and "DRKIT_STAGING_URL" not in env  # `unset` means absent
        raise ConfigError(["DRKIT_SPACES_KEY is not set (a Spaces access key id)", "DRKIT_DB_APP_CHECKS: bad JSON"])

    r = handle("restore-verify", stops_at_the_first, {}, None,
               {"DRKIT_SPACES_BUCKET": "b", "DRKIT_LOG_LEVEL": "unset", "DRKIT_STAGING_URL": "unset"})
    assert r["status"] == "invalid_config" and "DRKIT_DB_APP_CHECKS: bad JSON" in r["error"]
    assert r["error"].count("DRKIT_SPACES_KEY") == 1  # said once
    for name in ("DRKIT_SPACES_KEY", "DRKIT_SPACES_SECRET", "DRKIT_AGE_IDENTITY", "DRKIT_STAGING_URL",
                 "DRKIT_DATABASES", "DRKIT_SPACES_REGION or DRKIT_SPACES_ENDPOINT"):
        assert name in r["error"]
    assert "DRKIT_SPACES_BUCKET" not in r["error"] and "DRKIT_AGE_RECIPIENTS" not in r["error"]


def test_fit_result_keeps_the_verdict() -> None:
    huge = {"ok": True, "function": "f", "status": "ok", "decision": "d",
            "databases": [{"retention": {"plan": ["x" * 1000] * 2000, "summary": "s"}}]}
    slim = fit_result(huge)
    assert slim["truncated"] and slim["databases"][0]["retention"] == {"summary": "s"}
    enormous = {"ok": True, "function": "f", "status": "ok", "decision": "d", "blob": "y" * 2_000_000}
    assert fit_result(enormous) == {"ok": True, "function": "f", "status": "ok", "decision": "d", "truncated": True}


def test_layout_round_trip() -> None:
    import datetime as dt

    bid = layout.new_id(dt.datetime(2026, 11, 26, 2, 18, 30, tzinfo=dt.UTC))
    assert bid.startswith("20261126T021830Z-")
    key = layout.data_key("odoo", bid)
    assert key == f"db/odoo/2026/11/26/{bid}.dump.zst.age"
    assert layout.parse_key(key) == ("odoo", bid, layout.DATA_SUFFIX)
    assert layout.parse_key(layout.manifest_key("odoo", bid)) == ("odoo", bid, layout.MANIFEST_SUFFIX)
    assert layout.parse_key("db/odoo/2026/11/26/garbage.txt") is None
    assert layout.parse_key("state/db/odoo.json") is None
    with pytest.raises(ValueError):
        layout.id_time("yesterday")


def test_part_sizes_reach_hundreds_of_gigabytes_within_the_part_limit() -> None:
    base = 8 * 1024 * 1024
    assert part_size_for(1, base) == base and part_size_for(2000, base) == base
    assert part_size_for(2001, base) == 2 * base
    total = sum(part_size_for(n, base) for n in range(1, MAX_PARTS + 1))
    assert total > 450 * 1024**3
