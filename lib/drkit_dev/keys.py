"""Throw-away keys for drill, tests and benchmarks: one signing pair per process."""

from __future__ import annotations

import functools

from drkit.crypto import signing


@functools.lru_cache(maxsize=1)
def signing_pair() -> tuple[str, str]:
    """(secret, public) minisign-format signing keys."""
    return signing.generate()


def signing_env() -> dict[str, str]:
    """What the writers (DRKIT_SIGNING_KEY) and the readers (DRKIT_TRUSTED_KEYS) of a local run need."""
    secret, public = signing_pair()
    return {"DRKIT_SIGNING_KEY": secret, "DRKIT_TRUSTED_KEYS": public}
