"""config-backup's pure parts: DNS records (diff, zone file, restore plan), drift, source parsing, archives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.configbackup import archive, extract, inventory
from drkit.configbackup.sources import parse_sources
from drkit.core.errors import ConfigError, CryptoError, IntegrityError
from drkit.crypto import encryption
from drkit.policy import dns_records, drift


def rec(t: str, name: str, data: str, ttl: int = 300, rid: int | None = None, **kw: Any) -> dict[str, Any]:
    r = {"type": t, "name": name, "data": data, "ttl": ttl, "priority": None, "port": None, "weight": None,
         "flags": None, "tag": None, **kw}
    if rid is not None:
        r["id"] = rid
    return r


# -- DNS diff ----------------------------------------------------------------------------------

def test_a_changed_address_reads_as_one_change() -> None:
    out = dns_records.changes("example.net", [rec("A", "erp", "1.2.3.4")], [rec("A", "erp", "5.6.7.8")])
    assert [c["text"] for c in out] == ["A erp.example.net 1.2.3.4 → 5.6.7.8"]


def test_ttl_only_added_removed_and_round_robin() -> None:
    old = [rec("A", "www", "10.0.0.1"), rec("A", "www", "10.0.0.2"), rec("A", "www", "10.0.0.3"),
           rec("TXT", "@", "v=spf1 -all", 3600), rec("CNAME", "old", "x.example.net.")]
    new = [rec("A", "www", "10.0.0.1"), rec("A", "www", "10.0.0.9"), rec("A", "www", "10.0.0.3"),
           rec("TXT", "@", "v=spf1 -all", 60), rec("MX", "@", "mail.example.net", 300, priority=10)]
    texts = [c["text"] for c in dns_records.changes("example.net", old, new)]
    assert texts == ["A www.example.net 10.0.0.2 → 10.0.0.9", "- CNAME old.example.net x.example.net.",
                     "+ MX example.net 10 mail.example.net", "TXT example.net ttl 3600 → 60"]
    assert dns_records.changes("example.net", old, list(reversed(old))) == []  # order never matters


def test_zone_file() -> None:
    long_txt = "v=DKIM1; k=rsa; p=" + "A" * 400
    z = dns_records.zone_file("example.net", [
        rec("SOA", "@", "1800", 1800), rec("NS", "@", "ns1.digitalocean.com", 1800), rec("A", "@", "203.0.113.1"),
        rec("CNAME", "www", "@"), rec("TXT", "mail._domainkey", long_txt), rec("TXT", "@", 'say "hi"'),
        rec("MX", "@", "mail.example.net", priority=10), rec("AAAA", "v6", "2001:db8::1")], 1800)
    lines = z.splitlines()
    assert "$ORIGIN example.net." in lines and "$TTL 1800" in lines
    assert "@\t1800\tIN\tNS\tns1.digitalocean.com." in lines and "@\t300\tIN\tA\t203.0.113.1" in lines
    assert "www\t300\tIN\tCNAME\texample.net." in lines and "@\t300\tIN\tMX\t10 mail.example.net." in lines
    assert '@\t300\tIN\tTXT\t"say \\"hi\\""' in lines
    dkim = next(x for x in lines if x.startswith("mail._domainkey"))
    parts = dkim.split("\t")[-1]
    assert parts.count('"') == 4 and all(len(p) <= 255 for p in parts.strip('"').split('" "'))
    assert any(x.startswith("; @ 1800 IN SOA") for x in lines)  # DO's SOA is not a usable record


# -- restore plan ------------------------------------------------------------------------------

def test_restore_plan_keeps_updates_creates_and_leaves_extras() -> None:
    backup = [rec("A", "erp", "203.0.113.10"), rec("A", "www", "203.0.113.11"), rec("MX", "@", "mail", priority=10),
              rec("SOA", "@", "1800"), rec("NS", "@", "ns1.digitalocean.com")]
    current = [rec("A", "erp", "192.0.2.66", 60, rid=1), rec("A", "www", "203.0.113.11", rid=2),
               rec("A", "rogue", "192.0.2.99", rid=3), rec("SOA", "@", "1800", rid=4)]
    steps = dns_records.restore_plan(backup, current)
    by = {(s.action, s.record["name"], s.record["type"]) for s in steps}
    assert ("update", "erp", "A") in by and ("keep", "www", "A") in by and ("create", "@", "MX") in by
    assert ("skip", "rogue", "A") in by and ("skip", "@", "SOA") in by and ("skip", "@", "NS") in by
    update = next(s for s in steps if s.action == "update")
    assert update.current_id == 1
    deleting = dns_records.restore_plan(backup, current, delete_extra=True)
    assert [s.current_id for s in deleting if s.action == "delete"] == [3]


def _apply(current: list[dict[str, Any]], steps: list[dns_records.Step]) -> list[dict[str, Any]]:
    live = {r["id"]: dict(r) for r in current}
    next_id = 10_000
    for s in steps:
        if s.action == "create":
            next_id += 1
            live[next_id] = {**dns_records.api_body(s.record), "id": next_id}
        elif s.action == "update":
            live[s.current_id] = {**dns_records.api_body(s.record), "id": s.current_id}  # type: ignore[index]
        elif s.action == "delete":
            del live[s.current_id]  # type: ignore[arg-type]
    return list(live.values())


records = st.builds(lambda t, n, d, ttl: rec(t, n, d, ttl), st.sampled_from(["A", "TXT", "CNAME", "NS"]),
                    st.sampled_from(["@", "www", "erp", "api"]), st.sampled_from(["1", "2", "3"]),
                    st.sampled_from([60, 300]))


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=8), st.lists(records, max_size=8), st.booleans())
def test_applying_a_plan_restores_every_record_and_a_second_plan_is_empty(backup: list[dict[str, Any]],
                                                                          current: list[dict[str, Any]],
                                                                          delete_extra: bool) -> None:
    current = [{**r, "id": i} for i, r in enumerate(current, 1)]
    after = _apply(current, dns_records.restore_plan(backup, current, delete_extra=delete_extra))
    wanted = [r for r in backup if not dns_records.managed_by_do(r)]
    values = [tuple(sorted(dns_records.normalize(r).items(), key=str)) for r in after]
    for r in wanted:  # every backed-up record is live (as a multiset)
        key = tuple(sorted(dns_records.normalize(r).items(), key=str))
        assert key in values
        values.remove(key)
    assert not [s for s in dns_records.restore_plan(backup, after, delete_extra=delete_extra)
                if s.action in ("create", "update", "delete")]
    # managed records are never written
    touched = [s for s in dns_records.restore_plan(backup, current, delete_extra=delete_extra)
               if s.action in ("create", "update", "delete")]
    assert not [s for s in touched if dns_records.managed_by_do(s.record)]


# -- drift ---------------------------------------------------------------------------------------

def _m(mid: str, units: dict[str, str], files: dict[str, str], details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": mid,
            "sources": [{"name": u, "status": st_, "details": (details or {}).get(u, {})} for u, st_ in units.items()],
            "files": [{"path": p, "sha256": h, "source": p.split("/")[0], "size": 1} for p, h in files.items()]}


def test_drift_compares_each_unit_with_its_own_last_success() -> None:
    prev = _m("A", {"infra": "ok", "grafana": "ok"}, {"infra/a": "1", "infra/b": "2", "grafana/d": "9"},
              {"infra": {}})
    cur = _m("C", {"infra": "ok", "grafana": "failed", "rules": "ok"}, {"infra/a": "1", "infra/b": "3", "infra/c": "4",
                                                                         "rules/r": "5"})
    report = drift.compare(cur, {"infra": prev})
    assert report["files"] == {"infra": {"added": ["infra/c"], "removed": [], "changed": ["infra/b"]}}
    assert report["not_compared"] == {"grafana": "failed in this run"} and report["new_units"] == ["rules"]
    assert report["summary"].startswith("drift: files: 1 changed, 1 added, 0 removed")
    same = drift.compare(prev, {"infra": prev, "grafana": prev})
    assert same["summary"] == "no changes since A" and not same["changed"]


def test_firewall_rule_lines_and_changes() -> None:
    fw = {"inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["198.51.100.7/32"],
                                                                          "tags": []}}],
          "outbound_rules": [{"protocol": "icmp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0"]}}]}
    lines = inventory.firewall_rules(fw)
    assert lines == ["inbound tcp 22 from addresses 198.51.100.7/32", "outbound icmp 0 to addresses 0.0.0.0/0"]
    out = drift.firewall_changes({"web": lines, "old": []}, {"web": lines[:1] + ["inbound tcp 5432 from tags prod"],
                                                             "new": []})
    assert [c["text"] for c in out] == ["firewall new added (0 rules)", "firewall old removed",
                                        "firewall web: + inbound tcp 5432 from tags prod",
                                        "firewall web: - outbound icmp 0 to addresses 0.0.0.0/0"]


def test_database_secrets_are_removed() -> None:
    cluster = {"connection": {"uri": "postgresql://doadmin:pw@h/db", "password": "pw", "host": "h"},
               "users": [{"name": "doadmin", "password": "pw"}], "private_connection": None}
    clean = inventory.redact_secrets(cluster)
    assert "pw" not in json.dumps(clean) and clean["connection"]["host"] == "h"


# -- sources -----------------------------------------------------------------------------------

def test_sources_are_parsed_with_defaults_and_every_problem_named() -> None:
    env = {"DRKIT_DO_TOKEN": "dop_v1_x", "DRKIT_GITHUB_TOKEN": "ghp_x", "DRKIT_SPACES_KEY": "k",
           "DRKIT_SPACES_SECRET": "s"}
    good = parse_sources(json.dumps([{"type": "digitalocean", "include": ["domains"]},
                                     {"type": "github", "name": "infra", "repo": "acme/infra"},
                                     {"type": "s3", "name": "tf", "bucket": "acme-tf"}]), env)
    assert [s.name for s in good] == ["digitalocean", "infra", "tf"]
    assert good[1].opt("api_url") == "https://api.github.com" and good[1].secrets["token_env"].reveal() == "ghp_x"
    assert "ghp_x" not in repr(good[1])
    with pytest.raises(ConfigError) as err:
        parse_sources(json.dumps([{"type": "digitalocean", "include": ["dropletz"]},
                                  {"type": "github", "name": "Bad Name", "repo": "a/b"},
                                  {"type": "http", "name": "x", "url": "https://h/x", "path": "../etc/passwd"},
                                  {"type": "s3", "name": "tf", "bucket": "acme-tf", "max_objects": 0, "colour": 1}]), {})
    text = " ".join(err.value.problems)
    for expected in ("include must be a list", "DRKIT_DO_TOKEN is not set", "\"name\" is required",
                     "path must be a relative", "max_objects must be a positive", "unknown field(s) colour",
                     "DRKIT_SPACES_KEY is not set"):
        assert expected in text, text
    for raw in ("", "{", "{}", "[]"):
        with pytest.raises(ConfigError):
            parse_sources(raw, env)


def test_storage_sources_name_their_endpoint_buckets_and_keys() -> None:
    env = {"DRKIT_STORAGE_S3_KEY": "k", "DRKIT_STORAGE_S3_SECRET": "s"}
    (good,) = parse_sources(json.dumps([{"type": "storage", "name": "files", "region": "eu-central-1",
                                         "endpoint": "https://abc.supabase.co/storage/v1/s3"}]), env)
    assert good.opt("max_objects") == 200_000 and good.secrets["secret_env"].reveal() == "s"
    assert good.describe() == "files (storage: https://abc.supabase.co/storage/v1/s3 (all buckets))"
    with pytest.raises(ConfigError) as err:
        parse_sources(json.dumps([{"type": "storage", "name": "files", "endpoint": "http://abc.supabase.co/s3",
                                   "buckets": [], "region": "EU"}]), {})
    text = " ".join(err.value.problems)
    for expected in ("endpoint must be the https:// S3 endpoint", "buckets must be a non-empty list",
                     "region must be a region name", "DRKIT_STORAGE_S3_KEY is not set", "DRKIT_STORAGE_S3_SECRET"):
        assert expected in text, text


# -- archives ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keypair() -> tuple[Any, Any]:
    ident, recipient = encryption.generate_identity()
    return encryption.parse_identity(ident), encryption.parse_recipients([recipient])


class Sink(io.BytesIO):
    pass


class Failing:
    def __init__(self, good: bytes):
        self.good = good

    def read(self, n: int) -> bytes:
        if self.good:
            out, self.good = self.good[:n], self.good[n:]
            return out
        raise ConnectionResetError("peer went away")


def _write(keypair: tuple[Any, Any], fill: Any) -> tuple[bytes, list[dict[str, Any]]]:
    sink = Sink()
    with archive.ArchiveWriter(sink, keypair[1], zstd_level=3) as w:
        fill(w)
        w.finish()
    return sink.getvalue(), [f.to_dict() for f in w.files]


def test_archive_round_trip_with_an_interrupted_file(keypair: tuple[Any, Any], tmp_path: Path) -> None:
    def fill(w: archive.ArchiveWriter) -> None:
        w.add_bytes("a/one.txt", b"one\n", "a")
        with pytest.raises(archive.SourceError, match="reading failed after part of it"):
            w.add_stream("a/big.bin", 5000, Failing(b"x" * 1234), "a")
        w.add_stream("b/exec.sh", 3, io.BytesIO(b"#!\n"), "b", mode=0o755)
        w.add_symlink("b/link", "exec.sh", "b")
        with pytest.raises(archive.SourceError, match="ended after 2 of 10"):
            w.add_stream("b/short", 10, io.BytesIO(b"ab"), "b")

    data, files = _write(keypair, fill)
    assert [f["path"] for f in files if f.get("incomplete")] == ["a/big.bin", "b/short"]
    # a valid tar, sizes as declared
    plain = io.BytesIO()
    encryption.decrypt_stream(io.BytesIO(data), plain, [keypair[0]])
    tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(plain.getvalue())
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert [(m.name, m.size) for m in tar] == [("a/one.txt", 4), ("a/big.bin", 5000), ("b/exec.sh", 3),
                                                   ("b/link", 0), ("b/short", 10)]
    out = tmp_path / "x"
    done = extract.extract(io.BytesIO(data), files, [keypair[0]], out)
    assert done.files == 3 and sorted(done.skipped) == ["a/big.bin", "b/short"]
    assert (out / "a/one.txt").read_bytes() == b"one\n" and os.access(out / "b/exec.sh", os.X_OK)
    assert not (out / "a/big.bin").exists()
    assert files[0]["sha256"] == hashlib.sha256(b"one\n").hexdigest()
    # only a subtree
    sub = extract.extract(io.BytesIO(data), files, [keypair[0]], tmp_path / "sub", only=["b"])
    assert sub.files == 2 and not (tmp_path / "sub/a").exists()


def test_extract_refuses_tampering_foreign_entries_and_a_full_directory(keypair: tuple[Any, Any],
                                                                       tmp_path: Path) -> None:
    data, files = _write(keypair, lambda w: [w.add_bytes(f"s/f{i}", os.urandom(70_000), "s") for i in range(3)])
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(CryptoError):
        extract.extract(io.BytesIO(bytes(bad)), files, [keypair[0]], tmp_path / "t1")
    with pytest.raises(CryptoError):
        extract.extract(io.BytesIO(data[:-100]), files, [keypair[0]], tmp_path / "t2")
    with pytest.raises(IntegrityError, match="does not list"):
        extract.extract(io.BytesIO(data), files[1:], [keypair[0]], tmp_path / "t3")
    with pytest.raises(IntegrityError, match="not in the archive"):
        extract.extract(io.BytesIO(data), files + [{"path": "s/ghost", "size": 1, "sha256": "0" * 64}],
                        [keypair[0]], tmp_path / "t4")
    other = encryption.parse_identity(encryption.generate_identity()[0])
    with pytest.raises(CryptoError):
        extract.extract(io.BytesIO(data), files, [other], tmp_path / "t5")
    assert not [p for p in tmp_path.iterdir()]  # nothing left behind by any refusal
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        extract.extract(io.BytesIO(data), files, [keypair[0]], full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_a_path_given_twice_is_refused_before_it_is_written(keypair: tuple[Any, Any], tmp_path: Path) -> None:
    def fill(w: archive.ArchiveWriter) -> None:
        w.add_bytes("s/index.json", b"1", "s")
        with pytest.raises(archive.SourceError, match="twice"):
            w.add_bytes("s/index.json", b"2", "s")
        w.add_bytes("s/other", b"3", "s")

    data, files = _write(keypair, fill)
    assert [f["path"] for f in files] == ["s/index.json", "s/other"]
    assert extract.extract(io.BytesIO(data), files, [keypair[0]], tmp_path / "x").files == 2


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../b", "", "a/\x00b"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(archive.SourceError):
        archive.safe_path(path)
    assert archive.safe_path("./a//b/") == "a/b"


def test_a_dead_encryptor_stops_the_writer(keypair: tuple[Any, Any]) -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise OSError("disk on fire")

    with archive.ArchiveWriter(Broken(), keypair[1]) as w:
        with pytest.raises(Exception, match="disk on fire|encryption failed|writing the archive failed"):
            for i in range(400):
                w.add_bytes(f"f{i}", os.urandom(65536), "s")
        assert w.broken is not None


def _hostile(keypair: tuple[Any, Any], members: list[tarfile.TarInfo]) -> tuple[bytes, list[dict[str, Any]]]:
    """An age+zstd tar built by hand (as an attacker with the public key could), and a manifest naming it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    plain = zstandard.ZstdCompressor().compress(raw.getvalue())
    out = io.BytesIO()
    encryption.encrypt_stream(io.BytesIO(plain), out, keypair[1])
    files = [{"path": m.name, "size": m.size, "sha256": hashlib.sha256(b"x" * m.size).hexdigest(),
              **({"type": "symlink", "target": m.linkname} if m.issym() else {})} for m in members]
    return out.getvalue(), files


