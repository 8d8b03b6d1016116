"""The rebuild plan of a Supabase project, the `supabase` source's settings and redaction (pure), and the fake
Management API refusing what Supabase's API document does not name."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from drkit.configbackup.sources import parse_sources
from drkit.configbackup.supabase_source import REDACTED, redact
from drkit.core.errors import ConfigError
from drkit.supabase import plan
from drkit_dev.fakesupabase import TOKEN, FakeSupabase, contract


def saved(**over: Any) -> plan.Saved:
    base: dict[str, Any] = dict(
        project={"ref": "abcdefghijklmnopqrst", "name": "shop", "region": "eu-central-1",
                 "organization_slug": "acme"},
        organization={"id": "acme", "plan": "pro"},
        auth={"site_url": "https://app.example.com", "jwt_exp": 3600, "smtp_pass": REDACTED,
              "saml_allow_encrypted_assertions": True},
        auth_secrets=["smtp_pass"], api={"db_schema": "public", "max_rows": 1000, "jwt_secret": REDACTED},
        network={"config": {"dbAllowedCidrs": ["203.0.113.0/24"]}}, buckets=[{"name": "avatars"}],
        secret_names=["STRIPE_KEY"],
        functions=[{"slug": "hello", "version": 3, "bundle": "functions/hello.eszip", "bundle_bytes": 10,
                    "verify_jwt": True, "entrypoint_path": "file:///src/index.ts"},
                   {"slug": "old", "version": 1}],
        provider_backups={})
    return plan.Saved(**(base | over))


def test_the_plan_rebuilds_settings_and_functions_and_leaves_secrets_to_a_person() -> None:
    steps = plan.build(saved(), region="us-east-1", name="shop-dr", database="shop", files_source="files",
                       backup_id="20261208T000000Z-abcdef")
    by = {s.key: s for s in steps}
    assert [s.key for s in steps if not s.manual] == ["project", "auth", "api", "network", "function:hello"]
    assert by["project"].body == {"name": "shop-dr", "organization_slug": "acme", "region": "us-east-1", "plan": "pro"}
    assert by["auth"].body == {"site_url": "https://app.example.com", "jwt_exp": 3600}  # no secret, nothing read-only
    assert by["api"].body == {"db_schema": "public", "max_rows": 1000}
    assert by["function:hello"].params == {"slug": "hello", "name": "hello", "verify_jwt": "true",
                                           "entrypoint_path": "file:///src/index.ts"}
    assert by["function:old"].manual and "supabase functions deploy old" in by["function:old"].title
    assert "STRIPE_KEY=…" in by["secrets"].title and "smtp_pass" in by["auth-secrets"].title
    assert "restore --db shop" in by["database"].title and "--source files" in by["storage"].title


def test_provider_summary_counts_completed_backups_and_the_pitr_window() -> None:
    got = plan.provider_summary({"region": "eu-central-1", "pitr_enabled": True, "walg_enabled": True,
                                 "backups": [{"status": "COMPLETED", "inserted_at": "2026-12-01T03:00:00Z"},
                                             {"status": "FAILED", "inserted_at": "2026-12-02T03:00:00Z"},
                                             {"status": "COMPLETED", "inserted_at": "2026-12-03T03:00:00Z"}],
                                 "physical_backup_data": {"earliest_physical_backup_date_unix": 0}})
    assert got["completed"] == 2 and got["failed"] == 1 and got["newest"] == "2026-12-03T03:00:00Z"
    assert got["pitr_earliest"] == "1970-01-01T00:00:00+00:00" and got["pitr_latest"] is None


def test_redaction_keeps_settings_and_names_every_secret() -> None:
    out, held = redact({"site_url": "https://x", "smtp_pass": "pw", "external_github_secret": "s",
                        "hook_send_sms_secrets": "v1,whsec", "sms_twilio_auth_token": "t", "external_x_secret": "",
                        "sms_vonage_api_key": "k", "jwt_exp": 3600})
    assert held == ["external_github_secret", "hook_send_sms_secrets", "sms_twilio_auth_token", "sms_vonage_api_key",
                    "smtp_pass"]
    assert out["site_url"] == "https://x" and out["external_x_secret"] == "" and out["smtp_pass"] == REDACTED


def test_a_supabase_source_is_checked_up_front() -> None:
    env = {"DRKIT_SUPABASE_TOKEN": "sbp_x"}
    (src,) = parse_sources(json.dumps([{"type": "supabase", "name": "sb", "project_ref": "abcdefghijklmnopqrst"}]),
                           env)
    assert src.opt("api_url") == "https://api.supabase.com" and src.opt("functions") is True
    with pytest.raises(ConfigError) as exc:
        parse_sources(json.dumps([{"type": "supabase", "name": "sb", "project_ref": "nope", "functions": "yes",
                                   "api_url": "http://api.example.com"}]), {})
    text = str(exc.value.problems)
    assert "20-character reference" in text and "functions must be true" in text and "https://" in text
    assert "DRKIT_SUPABASE_TOKEN is not set" in text


def test_the_fake_refuses_what_the_api_document_does_not_name() -> None:
    ops = contract()
    assert "GET /v1/projects/{ref}/database/backups" in ops and "POST /v1/projects/{ref}/functions" in ops
    with FakeSupabase() as fake:
        fake.add_project("abcdefghijklmnopqrst", "shop")
        h = {"Authorization": f"Bearer {TOKEN}"}
        base = f"{fake.url}/v1/projects/abcdefghijklmnopqrst"
        assert requests.patch(f"{base}/postgrest", json={"max_rows": 5, "max_rowz": 1}, headers=h,
                              timeout=5).status_code == 422
        assert requests.get(f"{base}/secrets?page=2", headers=h, timeout=5).status_code == 422
        assert requests.delete(f"{base}/secrets", headers=h, timeout=5).status_code == 501  # not served at all
        assert requests.post(f"{fake.url}/v1/projects", json={"name": "x"}, headers=h, timeout=5).status_code == 422
        assert requests.get(f"{base}/secrets", timeout=5).status_code == 401
        assert len(fake.violations) == 3
