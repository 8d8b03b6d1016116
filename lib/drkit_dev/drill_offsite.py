"""The drill's off-site step: copy to a second bucket with Object Lock, then restore and verify from it with the
primary bucket unreachable (the plan's regional outage)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import boto3

from drkit.crypto import encryption
from drkit.functions import backup_copy, restore_verify
from drkit.platform.config import COPY_READER, Config, copy_from_env
from drkit.platform.runtime import handle
from drkit.postgres import restore
from drkit.storage import catalog
from drkit.storage.versioned import open_view
from drkit_dev import sampledb
from drkit_dev.keys import store_of
from drkit_dev.pgserver import PgServer

COPY_BUCKET = "drkit-drill-offsite"


def copy_env(env: dict[str, str]) -> dict[str, str]:
    """The off-site copy's lines of the drill's .env: a second bucket on the same stand-in, its write key for
    backup-copy, a Read key for restore-verify (moto checks neither; the names are what a deployment uses)."""
    return {"DRKIT_COPY_BUCKET": COPY_BUCKET, "DRKIT_COPY_ENDPOINT": env["DRKIT_SPACES_ENDPOINT"],
            "DRKIT_COPY_KEY": "DRILLCOPYWRITEKEY", "DRKIT_COPY_SECRET": "drill-copy-secret", "DRKIT_COPY_LOCK_DAYS": "2",
            "DRKIT_OFFSITE_BUCKET": COPY_BUCKET, "DRKIT_OFFSITE_ENDPOINT": env["DRKIT_SPACES_ENDPOINT"],
            "DRKIT_OFFSITE_KEY": "DRILLCOPYREADKEY", "DRKIT_OFFSITE_SECRET": "drill-copy-read-secret"}


def offsite_step(drill: Any, env: dict[str, str], pg: PgServer, identity: str, context: Any) -> None:
    if not drill.ok:
        drill.step("off-site copy", False, "skipped: earlier step failed", 0.0)
        return
    boto3.client("s3", endpoint_url=env["DRKIT_SPACES_ENDPOINT"], aws_access_key_id="DRILLCOPYWRITEKEY",
                 aws_secret_access_key="drill-copy-secret", region_name="us-east-1").create_bucket(
        Bucket=COPY_BUCKET, ObjectLockEnabledForBucket=True)
    env.update(copy_env(env))
    t = time.monotonic()
    result = handle("backup-copy", backup_copy.run, {}, context, env)
    secs = time.monotonic() - t
    db = (result.get("databases") or [{}])[0]
    drill.facts["off-site copy"] = (f"{result.get('copied')} objects, {float(result.get('bytes') or 0) / 1e6:.1f} MB "
                                    f"in {secs:.1f} s ({result.get('throughput_mb_s')} MB/s), read back and checked; "
                                    f"{result.get('immutability')} until {str(db.get('locked_until'))[:16]}")
    drill.step("backup-copy", bool(result.get("ok")) and result.get("immutability") == "object-lock",
               str(result.get("decision")), secs)
    if not drill.ok:
        return
    # the primary's region is gone: the restore reads the copy alone (with its Read key; nothing else)
    t = time.monotonic()
    cfg = Config.from_env(env)
    problems: list[str] = []
    reader = copy_from_env(env, problems, COPY_READER)
    assert reader is not None, problems
    view = open_view(reader.spaces, store_of(env).identity)
    entry = catalog.find(view, "latest", "erp", now=dt.datetime.now(dt.UTC))
    pg.create_database("erp_from_copy")
    try:
        restore.restore(view, entry, [encryption.parse_identity(identity)], cfg.databases["erp"], "erp_from_copy",
                        manifest=catalog.read_manifest(view, entry))
        same = sampledb.fingerprint(pg, "erp") == sampledb.fingerprint(pg, "erp_from_copy")
    except Exception as exc:  # noqa: BLE001 - reported as a failed step
        drill.step("restore from copy", False, f"{type(exc).__name__}: {exc}", time.monotonic() - t)
        return
    finally:
        pg.drop_database("erp_from_copy")
    drill.step("restore from copy", same, f"{entry.id} from {COPY_BUCKET} with the primary unreachable: "
               + ("every table identical" if same else "MISMATCH"), time.monotonic() - t)
    t = time.monotonic()
    proof = handle("restore-verify", restore_verify.run, {"repo": "copy"}, context, env)  # the weekly proof, on the copy
    drill.facts["restore-verify of the copy"] = str(proof.get("decision"))
    drill.step("restore-verify (copy)", bool(proof.get("ok")) and proof.get("repo") == "copy",
               str(proof.get("decision")), time.monotonic() - t)
