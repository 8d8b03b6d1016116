"""Every restore route is all-or-nothing under injected faults, on PostgreSQL 15 and 18 targets.

Faults at many cut points of a stored backup: a byte flipped at 30 %, 60 % and 97 % and in the last
kilobyte of the object; the object replaced by another whole, valid backup (only the SHA-256 at its
very end tells, after PostgreSQL received all of it: the case the withheld COMMIT exists for); the object cut exactly at an age chunk boundary (with a manifest that lies
about it); the archive cut exactly at a row boundary inside COPY data and inside a large object, and
a zstd frame cut short (each re-encrypted with a matching manifest, so that every upstream check
passes and only PostgreSQL's tools or drkit's gate can notice); and SIGTERM / SIGINT of `drkit
restore` mid-stream. Routes: streamed and --download-to; targets: a new database and a --force
replacement. Each must fail with the right diagnosis and leave the target exactly as it was (no new
database; the old one's contents unchanged), no scratch database, no plaintext file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyrage
import pytest
import zstandard

from conftest import ROOT, SPACES_SECRET, fill_rich, keys, table_fingerprints
from drkit.cli import main
from drkit.crypto import encryption
from drkit_dev.pgserver import PgServer
from support.faultproxy import FaultProxy

AGE_CHUNK = 64 * 1024 + 16
LARGE_OBJECT = b"L" * 200_000


@pytest.fixture(scope="module")
def source(pg: PgServer) -> str:
    name = f"faults_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    fill_rich(pg, name)
    pg.execute(f"SELECT lo_from_bytea(0, '\\x{LARGE_OBJECT.hex()}'::bytea)", name)
    return name


@pytest.fixture
def setup(tmp_path: Path, make_env: Any, pg: PgServer, source: str, age_keys: tuple[str, str],
          s3_client: Any, bucket: str) -> dict[str, Any]:
    env = make_env({"app": pg.url(source)}, DRKIT_DB_APP_COUNT_TABLES="*")
    env_file = tmp_path / "drkit.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    assert main.main(["--env-file", str(env_file), "backup"]) == 0
    (key,) = [k["Key"] for k in s3_client.list_objects_v2(Bucket=bucket, Prefix="db/app/")["Contents"]
              if k["Key"].endswith(".dump.zst.age")]
    return {"env": env, "env_file": str(env_file), "identity": str(identity), "key": key,
            "manifest_key": key.replace(".dump.zst.age", ".manifest.json")}


def _get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _repack(s3: Any, bucket: str, setup: dict[str, Any], age_keys: tuple[str, str], archive: bytes | None = None,
            stored: bytes | None = None) -> None:
    """Store a new object (from a plaintext archive, or ciphertext as is) with a manifest that matches it."""
    if stored is None:
        assert archive is not None
        compressed = zstandard.ZstdCompressor(level=1).compress(archive)
        stored = pyrage.encrypt(compressed, [pyrage.x25519.Recipient.from_str(age_keys[1])])
    s3.put_object(Bucket=bucket, Key=setup["key"], Body=stored)
    manifest = json.loads(_get(s3, bucket, setup["manifest_key"]))
    manifest["sha256"], manifest["bytes_out"] = hashlib.sha256(stored).hexdigest(), len(stored)
    _sign(setup, manifest)


def _sign(setup: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Store a manifest signed with the writers' key: these faults are past the signature (a writer's bug, or
    an attacker who has the signing key); the engine must still commit nothing."""
    from drkit.storage import signed
    from drkit_dev.keys import store_of

    signed.put_json(store_of(setup["env"], "db-backup"), setup["manifest_key"], manifest)


def _plaintext(s3: Any, bucket: str, setup: dict[str, Any], identity: str) -> bytes:
    out = io.BytesIO()
    encryption.decrypt_stream(io.BytesIO(_get(s3, bucket, setup["key"])), out, [encryption.parse_identity(identity)])
    return zstandard.ZstdDecompressor().decompressobj().decompress(out.getvalue())