def _member(name: str, size: int = 1, link: str | None = None) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.size = size if link is None else 0
    if link is not None:
        m.type, m.linkname = tarfile.SYMTYPE, link
    return m


@pytest.mark.parametrize("members", [
    [_member("../evil")],
    [_member("/tmp/evil")],
    [_member("s/up", link="../../outside")],
    [_member("s/abs", link="/etc/passwd")],
    [_member("s/dir", link="."), _member("s/dir/x")],  # fine: stays inside (control case below)
])
def test_hostile_entries_never_leave_the_destination(keypair: tuple[Any, Any], tmp_path: Path,
                                                     members: list[tarfile.TarInfo]) -> None:
    data, files = _hostile(keypair, members)
    dest = tmp_path / "inner" / "dest"
    if members[0].linkname == ".":
        assert extract.extract(io.BytesIO(data), files, [keypair[0]], dest).files == 2
        return
    with pytest.raises(IntegrityError, match="refusing"):
        extract.extract(io.BytesIO(data), files, [keypair[0]], dest)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inner"]


def test_an_unknown_name_suggests_the_closest_known_one() -> None:
    from drkit.core import suggest

    assert suggest.unknown("database", ["odo"], ["odoo", "superset"]) == (
        "unknown database 'odo' (did you mean 'odoo'?); configured: odoo, superset")
    assert suggest.unknown("database", ["zzz"], ["odoo"]) == "unknown database 'zzz'; configured: odoo"
    assert suggest.unknown("database", ["x"], []) == "unknown database 'x'; configured: none"


def test_a_connection_hint_names_where_the_operator_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from drkit.postgres.connection import describe_pg_error

    refused = OSError('connection to server at "db.example.net", port 5432 failed: Connection refused')
    monkeypatch.delenv("__OW_ACTION_NAME", raising=False)
    assert "reachable from this machine?" in describe_pg_error(refused)
    monkeypatch.setenv("__OW_ACTION_NAME", "/fn-1/dr/db-backup")
    assert "reachable from DigitalOcean Functions?" in describe_pg_error(refused)
