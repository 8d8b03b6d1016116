"""The signed, hash-chained catalog of one writer's backups: what is in the bucket, checked against what should be.

Each new manifest names its predecessor (`chain: {seq, prev: {id, sha256}}`, seq counting up by one),
and the writer keeps a signed head record (`state/catalog/db/<name>.json`, `state/catalog/config.json`)
naming every backup it made and has not deleted, with each manifest's SHA-256, and its recent deletions.
A listing is then read against the head (`view`):

* *trusted*: complete backups the head names, or whose manifest verifies by the writer's key on its own
  (written after the head: a run that died between its manifest and the head; the writer adopts them);
* *untrusted*: complete-looking entries nobody trusted signed: planted. Never counted by retention,
  never restored as `latest`, reported (and removed only by `drkit backups untrusted --delete`);
* *missing*: backups the head names that the bucket no longer has (deleted behind drkit's back);
* *deleting*: backups the writer already removed from its head while their objects are still listed
  (its deletion was interrupted; the next retention run finishes it).

health-probe remembers the highest `seq` it has seen, so a head replaced by an older signed one (a
rollback) is an alert too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from drkit.core.errors import DrkitError
from drkit.core.fields import Fields
from drkit.policy import layout
from drkit.storage import records, signed
from drkit.storage.records import Record, RecordError
from drkit.storage.store import Store

MAX_SEQ = 2**53
KEEP_DELETED = 1000  # the newest deletions the head remembers
VERIFY_READERS = 16


@dataclass(frozen=True)
class Link:
    id: str
    seq: int
    sha256: str  # of the manifest's bytes

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "sha256": self.sha256}

    @classmethod
    def from_fields(cls, f: Fields) -> Link:
        link = cls(f.text("id", max_len=40), f.integer("seq", lo=0, hi=MAX_SEQ), f.text("sha256", max_len=64))
        if not layout.ID_RE.match(link.id):
            raise f.fail("id", f"{link.id!r} is not a backup id")
        f.done()
        return link


@dataclass(frozen=True)
class Gone:
    id: str
    seq: int
    at: dt.datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "at": self.at.isoformat(), "reason": self.reason}

    @classmethod
    def from_fields(cls, f: Fields) -> Gone:
        gone = cls(f.text("id", max_len=40), f.integer("seq", lo=0, hi=MAX_SEQ), f.time("at"),
                   f.text("reason", max_len=500))
        f.done()
        return gone


@dataclass(frozen=True)
class Head(Record):
    """The writer's catalog: every backup it made and has not deleted, newest first."""

    subject: str
    seq: int = 0  # the newest sequence number given out
    live: tuple[Link, ...] = ()
    deleted: tuple[Gone, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "seq": self.seq, "live": [x.to_json() for x in self.live],
                "deleted": [x.to_json() for x in self.deleted]}

    @classmethod
    def from_fields(cls, f: Fields) -> Head:
        head = cls(f.text("subject", max_len=80), f.integer("seq", lo=0, hi=MAX_SEQ),
                   tuple(Link.from_fields(x) for x in f.objects("live", max_items=100_000)),
                   tuple(Gone.from_fields(x) for x in f.objects("deleted", max_items=KEEP_DELETED)))
        if any(x.seq > head.seq for x in head.live):
            raise f.fail("seq", f"{head.seq} is lower than a backup's sequence number it lists")
        return head

    @property
    def newest(self) -> Link | None:
        return max(self.live, key=lambda x: (x.seq, x.id)) if self.live else None

    def ids(self) -> set[str]:
        return {x.id for x in self.live}

    def deleted_ids(self) -> set[str]:
        return {x.id for x in self.deleted}

    def add(self, *links: Link) -> Head:
        have = self.ids()
        new = [x for x in links if x.id not in have]
        live = tuple(sorted((*self.live, *new), key=lambda x: (x.seq, x.id), reverse=True))
        return replace(self, live=live, seq=max([self.seq, *(x.seq for x in new)]))

    def remove(self, ids: Sequence[str], reason: str, at: dt.datetime) -> Head:
        gone = [Gone(x.id, x.seq, at, reason) for x in self.live if x.id in ids]
        return replace(self, live=tuple(x for x in self.live if x.id not in ids),
                       deleted=(*gone, *self.deleted)[:KEEP_DELETED])


class DbHead(Head):
    TYPE: ClassVar[str] = "db-catalog"
    WRITERS: ClassVar[tuple[str, ...]] = ("db-backup",)


class ConfigHead(Head):
    TYPE: ClassVar[str] = "config-catalog"
    WRITERS: ClassVar[tuple[str, ...]] = ("config-backup",)


