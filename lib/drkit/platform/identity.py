"""Who this function is to the bucket: the key it signs its records with, and whose signatures it believes.

`DRKIT_SIGNING_KEY` is the function's own key (project.yml gives each function its own,
`DRKIT_SIGNING_KEY_<FUNCTION>` in the operator's .env: `drkit keygen --signing --for FN`), and the
function's name is its role. `DRKIT_TRUSTED_KEYS` names each public key's role (`db-backup=RW…`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drkit.core.errors import ConfigError
from drkit.crypto.trust import Identity, Signer, Trust

__all__ = ["OPERATOR", "ROLES", "Identity", "collect", "from_env", "trust_from_env"]
from drkit.platform import envvars
from drkit.platform.config import signing_key_from_env

OPERATOR = "operator"  # people: pins, failover plans, notices, restores (drkit CLI)
ROLES = (*envvars.ALL, OPERATOR)


def trust_from_env(environ: Mapping[str, str], problems: list[str], extra: Sequence[str] = ()) -> Trust:
    """DRKIT_TRUSTED_KEYS (plus keys pinned elsewhere, e.g. in an identity file: bare keys, legacy roles)."""
    raw = " ".join([environ.get("DRKIT_TRUSTED_KEYS", ""), *extra]).strip()
    try:
        return Trust.parse(raw, roles=ROLES)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return Trust()


def collect(environ: Mapping[str, str], role: str, problems: list[str], *, signs: bool = True,
            extra_trusted: Sequence[str] = ()) -> Identity:
    """The identity of `role` from its environment; every problem appended. `signs=False`: a reader only
    (a dry run, `drkit config check` of a function whose key is not in this .env)."""
    trusted = trust_from_env(environ, problems, extra_trusted)
    if not trusted and not environ.get("DRKIT_TRUSTED_KEYS", "").strip():
        problems.append("DRKIT_TRUSTED_KEYS is not set (role=RW… public keys whose signatures drkit believes: "
                        "`drkit keygen --signing --for FN` prints each one)")
    signer = None
    if signs:
        secret = signing_key_from_env(environ, problems)
        signer = Signer(role, secret) if secret is not None else None
    if signer is not None and trusted:
        public = signer.public
        roles = trusted.roles_of(public)
        if not roles:
            problems.append(f"DRKIT_TRUSTED_KEYS does not list {role}'s own public key, so no other function "
                            f"believes what it writes: add {role}={public.text}")
        elif role not in roles:
            problems.append(f"DRKIT_SIGNING_KEY is trusted for {', '.join(sorted(roles))}, not for {role}: what "
                            f"{role} signs would be refused (give it its own key: drkit keygen --signing --for {role})")
    return Identity.of(signer, trusted)


def from_env(environ: Mapping[str, str], role: str, *, signs: bool = True,
             extra_trusted: Sequence[str] = ()) -> Identity:
    problems: list[str] = []
    identity = collect(environ, role, problems, signs=signs, extra_trusted=extra_trusted)
    if problems:
        raise ConfigError(problems)
    return identity