def inject(fault: str, s3: Any, bucket: str, setup: dict[str, Any], age_keys: tuple[str, str]) -> str:
    """Damage the stored backup; return the words the diagnosis must hold."""
    stored = bytearray(_get(s3, bucket, setup["key"]))
    if fault.startswith("flip-"):
        at = len(stored) - 300 if fault == "flip-last-kb" else int(len(stored) * int(fault[5:]) / 100)
        stored[at] ^= 0x04
        s3.put_object(Bucket=bucket, Key=setup["key"], Body=bytes(stored))  # the manifest still tells the truth
        return "SHA-256 does not match"
    if fault == "age-chunk-boundary":
        header_end = stored.index(b"\n", stored.index(b"\n---") + 1) + 1 + 16  # header, then the 16-byte nonce
        cut = header_end + AGE_CHUNK * ((len(stored) - header_end) // AGE_CHUNK // 2)
        _repack(s3, bucket, setup, age_keys, stored=bytes(stored[:cut]))
        return "decryption failed"
    archive = _plaintext(s3, bucket, setup, age_keys[0])
    if fault == "replaced-object":  # a whole, valid backup, but not the one the manifest describes:
        compressed = zstandard.ZstdCompressor(level=1).compress(archive)  # only the SHA-256 at the end tells
        other = pyrage.encrypt(compressed, [pyrage.x25519.Recipient.from_str(age_keys[1])])
        manifest = json.loads(_get(s3, bucket, setup["manifest_key"]))
        manifest["bytes_out"] = len(other)  # the size agrees too
        _sign(setup, manifest)
        s3.put_object(Bucket=bucket, Key=setup["key"], Body=other)
        return "SHA-256 does not match"
    if fault == "row-boundary":
        row = archive.index(b"customer 1500\t")  # a row in the middle of customers' COPY data
        cut = archive.index(b"\n", row) + 1  # exactly at the end of that row
        _repack(s3, bucket, setup, age_keys, archive=archive[:cut])
        return "pg_restore"
    if fault == "inside-large-object":
        cut = archive.index(LARGE_OBJECT[:1000]) + len(LARGE_OBJECT) // 2
        _repack(s3, bucket, setup, age_keys, archive=archive[:cut])
        return "pg_restore"
    if fault == "zstd-cut":
        compressed = zstandard.ZstdCompressor(level=1).compress(archive)
        cut_stream = compressed[: len(compressed) - 100]
        _repack(s3, bucket, setup, age_keys,
                stored=pyrage.encrypt(cut_stream, [pyrage.x25519.Recipient.from_str(age_keys[1])]))
        return "zstd"
    raise AssertionError(fault)


FAULTS = ["flip-30", "flip-60", "flip-97", "flip-last-kb", "age-chunk-boundary", "row-boundary",
          "inside-large-object", "zstd-cut", "replaced-object"]
RESULTS: list[tuple[str, str, int, str, str]] = []


def _server(major: int, pg: PgServer, ssl_pg: PgServer) -> PgServer:
    return {18: pg, 15: ssl_pg}[major]


def _url(server: PgServer, name: str) -> str:
    return server.url(name, sslmode="require" if server.ssl else None)


def _databases(server: PgServer, like: str) -> list[str]:
    with server.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)).fetchall()]


def _prepare_target(server: PgServer, mode: str) -> tuple[str, Any]:
    target = f"t{mode[0]}_{uuid.uuid4().hex[:8]}"
    if mode == "replace":
        server.create_database(target)
        server.execute("CREATE TABLE precious (v text); INSERT INTO precious SELECT 'row ' || g "
                       "FROM generate_series(1, 100) g; SELECT lo_from_bytea(4242, 'old object'::bytea)", target)
        with server.connect(target) as conn:
            before = conn.execute("SELECT string_agg(v, ',' ORDER BY v), (SELECT lo_get(4242)) FROM precious").fetchone()
        return target, before
    return target, None


def _assert_unchanged(server: PgServer, target: str, mode: str, before: Any, tmp_path: Path) -> None:
    if mode == "new":
        assert _databases(server, target) == [], "a database drkit created must be gone"
    else:
        with server.connect(target) as conn:
            after = conn.execute("SELECT string_agg(v, ',' ORDER BY v), (SELECT lo_get(4242)) FROM precious").fetchone()
            assert after == before, "the database to be replaced must keep exactly its old contents"
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'customers'").fetchone()[0] == 0
    assert _databases(server, f"{target[:36]}\\_drkit\\_%") == [], "no scratch database may be left"
    assert _databases(server, f"{target[:36]}\\_before\\_%") == [], "nothing was replaced, so nothing is kept"
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith((".dump", ".partial"))]
    assert left == [], f"plaintext left on disk: {left}"


