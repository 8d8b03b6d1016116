"""snapshot-rotate against the spec-checked fake DO API and the real S3 server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import keys
from drkit.functions import snapshot_rotate
from drkit.platform.runtime import handle
from drkit_dev.fakedo import FakeDO

NOW = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)  # Thursday; the weekly slot is Sunday 2026-11-22 03:00
POLICIES = json.dumps([{"tag": "dr:snapshot", "resources": ["droplet", "volume"], "schedule": "0 3 * * 0",
                        "retention": "keep_last=4"}])


@pytest.fixture
def fake() -> Iterator[FakeDO]:
    f = FakeDO().start()
    yield f
    f.stop()
    assert f.violations == [], f.violations


@pytest.fixture
def env(make_env: Any, fake: FakeDO) -> dict[str, str]:
    e = make_env({})
    e.pop("DRKIT_DATABASES")
    e.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file,
              "DRKIT_SNAPSHOT_POLICIES": POLICIES})
    return e


def rotate(env: dict[str, str], now: dt.datetime = NOW, **params: Any) -> dict[str, Any]:
    return handle("snapshot-rotate", lambda p, e, d: snapshot_rotate.run(p, e, d, clock=lambda: now), params, None, env)


def weekly_history(fake: FakeDO, resource: dict[str, Any], rtype: str, weeks: int) -> list[str]:
    names = []
    for w in range(weeks, 0, -1):
        slot = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC) - dt.timedelta(weeks=w)
        name = snapshot_rotate.snapshot_name(resource["name"], slot)
        fake.add_snapshot(name, resource["id"], rtype, slot + dt.timedelta(minutes=5))
        names.append(name)
    return names


def names(fake: FakeDO, resource: dict[str, Any]) -> set[str]:
    return {s["name"] for s in fake.snapshots if s["resource_id"] == str(resource["id"])}


def test_rotation_creates_this_slot_and_keeps_the_last_four_per_resource(env: dict[str, str], fake: FakeDO,
                                                                         s3_client: Any, bucket: str) -> None:
    erp = fake.add_droplet("erp", ["dr:snapshot"])
    bi = fake.add_droplet("bi", ["dr:snapshot"])
    other = fake.add_droplet("untagged", [])
    data = fake.add_volume("erp-data", ["dr:snapshot"])
    # interleaved lists (the old script's bug): six weeks of erp, two of bi
    erp_old = weekly_history(fake, erp, "droplet", 6)
    bi_old = weekly_history(fake, bi, "droplet", 2)
    fake.add_snapshot("erp-manual-before-upgrade", erp["id"], "droplet", NOW - dt.timedelta(days=90))
    fake.add_snapshot("drkit-erp-20200101T0300Z", bi["id"], "droplet", NOW - dt.timedelta(days=900))  # not erp's
    r = rotate(env)
    assert r["ok"], r
    assert sorted(r["created"]) == ["droplet bi: drkit-bi-20261122T0300Z", "droplet erp: drkit-erp-20261122T0300Z",
                                    "volume erp-data: drkit-erp-data-20261122T0300Z"]
    assert len(r["pending"]) == 2  # droplet snapshots run as actions; volumes complete at once
    assert r["deleted"] == []  # never prune while the newest snapshot is not complete
    assert not names(fake, other)
    r = rotate(env, NOW + dt.timedelta(minutes=10))  # the actions completed meanwhile
    assert [e["event"] for e in r["actions"]] == ["completed", "completed"] and r["pending"] == []
    assert r["created"] == [] and len(r["skipped"]) == 3  # same slot: nothing new
    left = names(fake, erp)
    assert left == set(erp_old[-3:]) | {"drkit-erp-20261122T0300Z", "erp-manual-before-upgrade"}
    assert names(fake, bi) == set(bi_old) | {"drkit-bi-20261122T0300Z", "drkit-erp-20200101T0300Z"}
    assert names(fake, data) == {"drkit-erp-data-20261122T0300Z"}
    events = [k for k in keys(s3_client, bucket, "audit/") if "snapshot.deleted" in k]
    assert len(events) == 3
    assert len([k for k in keys(s3_client, bucket, "audit/") if "snapshot.completed" in k]) == 2


def test_dry_run_and_bad_config_change_nothing(env: dict[str, str], fake: FakeDO) -> None:
    erp = fake.add_droplet("erp", ["dr:snapshot"])
    weekly_history(fake, erp, "droplet", 6)
    r = rotate(env, dry_run="true")
    assert r["status"] == "dry_run" and r["created"] == ["droplet erp: drkit-erp-20261122T0300Z"]
    assert len(r["deleted"]) == 2 and "would delete 2" in r["decision"]
    assert fake.writes() == []
    reads = len(fake.requests)
    for bad, message in ((json.dumps([{"tag": "dr:snapshot", "retention": "keep_last=0"}]), "positive"),
                         (json.dumps([{"tag": "dr:snapshot", "schedule": "weekly"}]), "5-field cron"),
                         (json.dumps([{"tag": "bad tag!"}]), "DigitalOcean tag"),
                         ("[]", "non-empty")):
        r = rotate(dict(env, DRKIT_SNAPSHOT_POLICIES=bad))
        assert r["status"] == "invalid_config" and message in json.dumps(r["problems"]), r
    r = rotate(env, tag="nope")
    assert r["status"] == "invalid_config" and "unknown tag policy" in r["error"]
    assert len(fake.requests) == reads  # refused before any API call


def test_errored_and_stuck_actions_alert(env: dict[str, str], fake: FakeDO) -> None:
    fake.add_droplet("erp", ["dr:snapshot"])
    fake.action_steps = 10_000  # never completes by itself
    r = rotate(env)
    assert len(r["pending"]) == 1
    later = rotate(env, NOW + dt.timedelta(hours=7))
    assert not later["ok"] and later["actions"][0]["event"] == "stuck" and later["created"] == []
    action = next(iter(fake.actions.values()))
    action["status"] = "errored"
    r = rotate(env, NOW + dt.timedelta(hours=8))
    assert not r["ok"] and r["actions"][0]["event"] == "errored" and "FAILED" in r["actions"][0]["detail"]


def test_pagination_beyond_one_page_and_429(env: dict[str, str], fake: FakeDO) -> None:
    erp = fake.add_droplet("erp", ["dr:snapshot"])
    for i in range(230):  # a busy account: other resources' snapshots
        fake.add_snapshot(f"other-{i}", 99, "droplet", NOW - dt.timedelta(days=1))
    weekly_history(fake, erp, "droplet", 6)
    fake.fail("GET", r"/v2/snapshots$", 429, times=1, retry_after=1)
    r = rotate(env)
    assert r["ok"] and len([x for x in fake.requests if x[1] == "/v2/snapshots"]) >= 3
    fake.action_steps = 1
    r = rotate(env, NOW + dt.timedelta(minutes=5))
    assert len(r["deleted"]) == 3 and len([s for s in fake.snapshots if s["name"].startswith("other-")]) == 230


def test_5xx_on_post_is_not_retried_and_the_next_run_adopts_or_retries(env: dict[str, str], fake: FakeDO) -> None:
    fake.add_droplet("erp", ["dr:snapshot"])
    fake.fail("POST", r"/actions$", 500, times=1)
    r = rotate(env)
    assert not r["ok"] and "not started" in r["errors"][0]
    assert len([x for x in fake.requests if x[0] == "POST"]) == 1  # not re-sent blindly
    r = rotate(env, NOW + dt.timedelta(minutes=1))  # the claim was released: the next run starts it
    assert r["ok"] and r["created"] == ["droplet erp: drkit-erp-20261122T0300Z"]
    # an action that is already running for the slot is adopted, not duplicated
    fake.add_droplet("bi", ["dr:snapshot"])
    bi = [d for d in fake.droplet_objs.values() if d["name"] == "bi"][0]
    fake.action_steps = 10_000
    fake.actions[1] = {"id": 1, "status": "in-progress", "type": "snapshot", "resource_id": bi["id"],
                       "resource_type": "droplet", "started_at": (NOW - dt.timedelta(hours=1)).isoformat(),
                       "_name": "drkit-bi-20261122T0300Z"}
    r = rotate(env, NOW + dt.timedelta(minutes=2))
    assert any("already running" in s for s in r["skipped"])
    assert len([x for x in fake.requests if x[0] == "POST"]) == 2


def test_rebuild_from_the_newest_snapshot(env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    erp = fake.add_droplet("erp", ["dr:snapshot", "app:odoo"], region="ams3", size="s-4vcpu-8gb")
    history = weekly_history(fake, erp, "droplet", 3)
    fake.add_snapshot("erp-manual", erp["id"], "droplet", NOW)  # newer, but not drkit's: not used
    fake.reserved_ips["203.0.113.50"] = {"ip": "203.0.113.50", "droplet": {"id": erp["id"]}, "region": {"slug": "ams3"}}
    dry = rotate(env, action="rebuild", droplet="erp", dry_run="true")
    assert dry["status"] == "dry_run" and dry["plan"]["snapshot"] == history[-1] and fake.writes() == []
    r = rotate(env, action="rebuild", droplet="erp", reserved_ip="203.0.113.50")
    assert r["ok"] and r["status"] == "applied", r
    new = fake.droplet_objs[r["droplet_id"]]
    assert (new["region"], new["size_slug"], new["tags"][:2]) == ({"slug": "ams3"}, "s-4vcpu-8gb", ["dr:snapshot", "app:odoo"])
    assert new["tags"][2].startswith("drkit-rebuild-")  # the rebuild's id: a rerun finds this droplet
    assert str(new["image"]["id"]) == next(s["id"] for s in fake.snapshots if s["name"] == history[-1])
    assert fake.reserved_ips["203.0.113.50"]["droplet"] == {"id": new["id"]}
    assert any("droplet.rebuilt" in k for k in keys(s3_client, bucket, "audit/"))
    # the original is gone: region and size must be given
    del fake.droplet_objs[erp["id"]]
    r = rotate(env, action="rebuild", droplet="erp", dry_run="true")
    assert r["status"] == "invalid_config" and "give region and size" in r["error"]
    r = rotate(env, action="rebuild", droplet="erp", region="fra1", size="s-2vcpu-4gb", wait="false")
    assert r["ok"] and r["status"] in ("pending", "applied")
    assert rotate(env, action="rebuild")["status"] == "invalid_config"


def test_cli_droplet_rebuild(env: dict[str, str], fake: FakeDO, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from drkit.cli import main

    erp = fake.add_droplet("erp", ["dr:snapshot"])
    weekly_history(fake, erp, "droplet", 1)
    env_file = tmp_path / "e.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    code = main.main(["--env-file", str(env_file), "droplet", "rebuild", "erp", "--dry-run"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "would create erp-rebuilt-" in out and fake.writes() == []
    # and for real: a rebuild that was applied (or is pending) exits 0, as every run that did its job
    code = main.main(["--env-file", str(env_file), "droplet", "rebuild", "erp", "--no-wait"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    assert any(w[0] == "POST" and w[1] == "/v2/droplets" for w in fake.writes())


def test_a_planted_slot_claim_stops_no_snapshot(env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    erp = fake.add_droplet("erp", ["dr:snapshot"])
    from drkit.digitalocean.snapshot_policy import parse_policies

    slot = f"{parse_policies(POLICIES)[0].slot(NOW):%Y%m%dT%H%MZ}"  # the policy's slot of this run
    for rtype in ("droplet", "volume"):
        s3_client.put_object(Bucket=bucket, Key=f"state/snapshots/slots/{rtype}-{erp['id']}-{slot}.json",
                             Body=b'{"name": "x"}')
    r = rotate(env)
    assert len(r["created"]) == 1 and "not signed by snapshot-rotate" in " ".join(r["errors"]), r
    assert not r["ok"]  # the forged claim is told, once, as a problem of this run
    assert any("snapshot.claim.forged" in k for k in keys(s3_client, bucket, "audit/"))


def test_a_rebuild_finishes_the_job_once_and_warns_of_an_old_snapshot(env: dict[str, str], fake: FakeDO,
                                                                      s3_client: Any, bucket: str) -> None:
    """Scenario 3 as the plan's walk-through met it: a reserved-IP failure after the droplet was created, then a
    rerun, which must continue with that droplet, move the IP and the DNS records that named the old one."""
    erp = fake.add_droplet("erp", ["dr:snapshot"], region="ams3")
    old_ip = erp["networks"]["v4"][0]["ip_address"]
    weekly_history(fake, erp, "droplet", 3)  # the newest is 4 days old at NOW: within a weekly policy
    fake.add_domain("example.com")
    fake.add_record("example.com", "A", "erp", old_ip, 300)
    fake.add_record("example.com", "A", "www", old_ip, 300)
    fake.add_record("example.com", "A", "mail", "198.51.100.7", 300)  # another host: untouched
    fake.reserved_ips["203.0.113.50"] = {"ip": "203.0.113.50", "droplet": {"id": erp["id"]}, "region": {"slug": "ams3"}}
    fake.fail("POST", r"/v2/reserved_ips/.*/actions", 500)  # once: a POST is never retried blindly
    first = rotate(env, action="rebuild", droplet="erp", reserved_ip="203.0.113.50", domain="example.com")
    assert not first["ok"] and "step 'assign reserved IP 203.0.113.50' failed" in first["error"], first
    made = [d for d in fake.droplet_objs.values() if d["name"].startswith("erp-rebuilt-")]
    assert len(made) == 1 and f"droplet {made[0]['name']} (id {made[0]['id']}" in first["error"]
    assert "run the same command again to finish" in first["error"]

    again = rotate(env, action="rebuild", droplet="erp", reserved_ip="203.0.113.50", domain="example.com")
    assert again["ok"] and again["status"] == "applied" and again["reused"], again
    assert [d["name"] for d in fake.droplet_objs.values()].count(made[0]["name"]) == 1  # never a second droplet
    new_ip = made[0]["networks"]["v4"][0]["ip_address"]
    assert again["ip"] == new_ip and f"IP {new_ip}" in again["decision"]
    assert fake.reserved_ips["203.0.113.50"]["droplet"] == {"id": made[0]["id"]}
    by_name = {r["name"]: r["data"] for r in fake.records["example.com"] if r["type"] == "A"}
    assert by_name == {"erp": new_ip, "www": new_ip, "mail": "198.51.100.7"}
    assert "DNS: erp.example.com, www.example.com now" in again["decision"]
    assert sum("dns.record.updated" in k for k in keys(s3_client, bucket, "audit/")) == 2

    late = NOW + dt.timedelta(days=20)  # no snapshot for three weeks: the rebuild says what it loses
    dry = rotate(env, now=late, action="rebuild", droplet="erp", dry_run="true")
    assert "WARNING: snapshot drkit-erp-" in dry["decision"] and "older than the policy allows (14.0 days)" in dry[
        "decision"]
    pick = rotate(env, action="rebuild", droplet="erp", dry_run="true", snapshot="999999")
    assert pick["status"] == "invalid_config" and "no droplet snapshot with id 999999" in pick["error"]


def test_the_newest_snapshot_is_copied_to_the_dr_region_once_and_its_age_is_judged(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    """Snapshots live in their region: for a regional outage, each policy's newest droplet snapshot is copied to
    its dr_region; health-probe alerts when the newest snapshot, here or there, is older than the policy allows."""
    from drkit.health.protection import snapshot_protection
    from drkit_dev.keys import store_of

    env = dict(env, DRKIT_SNAPSHOT_POLICIES=json.dumps([{"tag": "dr:snapshot", "resources": ["droplet"],
                                                          "schedule": "0 3 * * 0", "retention": "keep_last=4",
                                                          "dr_region": "nyc3"}]))
    fake.transfer_steps = 3  # a transfer takes a while
    erp = fake.add_droplet("erp", ["dr:snapshot"])
    history = weekly_history(fake, erp, "droplet", 2)
    this_slot = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)  # taken already: the runs below take no new one
    history.append(snapshot_rotate.snapshot_name("erp", this_slot))
    fake.add_snapshot(history[-1], erp["id"], "droplet", this_slot + dt.timedelta(minutes=5))
    first = rotate(env)
    assert first["ok"] and first["transfers"] == [f"{history[-1]} -> nyc3: started"], first
    assert "DR-region copies" in first["decision"]
    store = store_of(env, "health-probe")

    def judged(now: dt.datetime) -> dict[str, tuple[bool, str]]:
        return {r.name: (r.ok, r.detail) for r in snapshot_protection(store, now, {})}

    now = judged(NOW + dt.timedelta(hours=1))
    assert now["snapshot:droplet erp"] == (True, f"newest snapshot {history[-1]} is 4.1 d old")  # within 14 days
    assert now["snapshot-dr:droplet erp"] == (False, "no copy in nyc3: nothing to rebuild from")
    second = rotate(env, now=NOW + dt.timedelta(hours=1))
    assert second["transfers"] == [f"{history[-1]} -> nyc3: under way"]  # never started twice
    # it finishes while the next run lists the snapshots: seen as done, still not started again
    assert rotate(env, now=NOW + dt.timedelta(hours=2))["transfers"] == [f"{history[-1]} -> nyc3: done"]
    third = rotate(env, now=NOW + dt.timedelta(hours=2, minutes=30))
    assert third["transfers"] == [] and "nyc3" in next(s for s in fake.snapshots if s["name"] == history[-1])["regions"]
    assert judged(NOW + dt.timedelta(hours=3))["snapshot-dr:droplet erp"] == (
        True, "newest copy in nyc3 is 4.2 d old")
    late = judged(NOW + dt.timedelta(days=12))  # no snapshot since: over two weekly periods here, not yet there
    assert late["snapshot:droplet erp"] == (False, f"newest snapshot {history[-1]} is 16.0 d old, older than its "
                                                    "policy allows (14.0 d)")
    assert late["snapshot-dr:droplet erp"][0]  # a copy may lag one period more
    assert not judged(NOW + dt.timedelta(days=18))["snapshot-dr:droplet erp"][0]
    assert sum("snapshot.transfer.started" in k for k in keys(s3_client, bucket, "audit/")) == 1
