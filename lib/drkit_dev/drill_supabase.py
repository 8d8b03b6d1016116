"""The drill's Supabase step: a project shaped like today's platform, backed up as `postgres`, restored into a new
project (only the users' rows from the platform's schemas, the copy disarmed), every user row compared; then the
project's settings through a stand-in Management API and the plan that rebuilds it in another region."""

from __future__ import annotations

import json
import tempfile
import time
from typing import Any

from drkit.cli import main
from drkit.crypto import encryption
from drkit.functions import config_backup, db_backup
from drkit.platform.runtime import handle
from drkit.postgres import operator_restore, platform
from drkit_dev.fakesupabase import TOKEN, FakeSupabase
from drkit_dev.keys import store_of
from drkit_dev.supabase import SupabaseServer

REF = "drilldrilldrilldrill"
PREFIX = "supabase-drill"  # its own corner of the bucket: the drill's report is about the drill's database


def _rows(server: SupabaseServer, table: str) -> tuple[int, str]:
    with server.connect() as conn:
        n, digest = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                                 f"FROM {table} x").fetchone()
    return int(n), str(digest)


def supabase_step(drill: Any, env: dict[str, str], identity: str) -> None:
    t = time.monotonic()
    source = SupabaseServer().start().new_project().seed_app()
    target = SupabaseServer().start().new_project()
    try:
        sb_env = dict(env, DRKIT_DATABASES="shop", DRKIT_DB_SHOP_URL=source.url(), DRKIT_PREFIX=PREFIX,
                      DRKIT_DB_SHOP_COUNT_TABLES="public.todos,public.profiles,billing.invoices")
        result = handle("db-backup", db_backup.run, {}, None, sb_env)
        if not result.get("ok"):
            drill.step("supabase restore", False, f"backup: {result.get('decision')}", time.monotonic() - t)
            return
        store = store_of(sb_env, "operator")
        p = operator_restore.make_plan(store, "shop", "latest", None, target.url(), download_to=None, jobs=1,
                                       force=False, no_privileges=False)
        done = operator_restore.execute(store, p, [encryption.parse_identity(identity)])
        tables = sorted({"public.todos", "public.profiles", "billing.invoices", *platform.USER_DATA})
        same = [x for x in tables if _rows(source, x) == _rows(target, x)]
        rows = sum(_rows(target, x)[0] for x in tables)
        skipped = {w: s["count"] for w, s in (done.get("skipped") or {}).items() if w.startswith("platform data")}
        checks = all(c["passed"] for c in done["checks"])
        detail = (f"a project shaped like today's platform (auth {len(platform.USER_DATA) - 2} user tables, "
                  f"vector buckets, pg_cron, Wrappers) into a new one: {len(same)}/{len(tables)} user tables "
                  f"identical ({rows} rows), {sum(skipped.values())} platform entries skipped by name, "
                  f"{done['disarmed_sentence']}")
        drill.facts["supabase restore"] = detail
        drill.step("supabase restore", len(same) == len(tables) and checks, detail, time.monotonic() - t)
    except Exception as exc:  # noqa: BLE001 - reported as a failed step
        drill.step("supabase restore", False, f"{type(exc).__name__}: {exc}", time.monotonic() - t)
        return
    finally:
        source.stop()
        target.stop()
    t = time.monotonic()
    with FakeSupabase() as api:
        api.add_project(REF, "shop-prod", "eu-central-1")
        cfg_env = dict(env, DRKIT_PREFIX=PREFIX, DRKIT_CONFIG_SOURCES=json.dumps([{"type": "supabase", "name": "supabase",
                                                              "project_ref": REF, "api_url": api.url}]),
                       DRKIT_SUPABASE_TOKEN=TOKEN)
        cfg_env.pop("DRKIT_DATABASES", None)
        time.sleep(max(0.0, 1.05 - time.time() % 1))
        result = handle("config-backup", config_backup.run, {}, None, cfg_env)
        unit: dict[str, Any] = next((s for s in result.get("sources") or [] if s.get("name") == "supabase"), {})
        ok = unit.get("status") == "ok"
        d = unit.get("details") or {}
        rebuilt = ""
        if ok:  # the operator's command, as the runbook gives it: plan, then apply against the stand-in API
            with tempfile.TemporaryDirectory(prefix="drkit-drill-sb-") as tmp:
                args = main.build_parser().parse_args([
                    "supabase", "recreate", "--region", "us-east-1", "--name", "shop-dr", "--db", "shop",
                    "--apply", "--db-pass-file", f"{tmp}/db-pass", "--api-url", api.url])
                ok = args.fn(args, cfg_env) == 0
            new = next((p for p in api.projects.values() if p.name == "shop-dr"), None)
            ok = ok and new is not None and "hello-world" in new.functions and not api.violations
            rebuilt = (f"; drkit supabase recreate --apply rebuilt it as {new.ref} in {new.region} (Auth and API "
                       f"settings, network restrictions, {len(new.functions)} Edge Function)" if ok and new else "")
        detail = (f"project {REF}: plan {d.get('plan')}, {d.get('functions')} Edge Function bundle(s), "
                  f"{d.get('auth_secrets')} Auth secrets redacted, {d.get('secrets')} secret names, Supabase's own "
                  f"{(d.get('provider_backups') or {}).get('completed')} backups recorded{rebuilt}" if ok else
                  f"{unit.get('error') or result.get('decision')} {api.violations[:3]}")
    drill.facts["supabase project"] = detail
    drill.step("supabase project", ok, detail, time.monotonic() - t)