@pytest.mark.parametrize("major", [18, 15])
@pytest.mark.parametrize("route", ["stream", "download"])
@pytest.mark.parametrize("mode", ["new", "replace"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_backup_leaves_the_target_exactly_as_it_was(fault: str, mode: str, route: str, major: int,
                                                             setup: dict[str, Any], tmp_path: Path, pg: PgServer,
                                                             ssl_pg: PgServer, s3_client: Any, bucket: str,
                                                             age_keys: tuple[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    server = _server(major, pg, ssl_pg)
    diagnosis = inject(fault, s3_client, bucket, setup, age_keys)
    target, before = _prepare_target(server, mode)
    argv = ["--env-file", setup["env_file"], "restore", "--db", "app", "--target", _url(server, target),
            "--identity", setup["identity"], "--force", "--yes-i-know", target]
    if route == "download":
        argv += ["--download-to", str(tmp_path / "app.dump"), "--jobs", "2"]
    try:
        code = main.main(argv)
        err = " ".join(capsys.readouterr().err.split())
        assert code != 0, f"{fault}: the restore must fail"
        assert diagnosis in err, f"{fault}: {err[-600:]}"
        if route == "stream" and fault not in ("row-boundary", "inside-large-object"):
            assert "nothing was committed" in err or "nothing was restored" in err, err[-600:]
        _assert_unchanged(server, target, mode, before, tmp_path)
        RESULTS.append((fault, route, major, mode, "target unchanged"))
    finally:
        for name in _databases(server, f"{target[:36]}%"):
            server.drop_database(name)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["new", "replace"])
def test_stopping_drkit_mid_restore_leaves_the_target_as_it_was(signum: int, mode: str, setup: dict[str, Any],
                                                                tmp_path: Path, pg: PgServer, s3_server: Any,
                                                                s3_client: Any, bucket: str) -> None:
    proxy = FaultProxy(s3_server.endpoint, slow=(".dump.zst.age", 0.15)).start()
    target, before = _prepare_target(pg, mode)
    env_file = tmp_path / "slow.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**setup["env"], "DRKIT_SPACES_ENDPOINT": proxy.endpoint}.items()))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "DRKIT_PG_BIN": str(ROOT / "build" / "pgbin" / "bin")}
    proc = subprocess.Popen([sys.executable, "-m", "drkit.cli", "--env-file", str(env_file), "restore", "--db", "app",
                             "--target", pg.url(target), "--identity", setup["identity"], "--force", "--yes-i-know",
                             target], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job starts with SIGINT ignored, and Python then keeps it ignored:
                            # the operator's terminal gives Ctrl-C its default meaning, so does the test
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while proxy.sent < 64 * 1024 and time.monotonic() < deadline:  # rows are flowing into PostgreSQL
            time.sleep(0.02)
        assert proc.poll() is None and proxy.sent >= 64 * 1024, "the restore must be under way"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "interrupted" in err and SPACES_SECRET not in out + err
        _assert_unchanged(pg, target, mode, before, tmp_path)
        events = [e for e in keys(s3_client, bucket, "audit/") if "cli.interrupted" in e]
        assert events, "an interrupted restore leaves an audit event"
        RESULTS.append((signal.Signals(signum).name, "stream", 18, mode, "target unchanged"))
    finally:
        proc.kill()
        proxy.stop()
        for name in _databases(pg, f"{target[:36]}%"):
            pg.drop_database(name)


def test_a_sound_backup_replaces_the_target_and_keeps_the_old_one(setup: dict[str, Any], pg: PgServer,
                                                                  source: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The control case for the faults above: the same command, a sound backup, PostgreSQL 18."""
    target, before = _prepare_target(pg, "replace")
    try:
        code = main.main(["--env-file", setup["env_file"], "restore", "--db", "app", "--target", pg.url(target),
                         "--identity", setup["identity"], "--force", "--yes-i-know", target])
        out = " ".join(capsys.readouterr().out.split())
        assert code == 0, out
        assert table_fingerprints(pg, target) == table_fingerprints(pg, source)
        (kept,) = _databases(pg, f"{target}\\_before\\_%")
        with pg.connect(kept) as conn:
            assert conn.execute("SELECT string_agg(v, ',' ORDER BY v), (SELECT lo_get(4242)) FROM precious").fetchone() \
                == before
        with pg.connect(target) as conn:
            assert conn.execute("SELECT length(lo_get(oid)) FROM pg_largeobject_metadata").fetchall() == \
                [(len(LARGE_OBJECT),)]
    finally:
        for name in _databases(pg, f"{target[:36]}%"):
            pg.drop_database(name)


@pytest.mark.parametrize("major", [18, 15])
@pytest.mark.parametrize("fault", FAULTS)
def test_the_engine_commits_nothing_unless_every_check_passed(fault: str, major: int, setup: dict[str, Any],
                                                              pg: PgServer, ssl_pg: PgServer, s3_client: Any,
                                                              bucket: str, age_keys: tuple[str, str]) -> None:
    """The streamed engine alone, into an existing empty database (the route for a role that may not
    create databases): no scratch database to drop, so only the one transaction that drkit commits keeps
    it empty (the old `psql --single-transaction` route fails the cut-at-a-row-boundary cases here)."""
    from drkit.core.errors import DrkitError
    from drkit.platform.config import Config
    from drkit.postgres import restore
    from drkit.storage import catalog
    from drkit_dev.keys import store_of

    server = _server(major, pg, ssl_pg)
    inject(fault, s3_client, bucket, setup, age_keys)
    target = f"engine_{uuid.uuid4().hex[:8]}"
    server.create_database(target)
    try:
        cfg = Config.from_env({**setup["env"], "DRKIT_DB_APP_URL": _url(server, "postgres")})
        store = store_of(setup["env"])
        entry = catalog.find(store, "latest", "app")
        manifest = catalog.read_manifest(store, entry)
        with pytest.raises(DrkitError):
            restore.restore(store, entry, [encryption.parse_identity(age_keys[0])], cfg.databases["app"], target,
                            manifest=manifest)
        with server.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE n.nspname = 'public'").fetchone()[0] == 0, "nothing may be committed"
            assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 0
        RESULTS.append((fault, "engine", major, "existing empty", "stays empty"))
    finally:
        server.drop_database(target)


def test_a_role_that_may_not_create_databases_gets_a_plan_not_a_half_restore(setup: dict[str, Any], pg: PgServer,
                                                                            source: str,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Managed services: no CREATEDB. A database with tables is refused with what to do; an empty one the
    role owns is restored into directly, in one transaction."""
    role = f"limited_{uuid.uuid4().hex[:6]}"
    busy, empty = f"busy_{uuid.uuid4().hex[:6]}", f"empty_{uuid.uuid4().hex[:6]}"
    pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'limited-Pw-123' NOCREATEDB")
    pg.create_database(busy)
    pg.execute(f"ALTER DATABASE {busy} OWNER TO {role}")
    pg.execute(f"SET ROLE {role}; CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep')", busy)
    pg.create_database(empty)
    pg.execute(f"ALTER DATABASE {empty} OWNER TO {role}; GRANT CREATE ON SCHEMA public TO {role}", empty)
    pg.execute(f"ALTER SCHEMA public OWNER TO {role}", empty)
    url = f"postgresql://{role}:limited-Pw-123@127.0.0.1:{pg.port}/"
    base = ["--env-file", setup["env_file"], "restore", "--db", "app", "--identity", setup["identity"],
            "--no-privileges"]
    try:
        code = main.main([*base, "--target", url + busy, "--force", "--yes-i-know", busy])
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2 and "may not create databases" in err and "Nothing was changed" in err
        with pg.connect(busy) as conn:
            assert conn.execute("SELECT v FROM precious").fetchall() == [("keep",)]
        code = main.main([*base, "--target", url + empty])
        out = " ".join(capsys.readouterr().out.split())
        assert code == 0, out
        assert f"restore directly into the existing empty database {empty}" in out
        assert table_fingerprints(pg, empty) == table_fingerprints(pg, source)
    finally:
        for name in (busy, empty):
            pg.drop_database(name)
        pg.execute(f"DROP ROLE {role}")
