"""docs/restore-standard-tools.md, executed verbatim.

The blocks marked *run* are joined into one bash script; only the first (what to restore, where,
with which credentials) is replaced by the stand-ins' values. Backups of PostgreSQL 15 and 18
servers are restored into PostgreSQL 15 and 18 targets and compared with their source; a tampered
object must leave no database and no plaintext behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import PGBIN, ROOT, SPACES_SECRET, fill_rich, table_fingerprints
from drkit.functions import db_backup
from drkit.platform.runtime import handle
from drkit_dev.keys import signing_env, signing_pair
from drkit_dev.pgserver import PgServer, embedded_bindir, installed_bindirs
from drkit_dev.s3server import S3Server

GUIDE = ROOT / "docs" / "restore-standard-tools.md"


def guide_blocks() -> list[str]:
    """The bash blocks marked *run*, in order."""
    text = GUIDE.read_text()
    return re.findall(r"^\*run[^*\n]*\*\n```bash\n(.*?)^```", text, flags=re.M | re.S)


def test_the_guide_has_its_steps() -> None:
    blocks = guide_blocks()
    assert len(blocks) == 5, "settings, download+check, decrypt, create, restore"
    assert blocks[0].startswith("set -euo pipefail") and "trap cleanup EXIT" in blocks[0]
    assert "sha256sum --check" in blocks[1] and "createdb --template=template0" in blocks[3]
    assert "--single-transaction" in blocks[4]


def _tools() -> dict[str, str]:
    missing = [t for t in ("age", "zstd", "minisign", "s3cmd", "sha256sum", "awk") if not shutil.which(t, path=_path())]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/test installs age, zstd and minisign as root; s3cmd is "
                    "in the venv)")
    return {}


def _path() -> str:
    venv_bin = str(Path(sys.executable).parent)
    # pg_restore/psql 18 first (drkit's vendored client, as the guide offers), then createdb/dropdb from
    # an installed client (SSL-capable; the embedded server's own have no SSL), then the CLIs
    installed = installed_bindirs()
    clients = str(installed[max(installed)]) if installed else str(embedded_bindir())
    return ":".join([str(PGBIN), clients, venv_bin, "/usr/local/bin", "/usr/bin", "/bin"])


def _settings(s3: S3Server, bucket: str, backup: str, identity: Path, target: PgServer, new_db: str) -> str:
    endpoint = s3.endpoint.removeprefix("http://")
    ssl = (f"export PGSSLMODE=verify-ca PGSSLROOTCERT={target.datadir / 'server.crt'}" if target.ssl
           else "export PGSSLMODE=disable")
    return f"""set -euo pipefail
