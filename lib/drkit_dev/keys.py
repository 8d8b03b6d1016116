"""Throw-away keys for drill, tests and benchmarks: signing pairs made once per process.

`signing_env()`: one key trusted for every role (an in-process test that runs several functions with one
environment). `per_function_env()`: what `drkit init` writes, one key per function and one for the
operator, each trusted only for its role (the deployed functions, under project.yml's substitution).
"""

from __future__ import annotations

import functools
from typing import Any

from drkit.crypto import signing
from drkit.platform import envvars
from drkit.platform.identity import OPERATOR, ROLES


@functools.lru_cache(maxsize=1)
def signing_pair() -> tuple[str, str]:
    """(secret, public) minisign-format signing keys."""
    return signing.generate()


@functools.cache
def role_pair(role: str) -> tuple[str, str]:
    return signing.generate()


def trusted_all(public: str) -> str:
    return " ".join(f"{role}={public}" for role in ROLES)


def signing_env() -> dict[str, str]:
    """One key that every role signs with (as DRKIT_SIGNING_KEY, and as each DRKIT_SIGNING_KEY_<FN>, so that
    project.yml's substitution finds it too) and that the readers (DRKIT_TRUSTED_KEYS) believe for every role."""
    secret, public = signing_pair()
    return {"DRKIT_SIGNING_KEY": secret, **{envvars.per_function_name("DRKIT_SIGNING_KEY", r): secret for r in ROLES},
            "DRKIT_TRUSTED_KEYS": trusted_all(public)}


def per_function_env() -> dict[str, str]:
    """An operator's .env as `drkit init` writes it: DRKIT_SIGNING_KEY_<FN> for each function and the operator."""
    env = {envvars.per_function_name("DRKIT_SIGNING_KEY", role): role_pair(role)[0] for role in ROLES}
    env["DRKIT_TRUSTED_KEYS"] = " ".join(f"{role}={role_pair(role)[1]}" for role in ROLES)
    return env


def operator_key() -> str:
    return role_pair(OPERATOR)[0]


def store_of(env: dict[str, str], role: str = OPERATOR) -> Any:
    """The bucket as `role` sees it with this environment (its signing key if the env has one, its trust)."""
    from drkit.platform import identity
    from drkit.platform.config import spaces_from_env
    from drkit.storage.store import Store

    mine = envvars.as_deployed(role, env)
    me = identity.from_env(mine, role, signs=bool(mine.get("DRKIT_SIGNING_KEY", "").strip()))
    return Store(spaces_from_env(env), identity=me)
