"""age encryption (https://age-encryption.org/v1) through pyrage, streaming.

Backups are encrypted to one or more X25519 recipients (public keys, `age1…`).
Functions that write backups never hold a private key; only restore paths do.
The output is the standard age format: `age -d -i key.txt` decrypts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyrage
from pyrage import x25519

from drkit.core.errors import ConfigError, CryptoError


def parse_recipients(items: Sequence[str]) -> list[x25519.Recipient]:
    out = []
    for item in items:
        try:
            out.append(x25519.Recipient.from_str(item))
        except Exception:  # noqa: BLE001 - pyrage.RecipientError; message may echo the key
            raise ConfigError(f"age recipient {item[:12]!r}… is not a valid X25519 public key") from None
    if not out:
        raise ConfigError("no age recipients configured")
    return out


def parse_identity(text: str) -> x25519.Identity:
    """An identity from an age key file's text (comments allowed) or a bare key."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise ConfigError("the age identity must contain exactly one AGE-SECRET-KEY-1… line")
    try:
        return x25519.Identity.from_str(lines[0])
    except Exception:  # noqa: BLE001 - never echo key material
        raise ConfigError("the age identity is not a valid AGE-SECRET-KEY-1… key") from None


def generate_identity() -> tuple[str, str]:
    """A new (identity, recipient) pair as strings."""
    ident = x25519.Identity.generate()
    return str(ident), str(ident.to_public())


def encrypt_stream(reader: Any, writer: Any, recipients: Sequence[x25519.Recipient]) -> None:
    """Read plaintext from reader until EOF, write age ciphertext to writer."""
    try:
        pyrage.encrypt_io(reader, writer, list(recipients))
    except pyrage.EncryptError as exc:
        raise CryptoError(f"encryption failed: {exc}") from None


def decrypt_stream(reader: Any, writer: Any, identities: Sequence[x25519.Identity]) -> None:
    """Read age ciphertext from reader, write plaintext to writer.

    Authentication failures (wrong key, tampered or truncated data) raise CryptoError.
    """
    try:
        pyrage.decrypt_io(reader, writer, list(identities))
    except pyrage.DecryptError as exc:
        raise CryptoError(f"decryption failed (wrong identity, or tampered/truncated data): {exc}") from None
    except OSError as exc:
        # pyrage reports a failed chunk authentication (tampering) or a missing last chunk (a cut) as a
        # bare OSError; a broken pipe is the consumer's failure, not the ciphertext's.
        if isinstance(exc, BrokenPipeError) or str(exc) not in ("decryption error", "age file is truncated"):
            raise
        what = "truncated" if "truncated" in str(exc) else "tampered"
        raise CryptoError(f"decryption failed: the data is {what}", in_data=True) from None


def opens(head: bytes, identities: Sequence[x25519.Identity]) -> bool:
    """Whether one of `identities` opens the age file that starts with `head` (its first kilobytes suffice: the
    header names the recipients' stanzas, and a cut after it is a data error, not a key error)."""
    import io

    try:
        decrypt_stream(io.BytesIO(head), io.BytesIO(), identities)
    except CryptoError as exc:
        return exc.in_data
    return True
