"""Signatures on what drkit writes, in minisign's format (Ed25519), so standard tools verify them.

Every function holds the bucket key, and one of them answers the public web: nothing read from the
bucket is trusted for what it says. A backup's manifest (which carries the object's SHA-256) and a
failover plan are trusted only when signed by a key the operator pinned (`DRKIT_TRUSTED_KEYS`).

* Public key: minisign's text form, `RW…` (base64 of `Ed` + 8-byte key id + 32-byte Ed25519 key):
  what `minisign -V -P RW… -m FILE` takes.
* Secret key: `drkit-sign-1:` + base64(key id + 32-byte seed), held only by the writers
  (db-backup and config-backup: `DRKIT_SIGNING_KEY`) or by an operator, offline.
* Signature file (`FILE.minisig`): minisign's prehashed form (`ED`: Ed25519 over BLAKE2b-512 of the
  file) plus the signed "trusted comment", which names what was signed (its bucket key), so that a
  signed file copied under another name does not verify there.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drkit.core.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_PREFIX = "drkit-sign-1:"
PUBLIC_RE = re.compile(r"^RW[A-Za-z0-9+/]{54}$")
NOT_TRUSTED = "not signed by a trusted key"


class SignatureError(IntegrityError):
    """A signature is missing, malformed, from an unknown key, or does not match."""


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    key: bytes

    @property
    def text(self) -> str:
        return base64.b64encode(b"Ed" + self.key_id + self.key).decode()

    @property
    def id_hex(self) -> str:  # as minisign prints it
        return self.key_id[::-1].hex().upper()


def generate() -> tuple[str, str]:
    """A new (secret, public) pair as text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_id = os.urandom(8)
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SECRET_PREFIX + base64.b64encode(key_id + seed).decode(), PublicKey(key_id, public).text


def parse_public(text: str, where: str = "DRKIT_TRUSTED_KEYS") -> PublicKey:
    text = text.strip()
    if not PUBLIC_RE.match(text):
        raise ConfigError(f"{where}: {text[:12]!r}… is not a minisign public key (RW + 54 characters)")
    raw = base64.b64decode(text)
    if raw[:2] != b"Ed" or len(raw) != 42:
        raise ConfigError(f"{where}: {text[:12]!r}… is not an Ed25519 minisign public key")
    return PublicKey(raw[2:10], raw[10:])


def parse_trusted(raw: str, where: str = "DRKIT_TRUSTED_KEYS") -> list[PublicKey]:
    """Public keys, separated by spaces, commas or newlines (several: a rotation in progress)."""
    return [parse_public(t, where) for t in re.split(r"[\s,]+", raw.strip()) if t]


def public_of(secret: str) -> str:
    """The public key text of a secret key (what DRKIT_TRUSTED_KEYS needs)."""
    from cryptography.hazmat.primitives import serialization

    key_id, private = _private(secret)
    return PublicKey(key_id, private.public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)).text


def _private(secret: str) -> tuple[bytes, Ed25519PrivateKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = secret.strip()
    try:
        if not text.startswith(SECRET_PREFIX):
            raise ValueError
        raw = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
        if len(raw) != 40:
            raise ValueError
    except ValueError:
        raise ConfigError(f"DRKIT_SIGNING_KEY is not a drkit signing key ({SECRET_PREFIX}…; make one with "
                          "`drkit keygen --signing`)") from None
    return raw[:8], Ed25519PrivateKey.from_private_bytes(raw[8:])


def sign(data: bytes, secret: str, trusted_comment: str) -> str:
    """minisign's `.minisig` text for `data` (prehashed Ed25519, with a signed trusted comment)."""
    key_id, private = _private(secret)
    if "\n" in trusted_comment:
        raise ValueError("a trusted comment is one line")
    signature = private.sign(hashlib.blake2b(data, digest_size=64).digest())
    global_sig = private.sign(signature + trusted_comment.encode())
    return (f"untrusted comment: signature from drkit key {key_id[::-1].hex().upper()}\n"
            f"{base64.b64encode(b'ED' + key_id + signature).decode()}\n"
            f"trusted comment: {trusted_comment}\n"
            f"{base64.b64encode(global_sig).decode()}\n")


def verify(data: bytes, minisig: str | bytes | None, trusted: Sequence[PublicKey], what: str) -> str:
    """The trusted comment of a valid signature by one of `trusted`; else SignatureError naming `what`."""
    return verify_signer(data, minisig, trusted, what)[0]


def verify_signer(data: bytes, minisig: str | bytes | None, trusted: Sequence[PublicKey],
                  what: str) -> tuple[str, PublicKey]:
    """verify(), and which of `trusted` made the signature (its role decides what it may sign)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not trusted:
        raise SignatureError(f"{what}: no trusted signing key is configured (DRKIT_TRUSTED_KEYS), so nothing "
                             "from the bucket is believed")
    if minisig is None:
        raise SignatureError(f"{what} is {NOT_TRUSTED}: it has no signature")
    text = minisig.decode("utf-8", "replace") if isinstance(minisig, bytes) else minisig
    lines = text.splitlines()
    try:
        if len(lines) < 4 or not lines[2].startswith("trusted comment: "):
            raise ValueError
        raw = base64.b64decode(lines[1], validate=True)
        global_sig = base64.b64decode(lines[3], validate=True)
        if len(raw) != 74 or raw[:2] not in (b"ED", b"Ed") or len(global_sig) != 64:
            raise ValueError
    except ValueError:
        raise SignatureError(f"{what} is {NOT_TRUSTED}: its signature is not a minisign signature") from None
    alg, key_id, signature = raw[:2], raw[2:10], raw[10:]
    comment = lines[2][len("trusted comment: "):]
    key = next((k for k in trusted if k.key_id == key_id), None)
    if key is None:
        raise SignatureError(f"{what} is {NOT_TRUSTED}: it is signed by key {key_id[::-1].hex().upper()}, "
                             "which DRKIT_TRUSTED_KEYS does not list")
    message = hashlib.blake2b(data, digest_size=64).digest() if alg == b"ED" else data
    try:
        public = Ed25519PublicKey.from_public_bytes(key.key)
        public.verify(signature, message)
        public.verify(global_sig, signature + comment.encode())
    except InvalidSignature:
        raise SignatureError(f"{what} is {NOT_TRUSTED}: the signature does not match its content") from None
    return comment, key


def keys_in(lines: Iterable[str]) -> list[str]:
    """Public keys pinned in an identity file: lines `# drkit trusted key: RW…`."""
    return [ln.split(":", 1)[1].strip() for ln in lines if ln.strip().lower().startswith("# drkit trusted key:")]
