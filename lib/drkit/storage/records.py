"""Signed records: every object drkit writes and later reads back, typed, versioned, signed by its writer.

Every function holds a bucket key that can write anything, and one answers the public web. So a
record is believed only when the key that signed it is trusted for the role that may write that
type (crypto/trust.py), its signature names this very type and bucket key (a record copied or
replayed elsewhere does not verify there), and its content parses strictly as that type.

One object holds the record and its signature, so two writers racing on one key can never leave
a record beside the other's signature:

    {"format": "drkit.record/1",
     "signed": "{\"at\": …, \"data\": {…}, \"key\": \"state/db/odoo.json\", \"type\": \"db-state\", \"v\": 1,
                 \"writer\": \"db-backup\"}",
     "signature": "<minisign signature of `signed`; trusted comment: drkit-record db-state state/db/odoo.json>"}

(`jq -r .signed` shows the record; `minisign -V` verifies `signed` saved to a file.) A record that
is missing reads as None; one that is present but unsigned, signed by the wrong role, malformed, of an
unknown version or dated in the future raises `RecordError`, which monitors turn into an alert, never a
crash and never "healthy".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from drkit.core.errors import DrkitError, IntegrityError
from drkit.core.fields import FieldError, Fields
from drkit.crypto import signing, trust
from drkit.crypto.trust import Signer, Trust
from drkit.platform.strictjson import StrictJSONError, loads
from drkit.storage.store import Store

FORMAT = "drkit.record/1"
MAX_BYTES = 4 * 1024 * 1024
FUTURE_SKEW = dt.timedelta(minutes=5)  # clocks of two activations may differ this much
READERS = 16  # records are small objects: read many at once


class RecordError(IntegrityError):
    """A record exists but is not believed: unsigned, wrong writer, malformed, replayed or from the future."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class Record:
    """A record type: `TYPE` names it, `VERSION` is the newest schema this code reads and writes,
    `WRITERS` the roles whose keys may sign it. Subclasses are frozen dataclasses."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    WRITERS: ClassVar[tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_fields(cls, f: Fields) -> Any:
        raise NotImplementedError


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Signed(Generic[R]):
    """A record as read: its value, who signed it, when, and where it lives."""

    value: R
    writer: str
    at: dt.datetime
    key: str
    size: int = 0


def comment(record_type: str, key: str) -> str:
    return f"drkit-record {record_type} {key}"


def encode(record: Record, key: str, signer: Signer | None, now: dt.datetime) -> bytes:
    if signer is None:
        raise IntegrityError(f"cannot write {key}: this process has no signing key (DRKIT_SIGNING_KEY)")
    if signer.role not in record.WRITERS:
        raise IntegrityError(f"{signer.role} may not write {record.TYPE} records ({key}); "
                             f"only {', '.join(record.WRITERS)}")
    payload = json.dumps({"type": record.TYPE, "v": record.VERSION, "key": key, "writer": signer.role,
                          "at": now.astimezone(dt.UTC).isoformat(), "data": record.to_json()},
                         sort_keys=True, separators=(",", ":"), default=str)
    envelope = {"format": FORMAT, "signed": payload, "signature": signer.sign(payload.encode(), comment(record.TYPE, key))}
    return (json.dumps(envelope, indent=1) + "\n").encode()


def decode(data: bytes, key: str, cls: type[R], trusted: Trust, now: dt.datetime,
           writers: Sequence[str] | None = None) -> Signed[R]:
    """The record in `data` read from `key`, believed only as described above; RecordError otherwise."""
    allowed = tuple(writers or cls.WRITERS)
    if len(data) > MAX_BYTES:
        raise RecordError(key, f"is {len(data)} bytes; a {cls.TYPE} record is at most {MAX_BYTES}")
    try:
        env = Fields(loads(data), "$")
        if env.text("format", max_len=40) != FORMAT:
            raise RecordError(key, f"is not a signed drkit record (format {str(env.value.get('format'))[:40]!r}): "
                                   f"{_unsigned_hint(cls)}")
        payload_text = env.text("signed", max_len=MAX_BYTES)
        signature = env.text("signature", max_len=2000)
        env.done()
    except (StrictJSONError, FieldError) as exc:
        raise RecordError(key, f"is not a signed drkit record ({exc}): {_unsigned_hint(cls)}") from None
    if not trusted:
        raise RecordError(key, "no trusted signing key is configured (DRKIT_TRUSTED_KEYS), so it is not believed")
    try:
        said, signer = signing.verify_signer(payload_text.encode(), signature, trusted.keys(), f"{cls.TYPE} record")
    except signing.SignatureError as exc:
        raise RecordError(key, str(exc)) from None
    if said != comment(cls.TYPE, key):
        raise RecordError(key, f"its signature was made for {said.removeprefix('drkit-record ')[:120]!r}: a signed "
                               f"record copied or replayed under another name or type")
    try:
        p = Fields(loads(payload_text.encode()), "$.signed")
        p.text("type", max_len=60, choices=(cls.TYPE,))
        version = p.integer("v", lo=1, hi=1000)
        p.text("key", max_len=1000, choices=(key,))
        writer = p.text("writer", max_len=40)
        at = p.time("at")
        body = p.obj("data")
        p.done()
    except (StrictJSONError, FieldError) as exc:
        raise RecordError(key, f"signed, but not a {cls.TYPE} record: {exc}") from None
    if version > cls.VERSION:
        raise RecordError(key, f"is version {version} of {cls.TYPE}; this drkit reads up to {cls.VERSION} "
                               "(deploy the same drkit version to every function)")
    roles = trusted.roles_of(signer)
    if writer not in allowed:
        raise RecordError(key, f"was written by {writer}; {cls.TYPE} records are believed only from "
                               f"{', '.join(allowed)}")
    if writer not in roles:
        raise RecordError(key, f"claims {writer} wrote it, but it is signed by {trust.describe(trusted, signer)}")
    if at > now + FUTURE_SKEW:
        raise RecordError(key, f"is dated {at.isoformat()}, in the future: a forged or replayed record, or a "
                               "writer's clock is wrong")
    try:
        value = cls.from_fields(body)
        body.done()
    except FieldError as exc:
        raise RecordError(key, f"signed by {writer}, but malformed: {exc}") from None
    return Signed(value, writer, at, key, len(data))


def _unsigned_hint(cls: type[Record]) -> str:
    return f"{cls.TYPE} records are believed only when signed by {', '.join(cls.WRITERS)}"


def read(store: Store, key: str, cls: type[R], now: dt.datetime,
         writers: Sequence[str] | None = None) -> Signed[R] | None:
    """The record at `key` (None when there is none); RecordError when it is there but not believed."""
    data = store.get_bytes_or_none(key)
    if data is None:
        return None
    return decode(data, key, cls, store.identity.trust, now, writers)


@dataclass(frozen=True)
class Outcome:
    """One record of `read_many`: `got` None and `problem` None when it is gone; `problem` says why it was
    not believed (RecordError) or could not be read (the bucket's error)."""

    key: str
    got: Signed[Any] | None
    problem: str | None = None


def read_many(store: Store, wanted: Sequence[tuple[str, type[Record]]], now: dt.datetime) -> list[Outcome]:
    """Each (key, record type) read concurrently, in the order asked; never raises for one bad record."""

    def one(item: tuple[str, type[Record]]) -> Outcome:
        key, cls = item
        try:
            return Outcome(key, read(store, key, cls, now))
        except RecordError as exc:
            return Outcome(key, None, exc.reason)
        except DrkitError as exc:
            return Outcome(key, None, f"unreadable: {exc}")

    if not wanted:
        return []
    with ThreadPoolExecutor(max_workers=min(READERS, len(wanted))) as pool:
        return list(pool.map(one, wanted))


def write(store: Store, key: str, record: Record, now: dt.datetime) -> bytes:
    data = encode(record, key, store.identity.signer, now)
    store.put_bytes(key, data, "application/json")
    return data


def create(store: Store, key: str, record: Record, now: dt.datetime) -> bool:
    """Write `record` at `key` unless something is there (a conditional create); True if this call made it."""
    return store.put_bytes_if_absent(key, encode(record, key, store.identity.signer, now), "application/json")


@dataclass(frozen=True)
class Claimed(Generic[R]):
    """What `claim` found: `ours` (this call, or an earlier attempt of ours whose answer was lost, made it),
    the believed record another run holds, and a record that was there but not believed (removed first)."""

    ours: bool
    holder: Signed[R] | None = None
    forged: str | None = None


def claim(store: Store, key: str, record: R, now: dt.datetime, is_ours: Callable[[R], bool] | None = None,
          writers: Sequence[str] | None = None) -> Claimed[R]:
    """Create `record` at `key` once across concurrent runs (a conditional create). A record there that is not
    believed never blocks the claim: it is removed and the claim made again. `is_ours`: recognises this run's
    own record (an owner token inside it) when a retried request finds it already written; `writers`: as for
    `read`, when only some of the type's writers may hold this key."""
    forged = None
    for _ in range(3):
        if create(store, key, record, now):
            return Claimed(True, None, forged)
        try:
            got = read(store, key, type(record), now, writers)
        except RecordError as exc:
            forged = exc.reason
            store.delete(key)
            continue
        if got is None:  # it went away between the two calls
            continue
        return Claimed(bool(is_ours and is_ours(got.value)), got, forged)
    raise IntegrityError(f"could not claim {key}: it keeps coming back unbelieved ({forged})")
