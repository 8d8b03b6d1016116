"""Storage file bytes: config-backup's `storage` source (incremental, encrypted) and `drkit files restore`.

The "Supabase Storage" is a second set of buckets on the local S3 server, reached through its own
endpoint and keys, as a project's S3 endpoint is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.configbackup import files
from drkit.crypto import encryption
from drkit.functions import config_backup
from drkit.platform.runtime import handle
from support.clirun import cli_with_env

BIG = os.urandom(9 << 20)  # over files.SMALL: a streamed, multipart copy


class Storage:
    def __init__(self, s3: Any, env: dict[str, str], buckets: list[str]):
        self.s3, self.env, self.buckets = s3, env, buckets
        self.last = 0.0

    def run(self) -> dict[str, Any]:
        # backup ids carry seconds: a run in the same second as the last one would not sort after it
        time.sleep(max(0.0, 1.05 - (time.time() % 1)) if time.time() - self.last < 1.1 else 0)
        self.last = time.time()
        result = handle("config-backup", config_backup.run, {}, None, self.env)
        assert result["ok"], result
        return next(s["details"] for s in result["sources"] if s["name"] == "supabase-files") | {"id": result["backup_id"]}

    def objects(self) -> dict[str, bytes]:
        out = {}
        for b in self.buckets:
            for item in self.s3.list_objects_v2(Bucket=b).get("Contents", []):
                out[f"{b}/{item['Key']}"] = self.s3.get_object(Bucket=b, Key=item["Key"])["Body"].read()
        return out


@pytest.fixture
def storage(make_env: Any, s3_client: Any, s3_server: Any, age_keys: tuple[str, str]) -> Iterator[Storage]:
    tag = uuid.uuid4().hex[:8]
    buckets = [f"avatars-{tag}", f"documents-{tag}"]
    for b in buckets:
        s3_client.create_bucket(Bucket=b)
    for i in range(5):
        s3_client.put_object(Bucket=buckets[0], Key=f"user-{i}/avatar.png", Body=os.urandom(2000 + i))
    s3_client.put_object(Bucket=buckets[1], Key="contracts/2026/acme.pdf", Body=BIG)
    s3_client.put_object(Bucket=buckets[1], Key="empty.txt", Body=b"")
    source = {"type": "storage", "name": "supabase-files", "endpoint": s3_server.endpoint, "region": "us-east-1",
              "buckets": buckets}
    env = make_env({}, DRKIT_CONFIG_SOURCES=json.dumps([source]), DRKIT_STORAGE_S3_KEY="storage-key-id",
                   DRKIT_STORAGE_S3_SECRET="storage-Secret-456", DRKIT_AGE_IDENTITY=age_keys[0],
                   DRKIT_RESTORE_S3_KEY="new-project-key", DRKIT_RESTORE_S3_SECRET="new-project-Secret-789")
    env.pop("DRKIT_DATABASES")
    yield Storage(s3_client, env, buckets)


def cli(env: dict[str, str], capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    return cli_with_env(env, capsys, *argv, columns=240)


def folder(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_daily_copies_are_incremental_and_restore_every_byte(storage: Storage, s3_client: Any, bucket: str,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = storage.run()
    assert (first["objects"], first["copied"], first["reused"]) == (7, 7, 0)
    assert first["copied_bytes"] == sum(len(v) for v in storage.objects().values())
    stored = keys(s3_client, bucket, "files/")
    assert not any("avatar" in k or "contracts" in k or "user-" in k for k in stored)  # no object names in Spaces
    second = storage.run()
    assert (second["copied"], second["reused"]) == (0, 7)  # nothing was read again
    before = storage.objects()
    s3_client.put_object(Bucket=storage.buckets[0], Key="user-0/avatar.png", Body=b"a new picture")
    s3_client.put_object(Bucket=storage.buckets[0], Key="user-9/avatar.png", Body=b"a new user")
    s3_client.delete_object(Bucket=storage.buckets[0], Key="user-1/avatar.png")
    third = storage.run()
    assert (third["objects"], third["copied"], third["reused"]) == (7, 2, 5)

    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to", str(tmp_path / "now"))
    assert code == 0, out
    assert "restored 7" in out and "matched its SHA-256" in out
    assert folder(tmp_path / "now") == storage.objects()
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--backup", first["id"],
                    "--to", str(tmp_path / "then"), "--bucket", storage.buckets[0])
    assert code == 0, out
    assert folder(tmp_path / "then") == {k: v for k, v in before.items() if k.startswith(storage.buckets[0])}
    code, out = cli(storage.env, capsys, "files", "list", "--source", "supabase-files", "--prefix", "contracts/")
    assert code == 0 and "contracts/2026/acme.pdf" in out and "7 objects" in out
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to", str(tmp_path / "now"))
    assert code == 0 and "already there 7" in out  # a second run changes nothing
    (tmp_path / "now" / storage.buckets[1] / "empty.txt").write_bytes(b"edited by hand")
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to", str(tmp_path / "now"))
    assert code == 1 and "conflicts 1" in out and "empty.txt: present with other content" in out
    assert (tmp_path / "now" / storage.buckets[1] / "empty.txt").read_bytes() == b"edited by hand"
    assert any("files.restored" in k for k in keys(s3_client, bucket, "audit/"))


def test_a_swapped_copy_is_refused_by_name_and_never_written(storage: Storage, s3_client: Any, bucket: str,
                                                             tmp_path: Path, age_keys: tuple[str, str],
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    storage.run()
    victim = next(k for k in keys(s3_client, bucket, "files/supabase-files/blobs/")
                  if s3_client.head_object(Bucket=bucket, Key=k)["ContentLength"] < 4000)
    forged = io.BytesIO()  # anyone may encrypt to the public recipient: only the signed index tells
    encryption.encrypt_stream(io.BytesIO(b"attacker's picture"), forged, encryption.parse_recipients([age_keys[1]]))
    s3_client.put_object(Bucket=bucket, Key=victim, Body=forged.getvalue())
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to", str(tmp_path / "r"))
    assert code == 1 and "failed 1" in out and "does not match the index" in out and "not written" in out
    written = folder(tmp_path / "r")
    assert len(written) == 6 and b"attacker's picture" not in written.values()
    assert not list(scratch.iterdir())  # no plaintext left behind


def test_restore_into_a_new_projects_s3_endpoint(storage: Storage, s3_server: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    storage.run()
    want = storage.objects()
    for b in storage.buckets:  # the new project: the same buckets, empty
        for item in storage.s3.list_objects_v2(Bucket=b).get("Contents", []):
            storage.s3.delete_object(Bucket=b, Key=item["Key"])
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to-endpoint",
                    s3_server.endpoint, "--dry-run")
    assert code == 0 and "restore 7 objects" in out and "dry run" in out and storage.objects() == {}
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to-endpoint",
                    s3_server.endpoint)
    assert code == 0, out
    assert storage.objects() == want
    code, out = cli(storage.env, capsys, "files", "restore", "--source", "supabase-files", "--to-endpoint",
                    s3_server.endpoint)
    assert code == 0 and "already there 7" in out  # single-part copies: their ETag is the MD5 the index holds


def test_copies_no_backup_refers_to_are_deleted_only_after_a_good_run() -> None:
    blobs = {"a": {"seen": "2026-11-01"}, "b": {"seen": "2026-11-20"}, "c": {"seen": "2026-11-30"}}
    assert files.expired(blobs, dt.date(2026, 11, 20)) == ["a"]  # b may be in the backup of the 20th
    assert files.expired(blobs, dt.date(2026, 10, 1)) == []  # an old pinned backup keeps every copy
    assert files.blob_id("k", "b", "x", "e", 1) != files.blob_id("k", "b", "x", "e", 2)
    assert files.blob_id("k", "b", "x", "e", 1) != files.blob_id("other", "b", "x", "e", 1)
    assert len(files.blob_id("k", "b", "x", "e", 1)) == 40 and "x" not in hashlib.sha256(b"x").hexdigest()[:0]


def test_file_bytes_restore_from_the_off_site_copy_when_the_primary_is_emptied(
        storage: Storage, s3_client: Any, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The blobs and the files catalog travel with the copy (BIG is a multipart blob): with the primary
    bucket emptied, `files restore --from copy` brings every byte back, checked against the signed index."""
    from drkit.core.deadline import Deadline
    from drkit.functions import backup_copy
    from support.offsite import copy_bucket

    done = storage.run()
    copy_bucket(storage.env)
    copied = backup_copy.run({}, storage.env, Deadline(300))
    assert copied["ok"], copied
    for key in keys(s3_client, bucket):
        s3_client.delete_object(Bucket=bucket, Key=key)
    code, out = cli(storage.env, capsys, "files", "restore", "--from", "copy", "--source", "supabase-files",
                    "--to", str(tmp_path / "back"))
    assert code == 0, out
    assert "restored 7" in out and folder(tmp_path / "back") == storage.objects()
    code, out = cli(storage.env, capsys, "config", "list", "--from", "copy")
    assert code == 0 and done["id"] in out, out  # the config archive, listed from the copy alone
