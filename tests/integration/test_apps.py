"""`drkit apps stop|start|redeploy` against the fake DO API (every request checked against DigitalOcean's spec)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import keys
from drkit_dev.fakedo import FakeDO
from support.clirun import cli_with_env


@pytest.fixture
def fake() -> Iterator[FakeDO]:
    f = FakeDO().start()
    app_id = str(uuid.uuid4())
    f.inventory["apps"] = [{"id": app_id, "spec": {"name": "odoo", "region": "fra", "services": [
        {"name": "web", "image": {"registry_type": "DOCR", "repository": "odoo", "tag": "17"}}]},
        "region": {"slug": "fra"}, "active_deployment": {"id": "dep-1", "phase": "ACTIVE"}}]
    f.apps[app_id] = []
    yield f
    f.stop()
    assert f.violations == [], f.violations


@pytest.fixture
def env(make_env: Any, fake: FakeDO) -> dict[str, str]:
    e: dict[str, str] = make_env({})
    e.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file})
    return e


def test_stop_start_and_redeploy_around_a_restore(env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app = fake.inventory["apps"][0]
    code, out = cli_with_env(env, capsys, "apps", "stop", "odoo", "--dry-run")
    assert code == 0 and "dry run: odoo would be stopped" in out and "maintenance" not in app["spec"]
    code, out = cli_with_env(env, capsys, "apps", "stop", "odoo", "--offline-page-url",
                             "https://status.example.com/")
    assert code == 0 and "odoo stopped (maintenance mode)" in out, out
    assert app["spec"]["maintenance"] == {"enabled": True, "offline_page_url": "https://status.example.com/"}
    assert app["spec"]["services"][0]["image"]["tag"] == "17"  # the rest of the spec as it was
    code, out = cli_with_env(env, capsys, "apps", "stop", "odoo")
    assert code == 0 and "already stopped" in out  # repeating changes nothing
    code, out = cli_with_env(env, capsys, "apps", "start", "odoo")
    assert code == 0 and "odoo started" in out and app["spec"]["maintenance"]["enabled"] is False
    code, out = cli_with_env(env, capsys, "apps", "redeploy", "odoo")
    assert code == 0 and "deployment dep-" in out and len(fake.apps[app["id"]]) == 1
    actions = sorted(k.split("Z-cli-", 1)[1].rsplit("-", 1)[0] for k in keys(s3_client, bucket, "audit/"))
    assert actions == ["app.redeployed", "app.started", "app.stopped"]
    code, out = cli_with_env(env, capsys, "apps", "stop", "odo")
    assert code == 2 and "unknown app 'odo' (did you mean 'odoo'?)" in out