class Listed(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def complete(self) -> bool: ...

    @property
    def manifest_key(self) -> str: ...

    @property
    def time(self) -> dt.datetime: ...


E = TypeVar("E", bound=Listed)


@dataclass
class View(Generic[E]):
    """A listing read against the writer's signed head (see the module text)."""

    head: Head | None
    head_error: str | None = None  # a head object is there, but not believed
    trusted: list[E] = field(default_factory=list)
    untrusted: list[tuple[E, str]] = field(default_factory=list)
    missing: list[Link] = field(default_factory=list)
    adopted: list[Link] = field(default_factory=list)
    deleting: list[E] = field(default_factory=list)
    unchecked: list[E] = field(default_factory=list)  # not in the head, not verified (a bounded check)

    @property
    def newest(self) -> E | None:
        return self.trusted[0] if self.trusted else None

    def trusted_ids(self) -> set[str]:
        return {e.id for e in self.trusted}


def link_of(entry_id: str, manifest: bytes, seq: int) -> Link:
    return Link(entry_id, seq, hashlib.sha256(manifest).hexdigest())


def chain_seq(manifest: Any) -> int | None:
    """The sequence number a manifest carries (None: written before the catalog chain)."""
    chain = manifest.get("chain") if isinstance(manifest, dict) else None
    seq = chain.get("seq") if isinstance(chain, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= MAX_SEQ else None


def chain_fields(head: Head) -> dict[str, Any]:
    """What the next manifest says of its place: `{"seq": n, "prev": {"id", "sha256"} | null}`."""
    prev = head.newest
    return {"seq": head.seq + 1, "prev": {"id": prev.id, "sha256": prev.sha256} if prev else None}


def read_head(store: Store, key: str, cls: type[Head], now: dt.datetime) -> tuple[Head | None, str | None]:
    try:
        got = records.read(store, key, cls, now)
    except RecordError as exc:
        return None, exc.reason
    return (got.value if got else None), None


def verify_manifest(store: Store, entry: Listed, roles: Sequence[str]) -> tuple[bytes, Any]:
    """The manifest's bytes and JSON, if a key trusted for `roles` signed it for this entry; else DrkitError."""
    import json

    data = store.get_bytes(entry.manifest_key)
    signed.verify(store, entry.manifest_key, data, store.get_bytes_or_none(entry.manifest_key + signed.SIG), roles,
                  f"the manifest of {entry.id}")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise RecordError(entry.manifest_key, "signed, but not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("id") != entry.id:
        raise RecordError(entry.manifest_key, f"signed, but not the manifest of {entry.id}")
    return data, manifest


def view(store: Store, entries: Sequence[E], head_key: str, cls: type[Head], now: dt.datetime, *,
         verify_limit: int | None = None) -> View[E]:
    """`entries` (newest first, as listed) read against the head at `head_key`. Entries the head does
    not name are verified by their own signature, newest first, at most `verify_limit` of them (None: all)."""
    head, error = read_head(store, head_key, cls, now)
    out: View[E] = View(head, error)
    live = {x.id: x for x in head.live} if head else {}
    gone = head.deleted_ids() if head else set()
    complete = [e for e in entries if e.complete]
    listed = {e.id for e in complete}
    out.missing = [x for x in live.values() if x.id not in listed]
    unknown: list[E] = []
    for e in complete:
        if e.id in live:
            out.trusted.append(e)
        elif e.id in gone:
            out.deleting.append(e)
        else:
            unknown.append(e)
    to_check = unknown if verify_limit is None else unknown[:verify_limit]
    out.unchecked = unknown[len(to_check):]

    def check(e: E) -> tuple[E, Link | None, str]:
        try:
            data, manifest = verify_manifest(store, e, cls.WRITERS)
        except DrkitError as exc:
            return e, None, str(exc)
        return e, link_of(e.id, data, chain_seq(manifest) or 0), ""

    with ThreadPoolExecutor(max_workers=VERIFY_READERS) as pool:
        for e, link, why in pool.map(check, to_check):
            if link is None:
                out.untrusted.append((e, why))
            else:
                out.trusted.append(e)
                out.adopted.append(link)
    out.trusted.sort(key=lambda e: e.id, reverse=True)
    return out


def reconciled(head: Head | None, subject: str, cls: type[Head], v: View[Any]) -> Head:
    """The head the writer should keep: its own (or a new one), plus the backups it adopted. Adopted links
    without a sequence number (manifests from before the chain) get the next numbers, oldest first."""
    base = head or cls(subject)
    numbered = [x for x in v.adopted if x.seq > 0]
    unnumbered = sorted((x for x in v.adopted if x.seq == 0), key=lambda x: x.id)
    nxt = max([base.seq, *(x.seq for x in numbered)])
    fixed = [replace(x, seq=nxt + i + 1) for i, x in enumerate(unnumbered)]
    return base.add(*numbered, *fixed)
