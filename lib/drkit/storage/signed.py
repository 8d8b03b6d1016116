"""Signed JSON objects in the bucket: a manifest or a plan, and its `.minisig` beside it.

The writer stores the signature first and the object second, so a listed object always has its
signature. The reader believes the object only if the signature is by a trusted key and its
trusted comment names this very key (a signed object copied under another name, or another
backup's id, does not verify there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from drkit.crypto import signing
from drkit.crypto.signing import PublicKey, SignatureError
from drkit.storage.store import Store

SIG = ".minisig"


def comment(key: str) -> str:
    return f"drkit {key}"


def put_json(store: Store, key: str, obj: Any, secret: str) -> bytes:
    """Sign and store `obj` at `key` (signature first); return the exact bytes stored."""
    data = (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode()
    put_bytes(store, key, data, secret)
    return data


def put_bytes(store: Store, key: str, data: bytes, secret: str, content_type: str = "application/json") -> None:
    store.put_bytes(key + SIG, signing.sign(data, secret, comment(key)).encode(), "text/plain")
    store.put_bytes(key, data, content_type)


def get_bytes(store: Store, key: str, trusted: Sequence[PublicKey], what: str) -> bytes:
    """The object at `key` if a trusted key signed it for this key; SignatureError otherwise."""
    data = store.get_bytes(key)
    said = signing.verify(data, store.get_bytes_or_none(key + SIG), trusted, what)
    if said != comment(key):
        raise SignatureError(f"{what} is {signing.NOT_TRUSTED} for this place: its signature was made for "
                             f"{said.removeprefix('drkit ')!r} (a signed object copied or replayed under another name)")
    return data


def get_json(store: Store, key: str, trusted: Sequence[PublicKey], what: str) -> Any:
    data = get_bytes(store, key, trusted, what)
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise SignatureError(f"{what}: signed, but not JSON") from None
