"""What DigitalOcean runs is what we test: every function from the deployer's zip, under DO's
own Python loader (shared/do-runtime), with exactly the environment project.yml gives it.

Each function: a real successful run against the local stand-ins, cold then warm, with peak
RSS + /tmp within 75 % of its memory limit; a run with no environment at all (an application
error naming every missing variable); a run that fails as production runs fail (the activation
fails on DO's terms: the result holds `error`, with the details beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, SPACES_SECRET
from drkit.functions import db_backup
from drkit.platform import envvars
from drkit.platform.runtime import handle
from drkit_dev import artifact
from drkit_dev.pgserver import PgServer
from drkit_dev.s3server import S3Server, free_port
from support.scenarios import EVENTS, FAILING_EVENTS, base_env, broken, scenario

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "packages" / "dr").glob("*/__main__.py"))
MEMORY_SHARE = 0.75

pytestmark = pytest.mark.skipif(artifact.do_runtime() is None, reason=artifact.NO_RUNTIME)


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("zips")
    return {fn: artifact.deployer_zip(fn, folder / f"{fn}.zip") for fn in FUNCTIONS}


@pytest.fixture(scope="module")
def loader_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader")


@pytest.fixture
def dotenv(s3_server: S3Server, bucket: str, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> dict[str, str]:
    pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g", dbname)
    return base_env(s3_server.endpoint, bucket, SPACES_SECRET, pg.url(dbname), pg.url("postgres"), age_keys, pg.port)


def _prepare(function: str, dotenv: dict[str, str]) -> None:
    if function in ("restore-verify", "health-probe", "report", "backup-copy"):  # something to verify / to judge / to report
        env = artifact.function_env("db-backup", dotenv)
        assert handle("db-backup", db_backup.run, {}, None, env)["ok"]


def test_every_function_has_a_scenario() -> None:
    assert set(FUNCTIONS) == set(EVENTS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_deployed_function_succeeds_cold_and_warm_within_memory(function: str, zips: dict[str, Path],
                                                               loader_cache: Path, dotenv: dict[str, str],
                                                               s3_client: Any, bucket: str, pg: PgServer) -> None:
    from support.scenarios import check_effects

    _prepare(function, dotenv)
    with scenario(function, dotenv) as sc:
        env = artifact.function_env(function, sc.dotenv)
        report = artifact.run_under_loader(zips[function], function, env, EVENTS[function], repeat=2,
                                           cache_dir=loader_cache)
        if sc.fake is not None:
            assert sc.fake.violations == []
    with scenario(function, dotenv) as sc2:  # a container that only ever serves its cold start
        cold_only = artifact.run_under_loader(zips[function], function, artifact.function_env(function, sc2.dotenv),
                                              EVENTS[function], repeat=1, cache_dir=loader_cache)
    assert report["exit_code"] == 0, json.dumps(report, default=str)[-3000:]
    cold, warm = report["activations"]
    assert cold["cold"] and not warm["cold"]
    check_effects(function, cold["result"], s3_client, bucket, sc)
    limit = artifact.function_spec(function)["limits"]["memory"]
    used, used_cold = artifact.footprint_mb(report), artifact.footprint_mb(cold_only)
    print(f"\n{function}: zip {zips[function].stat().st_size / 1e6:.1f} MB, unpacked "
          f"{report['memory']['tmp_bytes'] / 2**20:.1f} MiB; cold init {report['inits'][0]['duration_ms']:.0f} ms, "
          f"run {cold['duration_ms']:.0f} ms, warm run {warm['duration_ms']:.0f} ms; peak RSS + /tmp: cold "
          f"{used_cold:.1f} MiB, cold + warm {used:.1f} MiB of {limit} MB ({used / limit:.0%})")
    assert cold_only["exit_code"] == 0
    assert used_cold <= MEMORY_SHARE * limit and used <= MEMORY_SHARE * limit, \
        f"{function}: {max(used, used_cold):.1f} MiB > {MEMORY_SHARE:.0%} of {limit} MB"
    logs = "\n".join(line for a in report["activations"] for line in a["logs"]) + report["stderr"]
    assert SPACES_SECRET not in logs and pg.password not in logs and dotenv["DRKIT_AGE_IDENTITY"] not in logs


@pytest.mark.parametrize("function", FUNCTIONS)
def test_deployed_function_without_env_names_every_missing_variable(function: str, zips: dict[str, Path],
                                                                   loader_cache: Path) -> None:
    event = dict(EVENTS[function])
    report = artifact.run_under_loader(zips[function], function, {}, event, cache_dir=loader_cache)
    (activation,) = report["activations"]
    result = activation["result"]
    if function == "dns-failover":  # a web call: refused with 500, the names in the activation log
        assert result["statusCode"] == 500 and "misconfigured" in result["body"]["error"]
        text = "\n".join(activation["logs"])
    else:
        assert report["exit_code"] == 1 and activation["status"] == "application error", report
        assert result["status"] == "invalid_config" and result["error"]
        text = " ".join(result["problems"])
    wanted = [v.name for v in envvars.for_function(function) if function in v.required and envvars.DB not in v.name]
    for name in wanted:
        assert name in text, f"{name} missing from {text}"
    assert "DRKIT_SPACES_REGION" in text and "DRKIT_SPACES_ENDPOINT" in text


@pytest.mark.parametrize("function", FUNCTIONS)
def test_deployed_function_failure_fails_the_activation(function: str, zips: dict[str, Path], loader_cache: Path,
                                                        dotenv: dict[str, str]) -> None:
    _prepare(function, dotenv)
    with scenario(function, dotenv) as sc:
        broken(sc, free_port())
        env = artifact.function_env(function, sc.dotenv)
        report = artifact.run_under_loader(zips[function], function, env, FAILING_EVENTS[function],
                                           cache_dir=loader_cache)
    (activation,) = report["activations"]
    result = activation["result"]
    assert report["exit_code"] == 1 and activation["status"] == "application error", json.dumps(report)[-3000:]
    assert result["ok"] is False and result["error"] and result["status"] in ("failed", "partial"), result
    assert result["decision"], result
    if function in ("db-backup", "restore-verify"):
        assert result["databases"][0]["status"] == "failed" and result["databases"][0]["error"], result
    print(f"\n{function}: {result['error'][:200]}")


def test_deployed_report_serves_metrics_to_its_bearer_only(zips: dict[str, Path], loader_cache: Path,
                                                           dotenv: dict[str, str]) -> None:
    """dr/report's web path as DigitalOcean delivers it (`web: true`): Prometheus's GET with its token gets
    health-probe's text; a wrong token gets 401 and no metrics."""
    from drkit.functions import health_probe

    token = "prometheus-Scrape-Token-01"
    _prepare("health-probe", dotenv)
    assert handle("health-probe", health_probe.run, {}, None, artifact.function_env("health-probe", dotenv))["ok"]
    env = artifact.function_env("report", dict(dotenv, DRKIT_METRICS_BEARER=token))
    for bearer, status in ((token, 200), ("wrong-token-0000000000", 401)):
        event = {"__ow_method": "get", "__ow_path": "/metrics", "__ow_headers": {"authorization": f"Bearer {bearer}"}}
        report = artifact.run_under_loader(zips["report"], "report", env, event, cache_dir=loader_cache)
        (activation,) = report["activations"]
        result = activation["result"]
        assert result["statusCode"] == status, json.dumps(report, default=str)[-2000:]
        if status == 200:
            assert result["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "drkit_backup_age_seconds{" in result["body"] and 'database="odoo"' in result["body"]
        else:
            assert "drkit_" not in json.dumps(result) and token not in json.dumps(report, default=str)


def test_deployed_scheduler_stops_before_its_limit_with_a_hundred_databases_and_slow_invokes(
        zips: dict[str, Path], loader_cache: Path, dotenv: dict[str, str], s3_client: Any, bucket: str) -> None:
    """Under DO's loader with its 55 s limit: invokes that each take 1.5 s to answer, 100 databases due. The
    tick dispatches what fits, leaves the rest for the next tick and still writes its status in time."""
    names = [f"db{i:03d}" for i in range(100)]
    with scenario("scheduler", dotenv) as sc:
        assert sc.whisk is not None
        sc.whisk.hang_s = 1.5
        env = artifact.function_env("scheduler", sc.dotenv) | {"DRKIT_DATABASES": ",".join(names)}  # names only
        report = artifact.run_under_loader(zips["scheduler"], "scheduler", env, EVENTS["scheduler"],
                                           cache_dir=loader_cache)
        (activation,) = report["activations"]
        result = activation["result"]
        assert report["exit_code"] == 0 and result["ok"], json.dumps(report, default=str)[-2000:]
        started = [d for d in result["dispatched"] if d["state"] == "dispatched"]
        due = 1 + 100 + 1 + 100 + 1 + 1  # health-probe, a backup and a verification per database, config, report,
        # the off-site copy's catch-up
        assert 5 < len(started) < 60 and len(started) + len(result["deferred"]) == due, result["decision"]
        assert f"{len(result['deferred'])} wait for the next tick" in result["decision"]
        assert activation["duration_ms"] < 50_000, activation["duration_ms"]  # inside the limit, with room
        status = s3_client.get_object(Bucket=bucket, Key="status/schedule.json")["Body"].read()
        assert b"drkit.record/1" in status  # written, signed, before the limit
