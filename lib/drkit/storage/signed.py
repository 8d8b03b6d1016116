"""Signed JSON objects in the bucket: a manifest or a plan, and its `.minisig` beside it.

The writer stores the signature first and the object second, so a listed object always has its
signature. The reader believes the object only if the signature is by a key trusted for one of the
roles that write it (db-backup for database manifests, the operator for the failover plan) and its
trusted comment names this very key (a signed object copied under another name, or another
backup's id, does not verify there). These are the objects standard tools verify too
(`minisign -V`); drkit's other records carry their signature inside (storage/records.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from drkit.core.errors import IntegrityError
from drkit.crypto import signing, trust
from drkit.crypto.signing import SignatureError
from drkit.storage.store import Store

SIG = ".minisig"


def comment(key: str) -> str:
    return f"drkit {key}"


def put_json(store: Store, key: str, obj: Any) -> bytes:
    """Sign (with the store's signer) and store `obj` at `key`, signature first; return the exact bytes stored."""
    data = (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode()
    put_bytes(store, key, data)
    return data


def put_bytes(store: Store, key: str, data: bytes, content_type: str = "application/json") -> None:
    signer = store.identity.signer
    if signer is None:
        raise IntegrityError(f"cannot sign {key}: this process has no signing key (DRKIT_SIGNING_KEY)")
    store.put_bytes(key + SIG, signer.sign(data, comment(key)).encode(), "text/plain")
    store.put_bytes(key, data, content_type)


def verify(store: Store, key: str, data: bytes, minisig: bytes | None, roles: Sequence[str], what: str) -> str:
    """The role that signed `data` (read from `key`), if a key trusted for one of `roles` did, for this key."""
    trusted = store.identity.trust
    if not trusted:
        raise SignatureError(f"{what}: no trusted signing key is configured (DRKIT_TRUSTED_KEYS), so nothing "
                             "from the bucket is believed")
    said, key_used = signing.verify_signer(data, minisig, trusted.keys(), what)
    roles_of = trusted.roles_of(key_used) & set(roles)
    if not roles_of:
        raise SignatureError(f"{what} is {signing.NOT_TRUSTED} for this: it is signed by "
                             f"{trust.describe(trusted, key_used)}, and only {', '.join(roles)} may sign it")
    if said != comment(key):
        raise SignatureError(f"{what} is {signing.NOT_TRUSTED} for this place: its signature was made for "
                             f"{said.removeprefix('drkit ')!r} (a signed object copied or replayed under another name)")
    return sorted(roles_of)[0]


def get_bytes(store: Store, key: str, roles: Sequence[str], what: str) -> bytes:
    """The object at `key` if a key trusted for one of `roles` signed it for this key; SignatureError otherwise."""
    data = store.get_bytes(key)
    verify(store, key, data, store.get_bytes_or_none(key + SIG), roles, what)
    return data


def get_json(store: Store, key: str, roles: Sequence[str], what: str) -> Any:
    data = get_bytes(store, key, roles, what)
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise SignatureError(f"{what}: signed, but not JSON") from None
