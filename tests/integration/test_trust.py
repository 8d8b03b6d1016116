"""An attacker with the Spaces key (every function holds it; dns-failover answers the public web).

Each attack is refused before any SQL, file or DNS change, with "not signed by a trusted key":
a planted backup whose SQL would run a program on the database host, one byte of a manifest
swapped, an old signed manifest replayed under a new id, a backup signed with the attacker's own
key, a planted config archive. Key rotation: backups signed by the old and the new key verify.
minisign (the standard tool) verifies drkit's signatures. (A planted failover plan:
test_dns_failover.py.) TLS: verify-full against a server with another certificate fails.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pyrage
import pytest
import zstandard

from conftest import SPACES_SECRET, fill_rich, keys
from drkit.cli import main
from drkit.crypto import signing
from drkit.functions import db_backup, restore_verify
from drkit.platform.config import spaces_from_env
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit.storage import catalog, signed
from drkit.storage.store import Store
from drkit_dev.pgserver import PgServer

EVIL_SQL = b"COPY (SELECT 1) TO PROGRAM 'touch /tmp/drkit-pwned';\n"


@pytest.fixture
def setup(tmp_path: Path, make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> dict[str, Any]:
    fill_rich(pg, dbname)
    env = make_env({"app": pg.url(dbname)}, DRKIT_DB_APP_COUNT_TABLES="*")
    assert handle("db-backup", db_backup.run, {}, None, env)["ok"]
    env_file = tmp_path / "drkit.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    return {"env": env, "env_file": str(env_file), "identity": str(identity), "store": Store(spaces_from_env(env))}


def _restore(setup: dict[str, Any], pg: PgServer, target: str, capsys: pytest.CaptureFixture[str],
             backup: str = "latest") -> tuple[int, str]:
    code = main.main(["--env-file", setup["env_file"], "restore", "--db", "app", "--backup", backup,
                     "--target", pg.url(target), "--identity", setup["identity"]])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def _nothing_happened(pg: PgServer, target: str) -> None:
    with pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{target}%",)).fetchone()[0] == 0


def _planted(age_recipient: str, sql: bytes) -> bytes:
    """What an attacker can make: a valid age file, for the listed recipients, of whatever they like."""
    compressed = zstandard.ZstdCompressor().compress(sql)
    return bytes(pyrage.encrypt(compressed, [pyrage.x25519.Recipient.from_str(age_recipient)]))


def test_a_planted_backup_runs_nothing(setup: dict[str, Any], pg: PgServer, s3_client: Any, bucket: str,
                                       age_keys: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    store: Store = setup["store"]
    real = [k for k in keys(s3_client, bucket, "db/app/") if k.endswith(layout.MANIFEST_SUFFIX)][0]
    manifest = json.loads(store.get_bytes(real))
    data = _planted(age_keys[1], EVIL_SQL)
    planted_id = "29991231T235959Z-abcdef"  # the newest: what `latest` picks
    base = layout.backup_base("app", planted_id)
    store.put_bytes(base + layout.DATA_SUFFIX, data)
    import hashlib

    store.put_json(base + layout.MANIFEST_SUFFIX, manifest | {"id": planted_id, "key": base + layout.DATA_SUFFIX,
                                                              "sha256": hashlib.sha256(data).hexdigest(),
                                                              "bytes_out": len(data)})
    target = f"t_{uuid.uuid4().hex[:8]}"
    code, text = _restore(setup, pg, target, capsys, backup=planted_id)  # asked for by name: refused
    assert code != 0 and "not signed by a trusted key" in text and "has no signature" in text, text
    _nothing_happened(pg, target)
    code, text = _restore(setup, pg, target, capsys)  # `latest`: the planted one is not a backup at all
    assert code == 0 and real.split("/")[-1].removesuffix(layout.MANIFEST_SUFFIX) in text, text
    assert not Path("/tmp/drkit-pwned").exists()
    pg.drop_database(target)
    # signed with the attacker's own key: still refused, and the message names the stranger's key
    from drkit.core.secret import Secret
    from drkit.crypto.trust import Identity, Signer

    attacker = store.with_identity(Identity(Signer("db-backup", Secret(signing.generate()[0]))))
    signed.put_json(attacker, base + layout.MANIFEST_SUFFIX, json.loads(store.get_bytes(base + layout.MANIFEST_SUFFIX)))
    code, text = _restore(setup, pg, target, capsys, backup=planted_id)
    assert code != 0 and "not signed by a trusted key" in text and "does not list" in text, text
    _nothing_happened(pg, target)
    # restore-verify refuses it too when asked for it, before any scratch database; `latest` is the genuine one
    verify_env = setup["env"] | {"DRKIT_STAGING_URL": pg.url("postgres"), "DRKIT_AGE_IDENTITY": age_keys[0]}
    result = handle("restore-verify", restore_verify.run, {"backup": planted_id}, None, verify_env)
    assert result["ok"] is False and "not signed by a trusted key" in result["error"]
    _nothing_happened(pg, "drkit_verify_")
    result = handle("restore-verify", restore_verify.run, {}, None, verify_env)
    assert result["ok"] and result["databases"][0]["backup_id"] != planted_id


def test_a_swapped_byte_or_a_replayed_manifest_is_refused(setup: dict[str, Any], pg: PgServer, s3_client: Any,
                                                          bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    store: Store = setup["store"]
    (manifest_key,) = [k for k in keys(s3_client, bucket, "db/app/") if k.endswith(layout.MANIFEST_SUFFIX)]
    original = store.get_bytes(manifest_key)
    target = f"t_{uuid.uuid4().hex[:8]}"
    # one byte of the manifest (a row count) swapped
    swapped = original.replace(b'"exact_rows": 3000', b'"exact_rows": 3001', 1)
    assert swapped != original
    store.put_bytes(manifest_key, swapped)
    code, text = _restore(setup, pg, target, capsys)
    assert code != 0 and "not signed by a trusted key" in text and "does not match its content" in text, text
    _nothing_happened(pg, target)
    store.put_bytes(manifest_key, original)
    # the old signed manifest, its signature and its data copied under a newer id
    new_id = "29991231T235959Z-123456"
    old_base = manifest_key.removesuffix(layout.MANIFEST_SUFFIX)
    new_base = layout.backup_base("app", new_id)
    for suffix in (layout.DATA_SUFFIX, layout.MANIFEST_SUFFIX, layout.SIGNATURE_SUFFIX):
        store.put_bytes(new_base + suffix, store.get_bytes(old_base + suffix))
    code, text = _restore(setup, pg, target, capsys, backup=new_id)
    assert code != 0 and "not signed by a trusted key" in text and "replayed" in text, text
    _nothing_happened(pg, target)


def test_a_rotated_key_still_verifies_old_backups(setup: dict[str, Any], pg: PgServer, dbname: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old_public = setup["env"]["DRKIT_TRUSTED_KEYS"]
    new_secret, new_public = signing.generate()
    rotated = setup["env"] | {"DRKIT_SIGNING_KEY": new_secret, "DRKIT_TRUSTED_KEYS": f"{new_public} {old_public}"}
    newest = handle("db-backup", db_backup.run, {"prune": "false"}, None, rotated)  # signed by the new key
    assert newest["ok"]
    Path(setup["env_file"]).write_text("".join(f"{k}={v}\n" for k, v in rotated.items()))
    entries = [e for e in catalog.list_backups(setup["store"], "app") if e.complete]
    assert len(entries) == 2
    for entry in entries:  # old (old key) and new (new key) both restore
        target = f"t_{uuid.uuid4().hex[:8]}"
        try:
            code, text = _restore(setup, pg, target, capsys, backup=entry.id)
            assert code == 0, text
        finally:
            pg.drop_database(target)
    # the old key retired from the list: its backups are refused, the new ones restore
    Path(setup["env_file"]).write_text("".join(f"{k}={v}\n" for k, v in (rotated | {"DRKIT_TRUSTED_KEYS": new_public}).items()))
    target = f"t_{uuid.uuid4().hex[:8]}"
    (old,) = [e for e in entries if e.id != newest["databases"][0]["backup_id"]]  # ids of one second sort by chance
    code, text = _restore(setup, pg, target, capsys, backup=old.id)
    assert code != 0 and "not signed by a trusted key" in text
    _nothing_happened(pg, target)


def test_minisign_verifies_drkit_signatures(setup: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path) -> None:
    if not shutil.which("minisign"):
        pytest.skip("minisign is not installed (scripts/test installs it as root)")
    store: Store = setup["store"]
    (manifest_key,) = [k for k in keys(s3_client, bucket, "db/app/") if k.endswith(layout.MANIFEST_SUFFIX)]
    (tmp_path / "m.json").write_bytes(store.get_bytes(manifest_key))
    (tmp_path / "m.json.minisig").write_bytes(store.get_bytes(manifest_key + signed.SIG))
    public = dict(e.split("=", 1) for e in setup["env"]["DRKIT_TRUSTED_KEYS"].split())["db-backup"]
    ok = subprocess.run(["minisign", "-V", "-P", public, "-m", str(tmp_path / "m.json")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and f"Trusted comment: drkit {manifest_key}" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "m.json").write_bytes(store.get_bytes(manifest_key).replace(b"3000", b"3001", 1))
    bad = subprocess.run(["minisign", "-V", "-P", public, "-m", str(tmp_path / "m.json")],
                         capture_output=True, text=True)
    assert bad.returncode != 0


def test_a_planted_config_archive_extracts_nothing(setup: dict[str, Any], age_keys: tuple[str, str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import tarfile

    store: Store = setup["store"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("tfstate/main.tf")
        body = b'resource "null_resource" "x" { provisioner "local-exec" { command = "touch /tmp/pwned" } }\n'
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    data = _planted(age_keys[1], buf.getvalue())
    import hashlib

    cid = "29991231T235959Z-fedcba"
    base = layout.config_base(cid)
    store.put_bytes(base + layout.CONFIG_DATA_SUFFIX, data)
    store.put_json(base + layout.MANIFEST_SUFFIX, {"id": cid, "key": base + layout.CONFIG_DATA_SUFFIX,
                                                   "sha256": hashlib.sha256(data).hexdigest(), "bytes_out": len(data),
                                                   "status": "ok", "files": [{"path": "tfstate/main.tf",
                                                                              "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}]})
    out = tmp_path / "rebuild"
    code = main.main(["--env-file", setup["env_file"], "config", "extract", "--backup", cid, "--to", str(out),
                     "--identity", setup["identity"]])
    text = " ".join(capsys.readouterr().err.split())
    assert code != 0 and "not signed by a trusted key" in text and not out.exists(), text
    code = main.main(["--env-file", setup["env_file"], "config", "extract", "--backup", "latest", "--to", str(out),
                     "--identity", setup["identity"]])
    text = " ".join(capsys.readouterr().err.split())
    assert code != 0 and "none signed by config-backup" in text and not out.exists(), text


def test_verify_full_refuses_a_server_with_another_certificate(ssl_pg: PgServer, make_env: Any, tmp_path: Path,
                                                              s3_client: Any, bucket: str) -> None:
    """The operator's sslmode reaches pg_dump too; a server that is not the one the CA vouches for is refused."""
    from drkit_dev.probeservers import self_signed

    name = f"tls_{uuid.uuid4().hex[:6]}"
    ssl_pg.create_database(name)
    try:
        _, other_ca = self_signed(1, tmp_path)  # a CA that did not sign the server's certificate
        wrong = ssl_pg.url(name) + f"?sslmode=verify-full&sslrootcert={tmp_path / 'cert.pem'}"
        result = handle("db-backup", db_backup.run, {}, None, make_env({"app": wrong.replace("127.0.0.1", "localhost")}))
        assert result["ok"] is False and "certificate verify failed" in result["databases"][0]["error"], result
        assert keys(s3_client, bucket, "db/") == []
        right = ssl_pg.url(name) + f"?sslmode=verify-full&sslrootcert={ssl_pg.datadir / 'server.crt'}"
        result = handle("db-backup", db_backup.run, {}, None, make_env({"app": right.replace("127.0.0.1", "localhost")}))
        assert result["ok"], result
        assert SPACES_SECRET not in json.dumps(result)
    finally:
        ssl_pg.drop_database(name)
