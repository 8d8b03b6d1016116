"""When the platform misbehaves, the job is finished on a later run, or alerted once and then finished.

Faults are injected through the stand-ins: the Functions API (FakeWhisk: 429s, a refused connection, a hung
invoke), the bucket (the fault proxy: a write whose answer is lost), the DO API (FakeDO: 500s in the middle
of a failover), a notification endpoint that is down, concurrent ticks. Clocks are simulated.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import keys
from drkit.core.deadline import Deadline
from drkit.core.secret import Secret
from drkit.functions import health_probe, scheduler
from drkit.scheduling import tick as tick_mod
from drkit.scheduling.openwhisk import FunctionsApi
from drkit_dev.fakedo import FakeDO
from drkit_dev.fakewhisk import FakeWhisk
from drkit_dev.probeservers import Behaviour, serve, stop
from drkit_dev.s3server import S3Server
from support.faultproxy import FaultProxy, Rule
from support.records import content

DAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
ONLY_BACKUPS = json.dumps([{"job": j, "enabled": False}
                           for j in ("health-probe", "config-backup", "restore-verify", "report", "backup-copy")])


@pytest.fixture
def whisk() -> Iterator[FakeWhisk]:
    f = FakeWhisk().start()
    yield f
    f.stop()
    assert f.violations == [], f.violations


@pytest.fixture
def env(make_env: Any, whisk: FakeWhisk) -> dict[str, str]:
    e = make_env({"odoo": "postgresql://x@127.0.0.1/odoo", "superset": "postgresql://x@127.0.0.1/superset"})
    return {**e, **whisk.env(), "DRKIT_SCHEDULE": ONLY_BACKUPS}


class Receiver:
    """A notification endpoint that answers 503 to its first `down` deliveries, then 200."""

    def __init__(self, down: int = 0):
        self.down = down
        self.got: list[dict[str, Any]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.down > 0:
                    receiver.down -= 1
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.got.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # the heartbeat
                receiver.got.append({"event": "heartbeat", "path": self.path})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, prefix: str) -> list[dict[str, Any]]:
        return [e for e in self.got if str(e.get("event", "")).startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def tick(env: dict[str, str], at: dt.datetime, deadline: float = 50, **params: Any) -> dict[str, Any]:
    return scheduler.run(params, env, Deadline(deadline), clock=lambda: at)


def test_a_refused_dispatch_is_started_on_the_next_tick(env: dict[str, str], whisk: FakeWhisk) -> None:
    at = DAY.replace(hour=1, minute=7, second=30)
    refused = dict(env, DRKIT_FUNCTIONS_API_HOST="http://127.0.0.1:9")  # nothing listens: connection refused
    first = tick(refused, at)
    assert [d["state"] for d in first["dispatched"]] == ["retrying", "retrying"] and first["ok"]
    assert "retrying: db-backup/odoo, db-backup/superset" in first["decision"]
    second = tick(env, at + dt.timedelta(minutes=1))
    assert sorted((d["name"], d["state"], d["attempt"]) for d in second["dispatched"]) == [
        ("db-backup/odoo", "dispatched", 2), ("db-backup/superset", "dispatched", 2)]
    assert len(whisk.invoked()) == 2
    # a 429 that outlasts the invoke's own retries is the same: the next tick starts the slot
    whisk.fail_next(429, times=8, retry_after=0)
    third = tick(env, at + dt.timedelta(hours=1))
    assert [d["state"] for d in third["dispatched"]] == ["retrying", "retrying"]
    fourth = tick(env, at + dt.timedelta(hours=1, minutes=1))
    assert [d["state"] for d in fourth["dispatched"]] == ["dispatched", "dispatched"] and len(whisk.invoked()) == 4
    assert tick(env, at + dt.timedelta(hours=1, minutes=2))["dispatched"] == []  # once each


def test_a_claim_whose_answer_was_lost_is_recognised_as_ours(env: dict[str, str], whisk: FakeWhisk,
                                                             s3_server: S3Server) -> None:
    from drkit.storage import store as store_module

    proxy = FaultProxy(s3_server.endpoint, rules=[Rule("PUT", "state/schedule/claims/db-backup/odoo/", 500, times=1,
                                                        after_forward=True)]).start()
    try:
        store_module._CONDITIONAL.clear()
        result = tick(dict(env, DRKIT_SPACES_ENDPOINT=proxy.endpoint), DAY.replace(hour=2, minute=8))
    finally:
        proxy.stop()
    assert {d["name"]: d["state"] for d in result["dispatched"]} == {"db-backup/odoo": "dispatched",
                                                                    "db-backup/superset": "dispatched"}
    assert len(whisk.invoked("db-backup")) == 2


def test_the_tick_stops_dispatching_before_its_deadline_and_the_next_one_goes_on(make_env: Any, whisk: FakeWhisk,
                                                                                 receiver: Receiver) -> None:
    names = [f"db{i}" for i in range(8)]
    env = {**make_env({n: f"postgresql://x@127.0.0.1/{n}" for n in names}), **whisk.env(),
           "DRKIT_SCHEDULE": ONLY_BACKUPS, "DRKIT_HEARTBEAT_URL": f"{receiver.url}/ping"}
    whisk.hang_s = 4.0  # every invoke takes 4 s to answer
    at = DAY.replace(hour=3, minute=7)
    first = tick(env, at, deadline=40)
    started = [d for d in first["dispatched"] if d["state"] == "dispatched"]
    # a dispatch starts only while reserve + one invoke timeout (20 + 10 s) are left of the 40 s: at 0, 4 and 8 s
    assert FunctionsApi.timeout_s == 10.0 and tick_mod.DISPATCH_RESERVE_S == 20.0
    assert len(started) == 3, first
    assert sorted(first["deferred"] + [d["name"] for d in started]) == sorted(f"db-backup/{n}" for n in names)
    assert receiver.events("heartbeat")  # the tick finished its work: status written, heartbeat sent
    whisk.hang_s = 0.0
    second = tick(env, at + dt.timedelta(minutes=1))
    assert len(second["dispatched"]) == 8 - len(started) and len({i.params["database"] for i in whisk.invoked()}) == 8


def test_a_slow_tick_and_a_concurrent_one_never_hide_each_others_runs(env: dict[str, str], whisk: FakeWhisk) -> None:
    whisk.outcomes["db-backup"] = "failed"
    whisk.hang_s = 2.0
    at = DAY.replace(hour=4, minute=7)
    ticks: list[dict[str, Any]] = []
    slow = threading.Thread(target=lambda: ticks.append(tick(env, at)))
    slow.start()
    ticks.append(tick(env, at + dt.timedelta(seconds=20), job="db-backup", database="odoo"))  # during the slow one
    slow.join()
    whisk.hang_s = 0.0
    assert sorted(d["state"] for t in ticks for d in t["dispatched"]) == ["dispatched"] * 3
    whisk.wait_idle()
    ticks.append(tick(env, at + dt.timedelta(minutes=2)))
    failed = sorted((w["name"], w["state"]) for t in ticks for w in t["watched"])
    assert failed == [("db-backup/odoo", "failed"), ("db-backup/odoo", "failed"), ("db-backup/superset", "failed")]
    assert sum(t["alerts"] for t in ticks) == 3  # each run's failure, once


def test_alerts_survive_an_outage_of_the_endpoint_and_are_sent_once(env: dict[str, str], whisk: FakeWhisk,
                                                                   s3_client: Any, bucket: str) -> None:
    hook = Receiver(down=4)  # each delivery is tried twice: both alerts fail their first attempts
    try:
        env = dict(env, DRKIT_NOTIFY_WEBHOOK_URL=f"{hook.url}/hook")
        whisk.outcomes["db-backup"] = "failed"
        at = DAY.replace(hour=5, minute=7)
        tick(env, at)
        whisk.wait_idle()
        seen = tick(env, at + dt.timedelta(minutes=1))
        assert seen["alerts"] == 2 and hook.events("schedule.failed") == []  # stored; the endpoint is down
        assert any(not n["ok"] for n in seen["notifications"])
        for minute in range(2, 12):
            tick(env, at + dt.timedelta(minutes=minute))
        delivered = hook.events("schedule.failed")
        assert sorted(d["failed_checks"][0].split(":")[0] for d in delivered) == ["db-backup/odoo",
                                                                                 "db-backup/superset"]
        assert hook.refused == 4
        # the next success resolves each alert with one message
        whisk.outcomes["db-backup"] = "succeeded"
        tick(env, at + dt.timedelta(hours=1))
        whisk.wait_idle()
        for minute in range(1, 4):
            tick(env, at + dt.timedelta(hours=1, minutes=minute))
        assert len(hook.events("schedule.resolved")) == 2 and len(hook.events("schedule.failed")) == 2
        assert keys(s3_client, bucket, "state/alerts/scheduler/")
    finally:
        hook.server.shutdown()


def test_five_concurrent_ticks_send_one_alert(env: dict[str, str], whisk: FakeWhisk, receiver: Receiver) -> None:
    env = dict(env, DRKIT_NOTIFY_WEBHOOK_URL=f"{receiver.url}/hook", DRKIT_DATABASES="odoo")
    whisk.outcomes["db-backup"] = "failed"
    at = DAY.replace(hour=6, minute=7)
    tick(env, at)
    whisk.wait_idle()
    barrier = threading.Barrier(5)

    def one() -> None:
        barrier.wait()
        tick(env, at + dt.timedelta(minutes=1))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tick(env, at + dt.timedelta(minutes=2))
    assert len(receiver.events("schedule.failed")) == 1, receiver.got


def test_a_hung_invoke_whose_run_succeeded_is_found_not_lost(env: dict[str, str], whisk: FakeWhisk) -> None:
    host, namespace = whisk.env()["DRKIT_FUNCTIONS_API_HOST"], whisk.namespace
    api = FunctionsApi(host, namespace, whisk.key_id, Secret(whisk.secret), timeout_s=1.0)
    whisk.hang_s = 3.0  # the function starts; its answer comes after the invoke gave up
    at = DAY.replace(hour=7, minute=7)
    first = scheduler.run({}, dict(env, DRKIT_DATABASES="odoo"), Deadline(50), clock=lambda: at, api=api)
    assert [d["state"] for d in first["dispatched"]] == ["uncertain"]
    whisk.hang_s = 0.0
    whisk.wait_idle()
    second = scheduler.run({}, dict(env, DRKIT_DATABASES="odoo"), Deadline(50), clock=lambda: at +
                           dt.timedelta(minutes=1), api=api)
    assert [(w["name"], w["state"]) for w in second["watched"]] == [("db-backup/odoo", "succeeded")]
    assert second["alerts"] == 0 and len(whisk.invoked()) == 1


def test_no_second_run_starts_while_the_first_still_runs(env: dict[str, str], whisk: FakeWhisk) -> None:
    env = dict(env, DRKIT_DATABASES="odoo", DRKIT_SCHEDULE=json.dumps(
        [*json.loads(ONLY_BACKUPS), {"job": "db-backup", "cron": "*/5 * * * *"}]))
    whisk.outcomes["db-backup"] = "lost"  # it runs (no record yet): as a slow backup looks
    at = DAY.replace(hour=8)
    assert [d["state"] for d in tick(env, at)["dispatched"]] == ["dispatched"]
    skipped = tick(env, at + dt.timedelta(minutes=5))
    assert [d["state"] for d in skipped["dispatched"]] == ["skipped"] and skipped["alerts"] == 1
    assert "is still running" in skipped["dispatched"][0]["error"]
    assert tick(env, at + dt.timedelta(minutes=10))["alerts"] == 0  # skipped again, told once
    whisk.outcomes["db-backup"] = "succeeded"
    lost = tick(env, at + dt.timedelta(minutes=21))  # the first run's outcome is still read: lost; then 08:20 starts
    assert ("db-backup/odoo", "lost") in [(w["name"], w["state"]) for w in lost["watched"]]
    assert [(d["slot"][11:16], d["state"]) for d in lost["dispatched"]] == [("08:20", "dispatched")]
    import time

    for _ in range(200):  # the 08:20 run finishing (the 08:00 one never will)
        if whisk.invoked()[-1].record is not None:
            break
        time.sleep(0.02)
    resumed = tick(env, at + dt.timedelta(minutes=25))  # 08:20 finished: 08:25 runs, and the skip alert resolves
    assert [d["state"] for d in resumed["dispatched"]] == ["dispatched"] and len(whisk.invoked()) == 3
    assert resumed["resolved"] >= 1


def test_after_three_days_down_the_old_success_keeps_its_time_and_is_overdue(env: dict[str, str], whisk: FakeWhisk,
                                                                             s3_client: Any, bucket: str) -> None:
    clock = {"now": DAY.replace(hour=1, minute=8)}
    whisk.clock = lambda: clock["now"].timestamp()
    env = dict(env, DRKIT_DATABASES="odoo")
    tick(env, clock["now"])
    whisk.wait_idle()
    clock["now"] += dt.timedelta(minutes=1)
    tick(env, clock["now"])
    ran_at = content(s3_client, bucket, "state/schedule/runs/db-backup/odoo.json")["success_at"]
    assert ran_at.startswith("2026-11-30T01:08")  # the activation's own end, not the tick that read it
    late = DAY + dt.timedelta(days=3, hours=1, minutes=30)
    whisk.outcomes["db-backup"] = "lost"  # the first run after the outage has not finished yet
    back = tick(env, late)
    job = next(j for j in content(s3_client, bucket, "status/schedule.json")["jobs"] if j["name"] == "db-backup/odoo")
    assert job["overdue"] and job["last_success"].startswith("2026-11-30T01:08")
    assert "failing or overdue: db-backup/odoo" in back["decision"] and back["alerts"] == 1
    assert "no DRKIT_HEARTBEAT_URL" in scheduler.check(env)


def test_automatic_failover_is_finished_and_retried_while_its_trigger_holds(make_env: Any) -> None:
    primary, dr = Behaviour(), Behaviour()
    primary_server, primary_port = serve(primary)
    dr_server, dr_port = serve(dr)
    fake = FakeDO().start()
    try:
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        plan = {"sites": ["primary", "dr"], "health": {"dr": f"http://127.0.0.1:{dr_port}/health"},
                "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                             "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}], "min_hold": "1s"}
        env = make_env({}, DRKIT_PROBES=json.dumps([{"name": "erp", "type": "http", "failover": True,
                                                     "url": f"http://127.0.0.1:{primary_port}/health"}]),
                       DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                       DRKIT_FAILOVER_PLAN=json.dumps(plan), DRKIT_AUTO_FAILOVER="true")
        env.pop("DRKIT_DATABASES")
        at = [DAY.replace(hour=9)]

        def run() -> dict[str, Any]:
            at[0] += dt.timedelta(minutes=1)
            result = health_probe.run({}, env, Deadline(50), clock=lambda: at[0])
            assert result["ok"], result
            return result

        def dns() -> str:
            return str(fake.records["example.net"][0]["data"])

        primary.health_status, dr.health_status = 500, 500  # the DR site is briefly unhealthy too
        results = [run() for _ in range(3)]
        assert results[2]["failover"]["outcome"] == "refused" and dns() == "203.0.113.10"
        dr.health_status = 200  # the DR site recovers; the primary stays down: the next run moves traffic
        moved = run()
        assert moved["failover"]["outcome"] == "applied" and dns() == "198.51.100.20"
        # a half-done move: DNS back by hand, and the DO API failing when health-probe finishes it
        fake.records["example.net"][0]["data"] = "203.0.113.10"
        fake.fail("PATCH", r"/records/", 500, times=None)
        stuck = run()
        assert "failover" in stuck["down"] and dns() == "203.0.113.10"  # alerted while it is not done
        fake.faults.clear()
        for _ in range(4):  # backoff: 1, 2 minutes; then it is finished
            done = run()
            if dns() == "198.51.100.20":
                break
        assert dns() == "198.51.100.20" and any(e["event"] == "recovered" and e["target"] == "failover"
                                               for e in done["changed"])
    finally:
        stop(primary_server)
        stop(dr_server)
        fake.stop()
    assert fake.violations == []
