"""Put a domain's DNS records back as a config backup recorded them (runbook: DNS lost or damaged).

The backed-up records come from the archive itself (decrypted with the
operator's identity and checked against the manifest), not from the
manifest's summary. The plan is computed first (dns_records.restore_plan) and
shown; applying it re-reads the live records so that a plan made minutes ago
is never applied blindly. Every change is an audit event.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drkit.configbackup import catalog, extract
from drkit.core import log
from drkit.core.errors import ConfigError, DrkitError, IntegrityError
from drkit.digitalocean.api import DoApi
from drkit.policy import dns_records
from drkit.storage import audit
from drkit.storage.store import Store
from drkit.storage.transfer import VerifyingReader, explain_crypto_failure

FUNCTION = "cli"


@dataclass
class Plan:
    domain: str
    backup_id: str
    domain_exists: bool
    steps: list[dns_records.Step]
    backup: list[dict[str, Any]]  # the backed-up records the steps were planned from
    delete_extra: bool = False

    @property
    def changes(self) -> list[dns_records.Step]:
        return [s for s in self.steps if s.action in ("create", "update", "delete")]

    def lines(self) -> list[str]:
        out = [] if self.domain_exists else [f"create domain {self.domain} (it does not exist now)"]
        return out + [s.text(self.domain) for s in self.steps]

    def summary(self) -> str:
        count = {a: sum(1 for s in self.steps if s.action == a) for a in ("create", "update", "delete", "keep", "skip")}
        return (f"{self.domain} from config backup {self.backup_id}: {count['create']} to create, "
                f"{count['update']} to update, {count['delete']} to delete, {count['keep']} already right, "
                f"{count['skip']} left alone" + ("" if self.domain_exists else "; the domain is created first"))


def read_member(store: Store, entry: catalog.ConfigEntry, manifest: dict[str, Any], path: str,
                identities: Sequence[Any]) -> bytes:
    """One small file from a config archive, checked against the manifest (size and SHA-256).

    The archive is read to its end, so its checksum and age's final authentication are
    checked too: a truncated or altered archive is refused.
    """
    info = next((f for f in manifest["files"] if f["path"] == path), None)
    if info is None:
        raise ConfigError(f"config backup {entry.id} has no {path}")
    found: list[bytes] = []

    def consume(tar: tarfile.TarFile) -> None:
        for member in tar:
            if member.name == path and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                found.append(f.read())

    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    try:
        extract.read_tar(reader, identities, consume, explain=lambda: explain_crypto_failure(reader, "no DNS record was changed"))
    finally:
        raw.close()
    data = found[0] if len(found) == 1 else None
    if data is None or len(data) != info["size"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise IntegrityError(f"{path} in config backup {entry.id} does not match its manifest")
    return data


def backed_up_records(store: Store, ref: str, domain: str, identities: Sequence[Any]
                      ) -> tuple[str, list[dict[str, Any]]]:
    entry = catalog.find(store, ref)
    manifest = catalog.read_manifest(store, entry)
    candidates = [f["path"] for f in manifest["files"] if f["path"].endswith(f"/domains/{domain}.records.json")]
    if not candidates:
        have = sorted({f["path"].rsplit("/", 1)[-1].removesuffix(".records.json") for f in manifest["files"]
                       if f["path"].endswith(".records.json")})
        raise ConfigError(f"config backup {entry.id} has no records of {domain}"
                          + (f"; it has: {', '.join(have)}" if have else "; its DigitalOcean domains source did not run"))
    data = read_member(store, entry, manifest, candidates[0], identities)
    records = json.loads(data)
    if not isinstance(records, list):
        raise IntegrityError(f"{candidates[0]} is not a list of records")
    return entry.id, records


def make_plan(api: DoApi, backup_id: str, domain: str, records: list[dict[str, Any]], *,
              delete_extra: bool = False) -> Plan:
    exists = api.get_domain(domain) is not None
    current = api.list_records(domain) if exists else []
    return Plan(domain, backup_id, exists, dns_records.restore_plan(records, current, delete_extra=delete_extra),
                records, delete_extra)


def apply(api: DoApi, store: Store, plan: Plan) -> list[str]:
    """Carry out the plan; return what was done. Stops at the first failure (already-done steps are audited)."""
    done: list[str] = []
    base = {"domain": plan.domain, "config_backup": plan.backup_id}
    if not plan.domain_exists:
        api.create_domain(plan.domain)
        audit.record(store, FUNCTION, "dns.domain.created", base)
        done.append(f"created domain {plan.domain}")
        # DigitalOcean adds its own SOA and NS records: plan again against what exists now
        plan = Plan(plan.domain, plan.backup_id, True, dns_records.restore_plan(
            plan.backup, api.list_records(plan.domain), delete_extra=plan.delete_extra), plan.backup, plan.delete_extra)
    for step in plan.changes:
        text = step.text(plan.domain)
        try:
            if step.action == "create":
                api.create_record_from(plan.domain, dns_records.api_body(step.record))
            elif step.action == "update":
                assert step.current_id is not None
                api.patch_record(plan.domain, int(step.current_id), dns_records.api_body(step.record))
            else:
                assert step.current_id is not None
                api.delete_record(plan.domain, int(step.current_id))
        except DrkitError as exc:
            log.error("dns restore step failed", step=text, error=str(exc))
            raise DrkitError(f"{text}: {exc}; {len(done)} change(s) were made before it (see the audit log); "
                             "run the same command again to finish") from None
        audit.record(store, FUNCTION, f"dns.record.{step.action}d", {**base, "record": step.record,
                                                                        "previous": step.current, "change": text})
        done.append(text)
    return done
