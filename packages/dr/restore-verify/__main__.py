"""DO Functions entry point for dr/restore-verify (all logic lives in drkit.functions.restore_verify)."""

from drkit.functions import restore_verify
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("restore-verify", restore_verify.run, event, context)
