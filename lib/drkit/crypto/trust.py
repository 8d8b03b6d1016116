"""Whose signature is believed for what: `DRKIT_TRUSTED_KEYS` as role=key pairs, and this process's own signer.

Each writing function signs with its own key, so a key is a role: `db-backup=RW…` is believed for
db-backup's manifests and state, and nothing else. A reader names the roles it accepts for a record
type (verification records only from restore-verify's key), so whoever steals dns-failover's secrets can
forge failover records at most, never a backup, a verification or evidence.

Entries are separated by spaces, commas or newlines; several keys per role are a rotation in progress.
A bare key (`RW…`, no role) is a deployment from before per-writer keys: it is believed for what that
one shared key signed then (manifests, `LEGACY_ROLES`), and `drkit config check` says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drkit.core.errors import ConfigError
from drkit.core.secret import Secret
from drkit.crypto import signing
from drkit.crypto.signing import PublicKey

LEGACY = "legacy"
LEGACY_ROLES = ("db-backup", "config-backup", "operator")
ROLE_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")


@dataclass(frozen=True)
class Trust:
    entries: tuple[tuple[str, PublicKey], ...] = ()

    @classmethod
    def parse(cls, raw: str, where: str = "DRKIT_TRUSTED_KEYS", roles: Sequence[str] | None = None) -> Trust:
        """`role=RW… role=RW… RW…`; `roles`: the role names that exist (a misspelt one is an error)."""
        entries: list[tuple[str, PublicKey]] = []
        problems: list[str] = []
        for item in (t for t in re.split(r"[\s,]+", raw.strip()) if t):
            role, sep, text = item.rpartition("=") if "=" in item else ("", "", item)
            role = role.strip().lower()
            if sep and (not ROLE_RE.match(role) or (roles is not None and role not in roles)):
                known = f" (roles: {', '.join(roles)})" if roles is not None else ""
                problems.append(f"{where}: {role[:30]!r} is not a role{known}")
                continue
            try:
                key = signing.parse_public(text, where)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            entries.extend([(role, key)] if sep else [(r, key) for r in (LEGACY, *LEGACY_ROLES)])
        if problems:
            raise ConfigError(problems)
        return cls(tuple(dict.fromkeys(entries)))

    def keys(self) -> list[PublicKey]:
        return list(dict.fromkeys(k for _, k in self.entries))

    def keys_for(self, roles: Iterable[str]) -> list[PublicKey]:
        wanted = set(roles)
        return list(dict.fromkeys(k for r, k in self.entries if r in wanted))

    def roles_of(self, key: PublicKey) -> set[str]:
        return {r for r, k in self.entries if k == key and r != LEGACY}

    def legacy(self) -> list[PublicKey]:
        return [k for r, k in self.entries if r == LEGACY]

    def with_entries(self, more: Iterable[tuple[str, PublicKey]]) -> Trust:
        return Trust(tuple(dict.fromkeys((*self.entries, *more))))

    def __bool__(self) -> bool:
        return bool(self.entries)


@dataclass(frozen=True)
class Signer:
    """This process's own key: the role it writes as (a function's name, or `operator`)."""

    role: str
    secret: Secret

    @property
    def public(self) -> PublicKey:
        return signing.parse_public(signing.public_of(self.secret.reveal()))

    def sign(self, data: bytes, trusted_comment: str) -> str:
        return signing.sign(data, self.secret.reveal(), trusted_comment)


def describe(trust: Trust, key: PublicKey) -> str:
    """`key 1A2B… (dns-failover)`: a signer as messages name it."""
    roles = sorted(trust.roles_of(key))
    return f"key {key.id_hex}" + (f" ({', '.join(roles)})" if roles else "")


@dataclass(frozen=True)
class Identity:
    """What one process signs as and whom it believes (carried by its Store)."""

    signer: Signer | None = None
    trust: Trust = Trust()

    @classmethod
    def of(cls, signer: Signer | None, trusted: Trust) -> Identity:
        """A process always believes its own key for its own role (its records survive a missing trust entry)."""
        if signer is not None:
            trusted = trusted.with_entries([(signer.role, signer.public)])
        return cls(signer, trusted)

    @property
    def role(self) -> str | None:
        return self.signer.role if self.signer else None