umask 077
ENDPOINT={endpoint}
BUCKET={bucket}
BACKUP={backup}
IDENTITY={identity}
TRUSTED_KEY={signing_pair()[1]}
export AWS_ACCESS_KEY_ID=test-key
export AWS_SECRET_ACCESS_KEY={SPACES_SECRET}
export PGHOST=127.0.0.1 PGPORT={target.port} PGUSER=postgres
export PGPASSWORD={target.password}
{ssl}
NEW_DB={new_db}
WORK=$(mktemp -d)
S3="s3cmd --no-ssl --host=$ENDPOINT --host-bucket=$ENDPOINT --access_key=$AWS_ACCESS_KEY_ID --secret_key=$AWS_SECRET_ACCESS_KEY"
CREATED=
cleanup() {{
  status=$?
  rm -rf "$WORK"
  if [ "$status" -ne 0 ] && [ -n "$CREATED" ]; then dropdb --if-exists "$NEW_DB"; fi
  exit "$status"
}}
trap cleanup EXIT
"""


def run_guide(tmp_path: Path, settings: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "restore.sh"
    script.write_text("\n".join([settings, *guide_blocks()[1:]]))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {"PATH": _path(), "HOME": str(tmp_path), "TMPDIR": str(tmpdir), "LC_ALL": "C.UTF-8"}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def sources(pg: PgServer, ssl_pg: PgServer) -> dict[int, tuple[PgServer, str]]:
    out = {}
    for server in (ssl_pg, pg):
        name = f"std_{uuid.uuid4().hex[:8]}"
        server.create_database(name)
        fill_rich(server, name)
        out[server.major] = (server, name)
    return out


def _backup(s3_server: S3Server, bucket: str, age_keys: tuple[str, str], server: PgServer, name: str) -> str:
    env = {"DRKIT_SPACES_BUCKET": bucket, "DRKIT_SPACES_ENDPOINT": s3_server.endpoint, "DRKIT_SPACES_KEY": "test-key",
           "DRKIT_SPACES_SECRET": SPACES_SECRET, **signing_env(), "DRKIT_AGE_RECIPIENTS": age_keys[1], "DRKIT_DATABASES": "app",
           "DRKIT_DB_APP_URL": server.url(name, sslmode="require" if server.ssl else None)}
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"], result
    return str(result["databases"][0]["key"]).removesuffix(".dump.zst.age")


@pytest.mark.parametrize("source_major,target_major", [(15, 15), (15, 18), (18, 15), (18, 18)])
def test_the_guide_restores_exactly(source_major: int, target_major: int, tmp_path: Path, sources: Any,
                                    pg: PgServer, ssl_pg: PgServer, s3_server: S3Server, bucket: str,
                                    age_keys: tuple[str, str]) -> None:
    _tools()
    src, src_db = sources[source_major]
    target = {15: ssl_pg, 18: pg}[target_major]
    backup = _backup(s3_server, bucket, age_keys, src, src_db)
    identity = tmp_path / "identity.txt"
    identity.write_text(age_keys[0] + "\n")
    identity.chmod(0o600)
    new_db = f"restored_{uuid.uuid4().hex[:8]}"
    proc = run_guide(tmp_path, _settings(s3_server, bucket, backup, identity, target, new_db))
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert table_fingerprints(target, new_db) == table_fingerprints(src, src_db)
        assert not [p for p in (tmp_path / "tmp").iterdir()], "the working folder must be gone"
    finally:
        target.drop_database(new_db)


@pytest.mark.parametrize("lie", ["object", "object_and_manifest"])
def test_a_tampered_object_leaves_nothing_behind(lie: str, tmp_path: Path, sources: Any, ssl_pg: PgServer,
                                                 s3_server: S3Server, s3_client: Any, bucket: str,
                                                 age_keys: tuple[str, str]) -> None:
    """A flipped byte at 60 %: the checksum stops it; with a manifest rewritten to match, its signature does."""
    import hashlib

    _tools()
    src, src_db = sources[18]
    backup = _backup(s3_server, bucket, age_keys, src, src_db)
    data = bytearray(s3_client.get_object(Bucket=bucket, Key=f"{backup}.dump.zst.age")["Body"].read())
    data[int(len(data) * 0.6)] ^= 0x01
    s3_client.put_object(Bucket=bucket, Key=f"{backup}.dump.zst.age", Body=bytes(data))
    if lie == "object_and_manifest":
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=f"{backup}.manifest.json")["Body"].read())
        manifest["sha256"] = hashlib.sha256(data).hexdigest()
        s3_client.put_object(Bucket=bucket, Key=f"{backup}.manifest.json", Body=json.dumps(manifest).encode())
    identity = tmp_path / "identity.txt"
    identity.write_text(age_keys[0] + "\n")
    new_db = f"restored_{uuid.uuid4().hex[:8]}"
    proc = run_guide(tmp_path, _settings(s3_server, bucket, backup, identity, ssl_pg, new_db))
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert ("FAILED" in said) if lie == "object" else ("Signature verification failed" in said), said
    with ssl_pg.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (new_db,)).fetchone()[0] == 0
    assert not [p for p in (tmp_path / "tmp").iterdir()], "no plaintext or download left behind"
